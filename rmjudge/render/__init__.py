"""How results look: rich tables, panels and progress bars on a terminal, JSON lines otherwise.

The presentation layer: the command line renders the core's plain dataclasses and dicts with these
modules; no core module imports them (nor rich). One module per kind of result (``judgment``,
``check``, ``report`` and ``plot`` for eval, ``models``, ``cache``), plus the consoles (``console``),
number formats (``formats``) and the one progress bar (``progress``).
"""
