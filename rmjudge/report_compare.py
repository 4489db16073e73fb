"""Reading an eval report back: one row per number, each with a stable name (for the terminal table),
and two reports side by side (``eval --compare``). The numbers themselves: ``rmjudge.metrics``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    metric: str
    value: float | None
    kind: str  # "rate" (shown as a percentage), "count" or "number"
    low: float | None = None
    high: float | None = None
    n: int | None = None


def _get(report: dict[str, Any], *path: str) -> Any:
    node: Any = report
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _estimate_row(metric: str, estimate: dict[str, Any] | None) -> Row | None:
    if not isinstance(estimate, dict):
        return None
    return Row(metric, estimate.get("value"), "rate", estimate.get("low"), estimate.get("high"), estimate.get("n"))


def _calibration_fit_rows(report: dict[str, Any]) -> list[Row]:
    """eval --calibrate: the error on the held-out pairs, before and after the fit (none without one)."""
    fit = report.get("calibration_fit")
    if not isinstance(fit, dict):
        return []
    held_out = fit.get("held_out")
    return [
        Row("calibration:held_out_ece_raw", fit.get("ece_raw"), "rate", n=held_out),
        Row("calibration:held_out_ece_calibrated", fit.get("ece_calibrated"), "rate", n=held_out),
    ]


def report_rows(report: dict[str, Any]) -> list[Row]:
    """The report's numbers in reading order, each with a stable name (``accuracy``, ``subset:X``…)."""
    candidates: list[Row | None] = [
        Row("pairs", report.get("pairs"), "count"),
        *(Row(f"skipped:{reason}", count, "count") for reason, count in (report.get("skipped") or {}).items()),
        _estimate_row("accuracy", report.get("accuracy")),
        *(_estimate_row(f"subset:{name}", est) for name, est in (report.get("subsets") or {}).items()),
    ]
    rewardbench = report.get("rewardbench") or {}
    for section, value in (rewardbench.get("sections") or {}).items():
        candidates.append(Row(f"rewardbench:{section}", value.get("value"), "rate", n=value.get("n")))
    if rewardbench.get("score") is not None:
        candidates.append(Row("rewardbench:score", rewardbench["score"], "rate"))
    for level in ("easy", "normal", "hard"):
        if _get(report, "rm_bench", level) is not None:
            candidates.append(_estimate_row(f"rm_bench:{level}", report["rm_bench"][level]))
    for subset, levels in (_get(report, "rm_bench", "subsets") or {}).items():
        candidates.extend(_estimate_row(f"rm_bench:{subset}:{lv}", levels[lv]) for lv in ("easy", "normal", "hard"))
    for name in ("flip_rate", "first_position_rate", "forced_rate", "tie_rate"):
        candidates.append(_estimate_row(name, report.get(name)))
    bias = report.get("length_bias") or {}
    candidates += [
        Row("length:judge_picks_longer", bias.get("judge_picks_longer"), "rate", n=bias.get("n")),
        Row("length:label_prefers_longer", bias.get("label_prefers_longer"), "rate", n=bias.get("n")),
        Row("length:bias", bias.get("bias"), "rate", n=bias.get("n")),
        Row("calibration:ece", _get(report, "calibration", "ece"), "rate", n=_get(report, "calibration", "n")),
        *_calibration_fit_rows(report),
        Row("tokens:prompt_per_judgment", _get(report, "tokens", "prompt_per_judgment"), "number"),
        Row("tokens:generated_per_judgment", _get(report, "tokens", "generated_per_judgment"), "number"),
        Row("speed:pairs_per_minute", _get(report, "speed", "pairs_per_minute"), "number"),
        Row("speed:model_minutes", _get(report, "speed", "model_minutes"), "number"),
        Row("speed:cache_hit_rate", _get(report, "speed", "cache_hit_rate"), "rate"),
    ]
    return [row for row in candidates if row is not None]


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Every number of either report, side by side with ``delta`` = b - a (None where one lacks it)."""
    rows_a = {row.metric: row for row in report_rows(a)}
    rows_b = {row.metric: row for row in report_rows(b)}
    names = list(rows_a) + [name for name in rows_b if name not in rows_a]
    compared = []
    for name in names:
        row_a, row_b = rows_a.get(name), rows_b.get(name)
        value_a = row_a.value if row_a else None
        value_b = row_b.value if row_b else None
        delta = value_b - value_a if value_a is not None and value_b is not None else None
        # Does b's value fall outside a's interval (accuracy-like rows only)? A hint, not a paired test.
        outside = (
            None if row_a is None or row_a.low is None or row_a.high is None or value_b is None
            else not row_a.low <= value_b <= row_a.high
        )  # fmt: skip
        compared.append({
            "metric": name,
            "kind": (row_a or row_b).kind,  # type: ignore[union-attr]
            "a": value_a,
            "b": value_b,
            "delta": delta,
            "b_outside_a_interval": outside,
        })  # fmt: skip
    return compared
