"""Where output goes: results on stdout (rich on a terminal, JSON lines otherwise), messages on stderr."""

from __future__ import annotations

import sys
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape

stdout = Console(soft_wrap=False)
stderr = Console(stderr=True)


def wants_json(json_flag: bool) -> bool:
    """JSON when asked, or when stdout is not a terminal (a pipe, a file)."""
    return json_flag or not sys.stdout.isatty()


def print_json(data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    sys.stdout.flush()


def print_line(text: str, *, console: Console = stdout) -> None:
    """Plain text, printed as it is: no markup, no highlighting, long lines kept whole."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """A warning on stderr: ``rmjudge: <message>`` (the message is never read as markup)."""
    stderr.print(f"[yellow]rmjudge:[/] {escape(message)}", highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """The one line a failed command prints on stderr: ``rmjudge: <message>``."""
    stderr.print(f"[bold red]rmjudge:[/] {escape(message)}", highlight=False, soft_wrap=True)
