"""Writing ``rmjudge batch`` output: each line whole, never a torn one, whatever stops the run.

``Sink`` writes a line with unbuffered writes and takes a failed write back; ``Interrupts`` holds
Ctrl-C and SIGTERM while a line is written; ``check_output_path`` refuses an output that would
overwrite the input or earlier output.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson

from rmjudge.errors import OutputError, UsageError


class Interrupts:
    """Ctrl-C and SIGTERM stop the batch as usual, except while a line is written: then right after,
    so the output never holds a torn line.

    Only a signal whose handler is Python code is deferred (Python's own KeyboardInterrupt for
    Ctrl-C; the command line's, which raises ``Terminated``, for SIGTERM): an ignored signal (nohup)
    stays ignored, and a default SIGTERM still ends a library caller's process.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.writing = False
        self.pending: tuple[int, FrameType | None] | None = None
        self._handlers: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                handler = signal.getsignal(signum)
                if callable(handler):
                    self._handlers[signum] = handler
                    signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.writing:
            self.pending = self.pending or (signum, frame)
        else:
            self._handlers[signum](signum, frame)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.writing = True
        try:
            yield
        finally:
            self.writing = False
            if self.pending is not None:
                (signum, frame), self.pending = self.pending, None
                self._handlers[signum](signum, frame)


def _same_file(source: str, output: Path) -> bool:
    """Whether writing ``output`` would write the input: the same file by any name (a link too)."""
    try:
        if source == "-":
            return sys.stdin is not None and os.path.samestat(os.fstat(sys.stdin.fileno()), output.stat())
        return os.path.samefile(source, output)
    except (OSError, ValueError, AttributeError):  # one of them does not exist, or stdin is no file
        return False


def check_output_path(source: str, output: Path, *, resume: bool, overwrite: bool) -> None:
    if output.is_dir():
        raise UsageError(f"-o {output} is a directory: give a file to write, e.g. -o {output / 'judged.jsonl'}")
    if _same_file(source, output):
        raise UsageError(f"-o {output} is the input file: write the output to another file")
    if not resume and not overwrite and output.exists() and output.stat().st_size > 0:
        raise UsageError(f"{output} exists: continue it with --resume, or replace it with --overwrite")


class Sink:
    """Output lines, each written whole with unbuffered writes, so a pipe sees every line as it is
    judged and a failed write leaves nothing half-written in Python's buffers.

    A write error (a full disk, an I/O error) raises OutputError naming the output; the lines written
    before it are kept, and a partial line is removed from a regular file. ``before_first_write``
    runs once, before anything is written or truncated (the --resume checks that need the model).
    """

    def __init__(
        self,
        output: Path | None,
        *,
        resume: bool,
        interrupts: Interrupts,
        keep_bytes: int | None = None,
        before_first_write: Callable[[], None] | None = None,
    ) -> None:
        self._interrupts = interrupts
        self._name = str(output) if output is not None else "standard output"
        self._keep_bytes = keep_bytes  # --resume: cut the file to this length first (a torn last line)
        self._before_first_write = before_first_write
        self._started = False
        self.lines = 0
        self._own = output is not None
        self._stream: IO[bytes] | None = None  # standard output replaced in-process (no file descriptor)
        if output is None:
            sys.stdout.flush()
            try:
                self._fd = sys.stdout.fileno()
            except (AttributeError, ValueError, io.UnsupportedOperation):
                self._fd, self._stream = -1, sys.stdout.buffer
            return
        # Appending changes nothing until the first write; without --resume the file is replaced.
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if resume else os.O_TRUNC)
        try:
            self._fd = os.open(output, flags, 0o666)
        except OSError as error:
            raise OutputError(f"cannot write {output}: {error.strerror}") from None

    def _start(self) -> None:
        self._started = True
        if self._before_first_write is not None:
            self._before_first_write()
        if self._keep_bytes is not None:
            try:
                os.ftruncate(self._fd, self._keep_bytes)
            except OSError as error:
                raise OutputError(f"cannot remove the torn last line of {self._name}: {error.strerror}") from None

    def write(self, row: dict[str, Any]) -> None:
        if not self._started:
            self._start()
        data = orjson.dumps(row) + b"\n"
        with self._interrupts.deferred():
            self._write_all(data)
        self.lines += 1

    def _write_all(self, data: bytes) -> None:
        size = None
        if self._own and stat.S_ISREG((status := os.fstat(self._fd)).st_mode):
            size = status.st_size
        try:
            if self._stream is not None:
                self._stream.write(data)
                self._stream.flush()
            else:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
        except OSError as error:
            if isinstance(error, BrokenPipeError) and not self._own:
                raise  # the reader of standard output is gone (head): the command line ends quietly
            if size is not None:
                with suppress(OSError):
                    os.ftruncate(self._fd, size)  # no partial line: --resume continues cleanly
            written = f"the {self.lines} lines before it are kept" if self.lines else "nothing was written"
            raise OutputError(f"cannot write {self._name}: {error.strerror} ({written})") from None

    def close(self) -> None:
        if self._own:
            os.close(self._fd)
            self._own = False
