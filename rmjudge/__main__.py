"""``python -m rmjudge``: the same as the installed ``rmjudge`` command."""

from rmjudge.cli import main

main()
