"""Take items from an input without waiting on it while there is other work.

The judge reads its pairs lazily, a window ahead of the engine. An input may be slow (a pipe fed a line
at a time): a plain ``next()`` there would hold finished lines back and leave the engine idle until the
window filled. A ``Prefetch`` reads the input in a thread, at most two items ahead, and hands items over
with a time limit, so the judge can go and run what it has. An input that never waits (a sequence) is
read directly, with no thread.

The input's own error is kept in ``failure`` and the input ends there: the caller raises it once the
items before it are done. The thread is a daemon, stopped and joined when the ``with`` block ends; one
still blocked on its input then (a pipe with nothing more to say) ends when that input next gives or
ends, and never keeps the process from exiting.
"""

from __future__ import annotations

import enum
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

# A wait with no time limit is taken in slices of this many seconds: a Ctrl-C is raised between them
# even where a lock wait cannot be interrupted (Windows).
POLL = 0.5
# How long stopping waits for the thread to end. It ends at once unless it is blocked on the input itself.
JOIN_WAIT = 0.5


class NoItem(enum.Enum):
    """What ``Prefetch.take`` gives in an item's place."""

    WAITING = "no item came within the time limit"
    ENDED = "the input has no more items (or failed: see ``Prefetch.failure``)"


Kind = Literal["item", "end", "error"]


class Prefetch(Generic[T]):
    """The items of ``items`` in order, taken with a time limit (``direct``: read in the caller's thread)."""

    def __init__(self, items: Iterable[T], *, direct: bool = False) -> None:
        self._items: Iterator[T] = iter(items)
        self._direct = direct
        self._queue: queue.Queue[tuple[Kind, object]] = queue.Queue(maxsize=1)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = False
        self.failure: Exception | None = None  # the input's own error, where it ended

    def __enter__(self) -> Prefetch[T]:
        if not self._direct:
            self._thread = threading.Thread(target=self._read, name="rmjudge-input", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def take(self, timeout: float | None) -> T | NoItem:
        """The next item; ``NoItem.WAITING`` when none came within ``timeout`` seconds (None: wait for
        it); ``NoItem.ENDED`` at the end of the input, or where it failed (``failure``)."""
        if self._ended:
            return NoItem.ENDED
        taken = self._next() if self._direct else self._get(timeout)
        if taken is None:
            return NoItem.WAITING
        kind, value = taken
        if kind == "item":
            return value  # type: ignore[return-value]  # the queue holds the input's items, of type T
        self._ended = True
        if kind == "error":
            if not isinstance(value, Exception):  # not the input's own failure (SystemExit, ...): at once
                assert isinstance(value, BaseException)
                raise value
            self.failure = value
        return NoItem.ENDED

    def stop(self) -> None:
        """No more items wanted: the thread ends, and is joined, unless it is blocked on the input."""
        self._stopped.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:  # a thread blocked handing over an item gets room, sees it is stopped and ends
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        thread.join(JOIN_WAIT)

    def _next(self) -> tuple[Kind, object]:
        try:
            return "item", next(self._items)
        except StopIteration:
            return "end", None
        except Exception as error:
            return "error", error

    def _get(self, timeout: float | None) -> tuple[Kind, object] | None:
        while True:
            try:
                return self._queue.get(timeout=POLL if timeout is None else timeout)
            except queue.Empty:
                if timeout is not None:
                    return None

    def _read(self) -> None:
        try:
            for item in self._items:
                self._queue.put(("item", item))  # waits until the judge takes it (or stop() makes room)
                if self._stopped.is_set():
                    return
            self._queue.put(("end", None))
        except BaseException as error:  # raised again in the judge's thread, in the item's place
            self._queue.put(("error", error))
