"""``rmjudge cache``: where the verdict cache is, what it holds; clear it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from rmjudge.cli.command import command
from rmjudge.cli.options import JsonOption

if TYPE_CHECKING:
    from rmjudge.cache import CacheStats

cache_app = typer.Typer(
    help="The verdict cache: every order judged is stored, so the same pair is never judged twice.",
    no_args_is_help=True,
)


def _stats_dict(stats: CacheStats) -> dict[str, Any]:
    return {"path": str(stats.path), "entries": stats.entries, "bytes": stats.bytes, "problem": stats.problem}


@cache_app.command("stats")
@command
def cache_stats(json_output: JsonOption = False) -> None:
    """Where the verdict cache is, how many judged orders it holds, and its size on disk."""
    from rmjudge.cache import VerdictCache
    from rmjudge.render import console
    from rmjudge.render.cache import print_stats

    stats = VerdictCache().stats()
    if console.wants_json(json_output):
        console.print_json(_stats_dict(stats))
    else:
        print_stats(stats)


@cache_app.command("clear")
@command
def cache_clear(json_output: JsonOption = False) -> None:
    """Delete every stored verdict (the next judgment of any pair runs the model again)."""
    from rmjudge.cache import VerdictCache
    from rmjudge.render import console

    cache = VerdictCache()
    removed = cache.clear()
    stats = cache.stats()
    if console.wants_json(json_output):
        console.print_json({"removed": removed, **_stats_dict(stats)})
    else:
        console.print_line(f"removed {removed} entries from {stats.path}")
