"""The one progress bar: pairs judged (batch, eval) and bytes downloaded (models), on stderr, for a terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from rmjudge import progress as core
from rmjudge.render.console import stderr


class _RatePerMinute(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("")
        per_minute = speed * 60
        shown = f"{per_minute:.1f}" if per_minute < 100 else f"{per_minute:.0f}"
        return Text(f"{shown}/min", style="progress.data.speed")


class _Counters(ProgressColumn):
    """The task's fields, as " · ties 3 · failed 1"."""

    def render(self, task: Task) -> Text:
        return Text("".join(f" · {name.replace('_', ' ')} {value}" for name, value in task.fields.items()))


def _columns(unit: str) -> tuple[ProgressColumn, ...]:
    if unit == "bytes":
        return (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                TimeRemainingColumn())  # fmt: skip
    return (
        TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(), TextColumn(unit),
        _RatePerMinute(), TextColumn("ETA"), TimeRemainingColumn(), _Counters(),
    )  # fmt: skip


def progress_bar(enabled: bool = True) -> core.Progress:
    """A ``rmjudge.progress.Progress`` drawing a bar on stderr while the work runs; nothing when
    ``enabled`` is false or stderr is not a terminal."""

    @contextmanager
    def bar(
        total: int | None, *, unit: str = "pairs", description: str = "", completed: int = 0, **fields: Any
    ) -> Iterator[core.Update]:
        if not (enabled and stderr.is_terminal):
            with core.no_progress(total) as ignore:
                yield ignore
            return
        # A finished download stays on screen (what was fetched); a judging bar gives way to the summary.
        with Progress(*_columns(unit), console=stderr, transient=unit != "bytes") as shown:
            task = shown.add_task(description, total=total, completed=completed, **fields)

            def update(advance: int = 0, **changes: Any) -> None:
                shown.update(task, advance=advance, **changes)

            yield update

    return bar
