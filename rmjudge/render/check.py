"""``rmjudge check``'s report: one line per file, then the verdict of the whole check."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from rmjudge.check import FileResult
from rmjudge.render.console import print_line, stdout
from rmjudge.render.formats import percent


def report_line(result: FileResult) -> str:
    """One compact line: ``✗ docs/x.md  worse (baseline wins, 84% ≥ 60%): <reason>``."""
    if result.judgment is None:
        return f"· {result.path}  {result.note}"
    confidence, threshold = percent(result.confidence), percent(result.threshold)
    if result.status == "better":
        head = f"✓ {result.path}  better (new text wins, {confidence})"
    elif result.status == "tie":
        why = "the orders disagree" if not result.judgment.consistent else f"{confidence}"
        head = f"✓ {result.path}  tie ({why})"
    elif result.passed:
        head = f"✓ {result.path}  worse, under the threshold (baseline wins, {confidence} < {threshold})"
    else:
        head = f"✗ {result.path}  worse (baseline wins, {confidence} ≥ {threshold})"
    return f"{head}: {result.reason}" if result.reason else head


def summary(results: Sequence[FileResult]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        key = "worse, under the threshold" if result.status == "worse" and result.passed else result.status
        counts[key] = counts.get(key, 0) + 1
    failed = sum(not result.passed for result in results)
    parts = ", ".join(f"{count} {status}" for status, count in counts.items())
    files = f"{len(results)} file{'s' if len(results) != 1 else ''}"
    verdict = f"failed: {failed} got worse" if failed else "passed"
    return f"rmjudge check {verdict} ({files}: {parts})"


def print_result(result: FileResult) -> None:
    style = "dim" if result.judgment is None else "green" if result.passed else "bold red"
    stdout.print(Text(report_line(result), style=style), soft_wrap=True)


def print_summary(results: Sequence[FileResult]) -> None:
    print_line(summary(results))
