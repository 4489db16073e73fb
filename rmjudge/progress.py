"""Progress of long work, reported by the core and shown by whoever called it.

The core counts (pairs judged, bytes downloaded); it never draws. A caller that wants a bar passes
a ``Progress`` (the command line passes ``rmjudge.render.progress.progress_bar()``); a library
caller passes nothing and the work runs silently::

    with (progress or no_progress)(total, unit="pairs", description="judging") as update:
        ...
        update(advance=1, ties=3)   # one more done; ``ties`` is shown beside the count
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

Update = Callable[..., None]
"""``update(advance=0, description=..., **fields)``: ``advance`` more units done (negative: undone);
``description`` replaces the label; other keywords are counters shown beside the count."""


class Progress(Protocol):
    def __call__(
        self, total: int | None, *, unit: str = "pairs", description: str = "", completed: int = 0, **fields: Any
    ) -> AbstractContextManager[Update]:
        """A task of ``total`` units (None: unknown), ``completed`` of them already done. ``unit`` is
        "pairs" or "bytes"; ``fields`` are the counters' starting values."""
        ...


def _ignore(advance: int = 0, **fields: Any) -> None:
    return None


@contextmanager
def no_progress(
    total: int | None, *, unit: str = "pairs", description: str = "", completed: int = 0, **fields: Any
) -> Iterator[Update]:
    """The ``Progress`` of work nobody watches."""
    yield _ignore
