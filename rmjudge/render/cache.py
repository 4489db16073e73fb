"""``rmjudge cache stats`` on a terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmjudge.render.console import stdout
from rmjudge.render.models import key_value_table
from rmjudge.system import human_size

if TYPE_CHECKING:
    from rmjudge.cache import CacheStats


def print_stats(stats: CacheStats) -> None:
    entries = f"{stats.entries} (one per judged order)"
    rows = [("path", stats.path), ("entries", entries), ("size", human_size(stats.bytes))]
    if stats.problem:
        rows.append(("problem", stats.problem))
    stdout.print(key_value_table(rows, title="verdict cache"))
