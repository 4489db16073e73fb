"""The one place where what a command did becomes an exit code and, when it failed, one line on stderr.

Command bodies do their work and raise; they catch nothing. ``command`` wraps every body:
- ``RmjudgeError``: its message, its ``exit_code`` (errors.py);
- Ctrl-C: 130, SIGTERM (raised as ``errors.Terminated``): 143, after the body kept what it wrote;
- a closed stdout (``| head``): a quiet 0;
- anything else is a bug: 70, "internal error", the traceback only with --debug (or RMJUDGE_DEBUG=1).
``RmjudgeGroup`` does the same for what typer rejects before a body runs (a missing argument, a bad
number): one line naming the command's --help, exit 2.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from rmjudge.errors import ExitCode, RmjudgeError, Terminated

DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show tracebacks and llama.cpp's log (also: RMJUDGE_DEBUG=1).")
]
Body = Callable[..., "int | None"]
# The click that typer runs on: its own copy (typer._click) in recent typer, the click package before.
_click: Any = importlib.import_module(typer.BadParameter.__module__)
_NO_ARGS_IS_HELP: Any = getattr(_click, "NoArgsIsHelpError", ())  # click 8.2+; before, help exited 0


def _fail(message: str, code: int) -> int:
    from rmjudge.render.console import error

    error(message)
    return code


def present_as(wrapper: Callable[..., Any], body: Callable[..., Any], parameters: Sequence[inspect.Parameter]) -> Any:
    """``wrapper``, shown to typer as ``body`` taking ``parameters`` (its name, help and options)."""
    wrapper.__name__ = body.__name__
    wrapper.__qualname__ = body.__qualname__
    wrapper.__module__ = body.__module__
    wrapper.__doc__ = body.__doc__
    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters]
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def parameters_of(body: Callable[..., Any]) -> list[inspect.Parameter]:
    return list(inspect.signature(body, eval_str=True).parameters.values())


def command(body: Body) -> Callable[..., None]:
    """``body`` as a typer command: its parameters plus --debug (unless it takes ``debug`` itself), its
    return value the exit code (None: 0), every failure handled by the policy above."""
    parameters = parameters_of(body)
    takes_debug = any(p.name == "debug" for p in parameters)
    if not takes_debug:
        debug = inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=DebugOption)
        parameters.append(debug)

    def run(**values: Any) -> None:
        debug = bool(values.pop("debug")) or os.environ.get("RMJUDGE_DEBUG") == "1"
        if takes_debug:
            values["debug"] = debug
        code = outcome(lambda: body(**values), debug)
        if code != ExitCode.OK:
            raise typer.Exit(code)

    return present_as(run, body, parameters)  # type: ignore[no-any-return]


_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def outcome(action: Callable[[], int | None], debug: bool) -> int:
    """Run ``action`` under the policy: its exit code, or the code of what went wrong (after one line)."""
    try:
        with _sigterm_raises() as terminated:
            code = action() or ExitCode.OK
        return ExitCode.TERMINATED if terminated else code
    except RmjudgeError as failure:
        if debug:
            raise
        return _fail(str(failure), failure.exit_code)
    except KeyboardInterrupt as interrupt:
        if debug:
            raise
        if isinstance(interrupt, Terminated):
            return _fail("terminated; everything already written is kept", ExitCode.TERMINATED)
        return _fail("interrupted; everything already written is kept", ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader (head, a closed pipe) is gone: end quietly, as shell tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK
    except Exception as failure:  # the last line of defence: one line, not a traceback
        if debug:
            raise
        if isinstance(failure, OSError) and failure.errno in _WRITE_ERRORS:
            # Only a write fails this way: a full disk or quota under standard output or a file.
            where = failure.filename or "standard output"
            return _fail(f"cannot write {where}: {failure.strerror}", ExitCode.OUTPUT)
        message = f"internal error: {type(failure).__name__}: {failure} (run again with --debug for the traceback)"
        return _fail(message, ExitCode.INTERNAL)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[list[bool]]:
    """SIGTERM raises ``Terminated`` in the main thread for the body's duration; the list it yields
    becomes true once one came (a body that handles the interrupt itself still exits 143)."""
    received: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        received.append(True)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class RmjudgeGroup(TyperGroup):
    """The root command: what typer rejects becomes one line, ``rmjudge: <what>; see rmjudge CMD --help``."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        try:
            returned = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = returned if isinstance(returned, int) else ExitCode.OK
        except _NO_ARGS_IS_HELP:
            code = ExitCode.USAGE  # typer printed the help already
        except _click.UsageError as rejected:
            where = rejected.ctx.command_path if rejected.ctx is not None else self._command_path(args)
            message = rejected.format_message().rstrip(".")
            code = _fail(f"{message[:1].lower()}{message[1:]}; see {where} --help", ExitCode.USAGE)
        except _click.ClickException as rejected:
            code = _fail(rejected.format_message(), rejected.exit_code)
        except typer.Abort:
            code = ExitCode.INTERRUPTED
        if standalone_mode:
            sys.exit(code)
        return code

    def _command_path(self, args: Sequence[str] | None) -> str:
        """``rmjudge COMMAND [SUBCOMMAND]`` read off the arguments, for an error raised without its context."""
        path, group = ["rmjudge"], self
        for word in sys.argv[1:] if args is None else args:
            found = getattr(group, "commands", {}).get(word)
            if found is None:
                break
            path.append(word)
            group = found
        return " ".join(path)
