"""``rmjudge eval``'s report on a terminal, and two reports side by side (``--compare``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rmjudge.render.formats import number, percent


def _pct(value: float | None) -> str:
    return percent(value, 1)


def _interval(estimate: dict[str, Any]) -> str:
    if estimate.get("low") is None:
        return ""
    return f"[{_pct(estimate['low'])}, {_pct(estimate['high'])}]"


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    flips, first = report["flip_rate"], report["first_position_rate"]
    bias, calibration = report["length_bias"], report["calibration"]
    tokens, speed = report["tokens"], report["speed"]
    return [
        ("Flip rate", f"{_pct(flips['value'])} of {flips['n']} pairs judged in both orders"),
        ("First position wins", f"{_pct(first['value'])} of {first['n']} order-judgments (50%: no position bias)"),
        (
            "Longer response wins",
            f"{_pct(bias['judge_picks_longer'])} (labels: {_pct(bias['label_prefers_longer'])}) "
            f"of {bias['n']} pairs of unequal length",
        ),
        ("Forced verdicts", f"{_pct(report['forced_rate']['value'])} of order-judgments"),
        ("Ties", f"{_pct(report['tie_rate']['value'])} of pairs"),
        ("Calibration error", f"{number(calibration['ece'], 3)} (ECE over {calibration['n']} pairs with a winner)"),
        (
            "Tokens per judgment",
            f"{number(tokens['prompt_per_judgment'], 0)} prompt, "
            f"{number(tokens['generated_per_judgment'], 1)} generated",
        ),
        (
            "Speed",
            f"{number(speed['pairs_per_minute'], 2)} pairs/min over {speed['judged_pairs']} judged pairs; "
            f"{number(speed['model_minutes'], 2)} model minutes",
        ),
        ("Cache", f"{_pct(speed['cache_hit_rate'])} of order-judgments served from the verdict cache"),
        *_calibration_fit_rows(report.get("calibration_fit")),
    ]


def _calibration_fit_rows(fit: dict[str, Any] | None) -> list[tuple[str, str]]:
    """``eval --calibrate``: the fit's error before and after, on the pairs it was not fitted on."""
    if not fit:
        return []
    return [
        (
            f"Calibrated ({fit['method']})",
            f"ECE {number(fit['ece_raw'], 3)} raw, {number(fit['ece_calibrated'], 3)} calibrated, on "
            f"{fit['held_out']} held-out pairs (fitted on {fit['fit_pairs']}); stored for compare, batch, check",
        )
    ]


def _headline(report: dict[str, Any]) -> Text:
    run = report.get("run") or {}
    skipped = report.get("skipped") or {}
    data = Path(str(run.get("data", "?"))).name
    model = (run.get("model") or {}).get("file", "?")
    budget = (run.get("sampling") or {}).get("max_tokens", "?")
    skipped_text = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in skipped.items())
    return Text.from_markup(
        f"[bold]rmjudge eval[/] · {escape(data)} · protocol [bold]{escape(str(run.get('protocol', '?')))}[/]"
        f" · {escape(model)} · budget {budget} · seed {run.get('seed', '?')}\n"
        f"{report['pairs']} pairs judged" + (f", skipped: {skipped_text}" if skipped else "")
    )


def _accuracy_table(report: dict[str, Any]) -> Table:
    table = Table(title="Accuracy (ties count half, 95% bootstrap interval)", title_justify="left")
    table.add_column("")
    for column in ("pairs", "accuracy", "interval"):
        table.add_column(column, justify="right")
    overall = report["accuracy"]
    table.add_row("[bold]all[/]", str(overall["n"]), f"[bold]{_pct(overall['value'])}[/]", _interval(overall))
    for name, estimate in report["subsets"].items():
        table.add_row(escape(name), str(estimate["n"]), _pct(estimate["value"]), _interval(estimate))
    return table


def _rewardbench_table(rewardbench: dict[str, Any]) -> Table:
    table = Table(title="RewardBench sections (subsets weighted as RewardBench does)", title_justify="left")
    for column in ("section", "pairs", "score", "subsets"):
        table.add_column(column)
    for section, value in rewardbench["sections"].items():
        table.add_row(section, str(value["n"]), _pct(value["value"]), escape(", ".join(value["subsets"])))
    if rewardbench.get("score") is not None:
        table.add_row("[bold]score[/]", "", f"[bold]{_pct(rewardbench['score'])}[/]", "mean of the sections")
    return table


def _rm_bench_table(rm_bench: dict[str, Any]) -> Table:
    levels = ("easy", "normal", "hard")
    table = Table(title="RM-Bench accuracy (pairs) · hard: chosen less styled", title_justify="left")
    table.add_column("")
    for level in levels:
        table.add_column(level, justify="right")
    for name, by_level in [("all", rm_bench), *rm_bench["subsets"].items()]:
        table.add_row(escape(name), *(f"{_pct(by_level[lv]['value'])} ({by_level[lv]['n']})" for lv in levels))
    return table


def report_view(report: dict[str, Any]) -> Group:
    """The whole report: the run, accuracy with intervals, benchmark sections, biases and cost."""
    parts: list[Any] = [_headline(report), _accuracy_table(report)]
    if report.get("rewardbench"):
        parts.append(_rewardbench_table(report["rewardbench"]))
    if report.get("rm_bench"):
        parts.append(_rm_bench_table(report["rm_bench"]))
    table = Table(show_header=False, box=None, title="Biases and cost", title_justify="left")
    for name, value in _summary_rows(report):
        table.add_row(f"[bold]{name}[/]", value)
    parts.append(table)
    return Group(*parts)


def comparison_view(rows: list[dict[str, Any]], name_a: str, name_b: str) -> Table:
    """``report_compare.compare_reports`` rows side by side, with b - a."""
    table = Table(title=f"a: {escape(name_a)}   b: {escape(name_b)}", title_justify="left")
    table.add_column("metric")
    for column in ("a", "b", "b - a"):
        table.add_column(column, justify="right")
    for row in rows:
        digits = 0 if row["kind"] == "count" else 2

        def shown(value: float | None, kind: str = row["kind"], digits: int = digits) -> str:
            return _pct(value) if kind == "rate" else number(value, digits)

        if row["delta"] is None:
            delta = ""
        elif row["kind"] == "rate":
            delta = f"{100 * row['delta']:+.1f} pts"
        else:
            delta = f"{row['delta']:+,.{digits}f}"
        if row["b_outside_a_interval"]:
            delta = f"[bold]{delta}[/] *"
        table.add_row(escape(row["metric"]), shown(row["a"]), shown(row["b"]), delta)
    table.caption = "*: b lies outside a's 95% interval"
    return table
