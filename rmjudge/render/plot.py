"""``rmjudge eval --plot``: accuracy per subset with its interval, and the calibration curve, as a figure.

matplotlib is an optional extra (``pip install 'rmjudge[plot]'``): nothing else needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rmjudge.errors import InputError, UsageError

INSTALL_HINT = "--plot needs matplotlib: pip install 'rmjudge[plot]'"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as pyplot

    return pyplot


def check_plot_path(path: Path) -> None:
    """Fail before any judging when --plot cannot be honoured: no matplotlib, or an unknown format."""
    pyplot = _pyplot()
    formats = pyplot.figure().canvas.get_supported_filetypes()
    pyplot.close("all")
    if path.suffix.lstrip(".").lower() not in formats:
        suffixes = ", ".join("." + name for name in sorted(formats))
        raise UsageError(f"--plot {path}: end the file name with one of {suffixes}")


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Write the figure to ``path`` (the format follows the suffix: .png, .svg, .pdf)."""
    pyplot = _pyplot()
    rows = [("all pairs", report["accuracy"]), *report["subsets"].items()]
    rows = [(name, est) for name, est in rows if est.get("value") is not None]
    figure, (bars, curve) = pyplot.subplots(
        1, 2, figsize=(12, max(4.0, 0.35 * len(rows) + 1.5)), gridspec_kw={"width_ratios": [3, 2]}
    )
    _accuracy_bars(bars, rows)
    _calibration_curve(curve, report["calibration"])
    run = report.get("run") or {}
    model = (run.get("model") or {}).get("file", "")
    data = Path(str(run.get("data", ""))).name
    figure.suptitle(f"rmjudge eval · {data} · {run.get('protocol', '')} · {model}", fontsize=10)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise InputError(f"cannot write the plot to {path}: {error}") from None
    finally:
        pyplot.close(figure)


def _accuracy_bars(bars: Any, rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Accuracy per subset, the whole data set first, with the 95% interval as error bars."""
    names = [f"{name} (n={est['n']})" for name, est in rows]
    values = [est["value"] for name, est in rows]
    errors = [
        [est["value"] - est["low"] for _, est in rows],
        [est["high"] - est["value"] for _, est in rows],
    ]
    positions = list(range(len(rows)))[::-1]  # the first row on top
    colours = ["#1f4e79"] + ["#5b9bd5"] * (len(rows) - 1)
    bars.barh(positions, values, xerr=errors, color=colours, capsize=3, error_kw={"elinewidth": 1})
    for position, value, high in zip(positions, values, errors[1], strict=True):
        bars.text(min(value + high + 0.01, 0.93), position, f"{value:.0%}", va="center", fontsize=8)
    bars.set_yticks(positions, names, fontsize=8)
    bars.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    bars.set_xlim(0, 1)
    bars.set_xlabel("accuracy (ties count half), 95% bootstrap interval")
    bars.set_title("Accuracy per subset")


def _calibration_curve(curve: Any, calibration: dict[str, Any]) -> None:
    """Observed accuracy against confidence, per bin (labelled with its pairs), beside the diagonal."""
    bins = calibration["bins"]
    curve.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    if bins:
        curve.plot(
            [b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color="#c55a11",
            label="observed",
        )  # fmt: skip
        for b in bins:
            point = (b["confidence"], b["accuracy"])
            curve.annotate(str(b["n"]), point, textcoords="offset points", xytext=(4, -10), fontsize=7)
    else:
        curve.text(0.5, 0.5, "no pair with a winner\n(every pair a tie)", ha="center", va="center", fontsize=9)
    ece = calibration["ece"]
    curve.set_xlim(0, 1)
    curve.set_ylim(0, 1)
    curve.set_xlabel("confidence of the verdict")
    curve.set_ylabel("observed accuracy (labels: pairs per bin)")
    curve.set_title("Calibration" + (f" (ECE {ece:.3f})" if ece is not None else ""))
    curve.legend(loc="upper left", fontsize=8)
