"""One worker thread owns the judge: pairs from every request are gathered into ``judge_many`` batches.

The core judge is synchronous and its engine is not safe to share between threads, so every call into
the judge's engine for judging happens in the one worker thread. Requests hand their pairs in with
``submit`` and get a ``concurrent.futures.Future`` of their outcomes; the server awaits it with
``asyncio.wrap_future``, which resolves the request's own future on its event loop through
``loop.call_soon_threadsafe``. The worker waits a few milliseconds after the first pair arrives (or
until the engine's slots can be filled a few times over) so that concurrent requests share one batch:
eight clients at once cost about what one batch of eight costs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rmjudge.errors import RmjudgeError
from rmjudge.prompts import Pair

if TYPE_CHECKING:
    from rmjudge.judgment import Judgment


GATHER_SECONDS = 0.005  # how long the worker waits for more pairs after the first one arrives
PAIRS_PER_SLOT = 4  # ... unless this many pairs per engine slot are already waiting
RETRY_AFTER_MAX = 600


class BatchJudge(Protocol):
    """What the server needs of a judge (``rmjudge.Judge`` has it)."""

    order: str

    def judge_many(self, pairs: Iterable[Pair]) -> Iterator[Judgment | RmjudgeError]: ...

    def check_fits(self, pair: Pair) -> None: ...


class QueueFull(Exception):
    """More pairs are waiting than the queue limit allows: the client should come back later."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Stopping(Exception):
    """The server is shutting down: no new work is taken."""


class EngineFailure(Exception):
    """The judge failed as a whole (not one pair's own error): every pair of the batch gets it."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{error}" or type(error).__name__)
        self.error = error


@dataclass
class _Ticket:
    """One submission: its pairs' outcomes, filled in by the worker, and the future that delivers them."""

    size: int
    future: Future[list[Any]] = field(default_factory=Future)
    results: list[Any] = field(default_factory=list)
    remaining: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * self.size
        self.remaining = self.size
        # Running from the start: a client that goes away cannot cancel it under the worker's feet.
        self.future.set_running_or_notify_cancel()

    def deliver(self, index: int, outcome: Any) -> None:
        if self.future.done():
            return
        self.results[index] = outcome
        self.remaining -= 1
        if self.remaining == 0:
            self.future.set_result(self.results)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass
class _Item:
    ticket: _Ticket
    index: int
    pair: Pair


@dataclass
class Stats:
    queued: int  # pairs waiting for the worker
    running: int  # pairs in the batch being judged
    batches: int  # batches judged since the start
    judged: int  # pairs judged since the start
    seconds_per_pair: float | None  # recent wall seconds per judged pair (batches overlap their pairs)


def parallel_of(judge: Any) -> int:
    """Sequences the judge's engine runs at once (1 for an engine that does not say)."""
    info = getattr(getattr(judge, "engine", None), "info", None)
    return max(1, int(getattr(info, "parallel", 1) or 1))


