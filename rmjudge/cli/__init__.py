"""The ``rmjudge`` command line: parse, call the core, render.

``main`` is the installed entry point. This module imports nothing else up front, so that a Ctrl-C
while the command line is still loading (typer, rich: a few tenths of a second) ends quietly too.
"""

from __future__ import annotations

import sys
from typing import Any

INTERRUPTED = 130  # errors.ExitCode.INTERRUPTED, without importing anything before the guard


def main() -> None:
    try:
        from rmjudge.cli.root import app

        app(prog_name="rmjudge")
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)


def __getattr__(name: str) -> Any:
    if name == "app":  # ``from rmjudge.cli import app``: the typer app, for tests and embedding
        from rmjudge.cli.root import app

        return app
    raise AttributeError(f"module 'rmjudge.cli' has no attribute {name!r}")
