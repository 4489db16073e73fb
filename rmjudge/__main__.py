"""``python -m rmjudge``: the same as the installed ``rmjudge`` command."""

import signal
import sys


def _interrupted_while_starting(signum: int, frame: object) -> None:
    sys.exit(130)  # ExitCode.INTERRUPTED, quietly: the CLI's own Ctrl-C handling is not imported yet


# Importing the CLI (typer, rich) takes a few tenths of a second; a Ctrl-C then would print a traceback.
_previous = signal.signal(signal.SIGINT, _interrupted_while_starting)
from rmjudge.cli import main  # noqa: E402

signal.signal(signal.SIGINT, _previous)
main()
