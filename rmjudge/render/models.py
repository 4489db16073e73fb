"""``rmjudge models`` on a terminal: checkpoints on disk and on the hub, one model's metadata."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from rmjudge.render.console import print_line, stdout
from rmjudge.system import human_size

if TYPE_CHECKING:
    from rmjudge.models import HubModel, LocalModel, ResolvedModel

SCORES = ("rewardbench", "rm_bench", "rmb")


def key_value_table(rows: Iterable[tuple[str, Any]], title: str | None = None) -> Table:
    """Two columns, names in bold; a long value folds (a path stays whole to be copied)."""
    table = Table(show_header=False, title=title, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(escape(key), escape(str(value)))
    return table


def _scores(scores: dict[str, float | None]) -> str:
    return "/".join("-" if scores.get(key) is None else f"{scores[key]:.1f}" for key in SCORES) if scores else ""


def print_model_list(rows: Sequence[LocalModel]) -> None:
    # Fits 80 columns: the three scores share one column, and only the path may wrap (folded, so
    # it stays whole to be copied); names and numbers never break.
    table = Table(box=None)
    for column in ("alias", "family", "scores", "quant", "size", "path"):
        table.add_column(
            column, justify="right" if column == "size" else "left", no_wrap=column != "path", overflow="fold"
        )
    for row in rows:
        name = escape(row.alias or row.spec)
        table.add_row(
            f"[bold]{name}[/] *" if row.default else name,
            row.family or "",
            _scores(row.scores),
            row.quant or "",
            human_size(row.size),
            escape(str(row.path)) if row.path else "[dim]not pulled[/]",
        )
    stdout.print(table)
    stdout.print(
        "[dim]* the default · scores: RewardBench / RM-Bench / RMB accuracy % in the RM-R1 paper "
        "(arXiv 2505.02387), full-precision weights[/]",
        highlight=False,
    )


def print_search(found: Sequence[HubModel], query: str) -> None:
    if not found:
        print_line(f"no GGUF repository on the hub matches {query!r}")
        return
    table = Table("repository", "alias", "quants", "downloads", "updated", box=None)
    for repo in found:
        alias = escape(repo.alias or "")
        if repo.alias and not repo.in_registry:
            alias += " [dim](not in the registry: use hf://)[/]"
        table.add_row(
            repo.repo, alias, " ".join(repo.quants), str(repo.downloads or 0), (repo.last_modified or "")[:10]
        )
    stdout.print(table)


def print_pulled(resolved: ResolvedModel, size: int) -> None:
    source = f"{resolved.repo}@{(resolved.revision or '')[:12]}" if resolved.repo else "local file"
    print_line(f"{resolved.path}  ({human_size(size)}, {resolved.quant or '?'}, {source})")


def _info_value(key: str, value: Any) -> Any:
    if key == "size":
        return human_size(value)
    if key == "scores":
        return ", ".join(f"{name} {score}" for name, score in value.items())
    return value


def print_info(info: dict[str, Any]) -> None:
    stdout.print(key_value_table((key, _info_value(key, value)) for key, value in info.items() if value is not None))