class Batcher:
    """The worker thread and its queue. ``queue_limit``: the most pairs that may wait (0: no limit)."""

    def __init__(
        self,
        judge: BatchJudge,
        *,
        queue_limit: int = 256,
        gather_seconds: float = GATHER_SECONDS,
        batch_pairs: int | None = None,
    ) -> None:
        self.judge = judge
        self.queue_limit = queue_limit
        self.gather_seconds = gather_seconds
        self.batch_pairs = batch_pairs or parallel_of(judge) * PAIRS_PER_SLOT
        self._items: deque[_Item] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._finished = False  # the worker has ended: nothing queued now would ever run
        self._running = 0
        self._batches = 0
        self._judged = 0
        self._seconds_per_pair: float | None = None
        self._thread = threading.Thread(target=self._work, name="rmjudge-judge", daemon=True)

    # -- the requests' side ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the worker."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def admit(self, pairs: int) -> None:
        """Raise QueueFull when ``pairs`` more would pass the queue limit, Stopping when shutting down."""
        with self._wake:
            self._admit(pairs)

    def _admit(self, pairs: int) -> None:
        if self._stopping:
            raise Stopping("the server is shutting down")
        if self.queue_limit and self._items and len(self._items) + pairs > self.queue_limit:
            raise QueueFull(
                f"the judge is busy: {len(self._items)} pairs are waiting (queue limit {self.queue_limit}); "
                "retry after the time in Retry-After",
                self.retry_after(len(self._items) + self._running),
            )

    def submit(self, pairs: Sequence[Pair], *, admitted: bool = False) -> Future[list[Judgment | RmjudgeError]]:
        """Queue ``pairs``; the future gives each pair's Judgment or its own error, in order.

        ``admitted``: the caller was already let in (a ranking's later rounds), so the queue limit does
        not apply again. Raises QueueFull or Stopping before anything is queued.
        """
        ticket = _Ticket(len(pairs))
        with self._wake:
            if not admitted:
                self._admit(len(pairs))
            elif self._finished:
                raise Stopping("the server is shutting down")
            self._items.extend(_Item(ticket, index, pair) for index, pair in enumerate(pairs))
            self._wake.notify_all()
        if not pairs:
            ticket.future.set_result([])
        return ticket.future

    def stats(self) -> Stats:
        with self._wake:
            return Stats(len(self._items), self._running, self._batches, self._judged, self._seconds_per_pair)

    def retry_after(self, pairs_ahead: int) -> int:
        """Seconds a client should wait for ``pairs_ahead`` pairs to be judged, from the recent pace."""
        per_pair = self._seconds_per_pair or 1.0
        return max(1, min(RETRY_AFTER_MAX, math.ceil(per_pair * pairs_ahead)))

    # -- the worker --------------------------------------------------------------------------------

    def _work(self) -> None:
        while batch := self._next():
            self._run_batch(batch)

    def _next(self) -> list[_Item]:
        """Wait for pairs, then gather more for a short while; [] once stopping with nothing left."""
        with self._wake:
            while not self._items:
                if self._stopping:
                    self._finished = True
                    return []
                self._wake.wait()
            deadline = time.monotonic() + self.gather_seconds
            while len(self._items) < self.batch_pairs and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(left)
            batch = list(self._items)
            self._items.clear()
            self._running = len(batch)
            return batch

    def _run_batch(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        delivered = 0
        try:
            outcomes = self.judge.judge_many([item.pair for item in batch])
            for item, outcome in zip(batch, outcomes):
                item.ticket.deliver(item.index, outcome)
                delivered += 1
            if delivered < len(batch):
                raise RuntimeError(f"the judge gave {delivered} outcomes for {len(batch)} pairs")
        except Exception as error:  # the engine failed: every pair still waiting gets that error
            failure = EngineFailure(error)
            for item in batch[delivered:]:
                item.ticket.fail(failure)
        finally:
            elapsed = time.perf_counter() - started
            with self._wake:
                self._running = 0
                self._batches += 1
                self._judged += delivered
                if delivered:
                    recent = elapsed / delivered
                    previous = self._seconds_per_pair
                    self._seconds_per_pair = recent if previous is None else 0.7 * previous + 0.3 * recent


class QueuedJudge:
    """The judge as a ranking or rewards call sees it from a request's thread: every pair goes through
    the batcher, so it shares batches with every other request.

    ``check_fits`` (formatting and tokenizing one prompt) runs here rather than in the worker: a ranking
    checks its candidates one by one, and waiting for the worker's turn between long batches each time
    would cost a batch per candidate. It relies on an engine's ``format_prompt`` reading only the model's
    vocabulary (true of the llama and http engines); the lock keeps request threads from calling it
    at once.
    """

    _formatting = threading.Lock()

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher
        self.order = batcher.judge.order

    def judge_many(self, pairs: Iterable[Pair]) -> Iterator[Judgment | RmjudgeError]:
        # The request was admitted once: its later rounds are not refused halfway through.
        return iter(self._batcher.submit(list(pairs), admitted=True).result())

    def check_fits(self, pair: Pair) -> None:
        with self._formatting:
            self._batcher.judge.check_fits(pair)
