"""Errors a user can act on, each with its documented exit code.

The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``; the
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every code the command line exits with, documented in README.md ("Exit codes")."""

    OK = 0
    NEGATIVE = 1  # the check failed: --expect not met, a file got worse, a batch line failed
    USAGE = 2  # bad arguments, options or configuration
    INPUT = 3  # unreadable input: missing file, not UTF-8, broken JSON(L)
    MODEL = 4  # model missing, unknown, corrupt, not downloadable (no network, 401, 404)
    CONTEXT = 5  # input longer than the model's context
    OUTPUT = 6  # the output cannot be written (a full disk, an I/O error); the message names the path
    INTERNAL = 70  # a bug: an unexpected exception (EX_SOFTWARE); --debug shows its traceback
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); everything already written is kept
    TERMINATED = 143  # SIGTERM (128 + SIGTERM), from kill, a job scheduler or a container; as Ctrl-C


class RmjudgeError(Exception):
    """Base class: a one-line message that says what to do."""

    exit_code = ExitCode.USAGE


class UsageError(RmjudgeError):
    exit_code = ExitCode.USAGE


class InputError(RmjudgeError):
    exit_code = ExitCode.INPUT


class OutputError(RmjudgeError):
    exit_code = ExitCode.OUTPUT


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so every ``except KeyboardInterrupt``
    that keeps written work also serves ``kill``; the command line then exits 143 instead of 130."""

    exit_code = ExitCode.TERMINATED


class ModelError(RmjudgeError):
    exit_code = ExitCode.MODEL


class ContextTooLongError(RmjudgeError):
    """The rendered prompt plus the generation budget does not fit the model's context."""

    exit_code = ExitCode.CONTEXT

    def __init__(self, message: str, *, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available

    @property
    def excess(self) -> int:
        return self.needed - self.available
