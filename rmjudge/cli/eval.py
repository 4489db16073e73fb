"""``rmjudge eval``: accuracy, biases and cost of the judge on labelled pairs, and reports compared."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rmjudge.cli.command import command
from rmjudge.cli.options import MapOption, judge_options, open_judge
from rmjudge.session import JudgeOptions

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from rmjudge.evaluate import StoredResults


@command
@judge_options(order=False)
def eval_command(
    data: Annotated[
        str | None, typer.Argument(help="Labelled pairs, JSON Lines (- for standard input): the formats batch reads.")
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="both (default): both orders, a tie when they disagree. official: RM-R1's, one order per pair "
            "by a coin seeded with --seed. verdict-only: both orders, no reasoning (budget 0).",
        ),
    ] = "both",
    limit: Annotated[int | None, typer.Option("--limit", help="Judge only the first N labelled pairs.")] = None,
    maps: MapOption = None,
    full_rm_bench: Annotated[
        bool,
        typer.Option(
            "--rm-bench-matrix",
            help="From RM-Bench's style-matched pairs (ids ending c0r0, c1r1, c2r2) judge all 9 chosen/rejected "
            "style pairs per prompt, for its easy and hard accuracies (3x the work).",
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write per-pair results as JSONL, to recompute the report with --from.")
    ] = None,
    from_results: Annotated[
        Path | None, typer.Option("--from", help="Recompute the report from results written by --out; judge nothing.")
    ] = None,
    compare_files: Annotated[
        tuple[Path, Path] | None,
        typer.Option("--compare", help="Two reports written with --json: each metric side by side, with b - a."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write a figure (.png, .svg, .pdf): accuracy per subset, calibration curve."),
    ] = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate",
            help="Fit the model's confidence to how often it is right (on 70% of the pairs; ECE before and after "
            "on the other 30%) and store the fit: compare, batch and check then report the calibrated confidence.",
        ),
    ] = False,
    calibration_method: Annotated[
        str,
        typer.Option(
            "--calibration-method", help="platt (default: slope and offset) or temperature (a slope only)."
        ),
    ] = "platt",
    *,
    judge: JudgeOptions,
    json_output: Annotated[
        bool, typer.Option("--json", help="The report as one JSON object (the default when stdout is not a terminal).")
    ] = False,
) -> None:
    """Accuracy of the judge on labelled pairs, with intervals, biases and cost.

    Exit codes: 0 done, 2 usage, 3 unreadable input, 4 model.
    """
    from rmjudge import evaluate as evaluating
    from rmjudge import metrics, report_compare
    from rmjudge.render import console, report

    mode = evaluating.eval_mode(
        data=data, from_results=from_results, compare=compare_files, plot=plot, out=out, limit=limit,
        maps=maps or (), rm_bench_matrix=full_rm_bench, protocol=protocol, max_tokens=judge.max_tokens,
        calibrate=calibrate,
    )  # fmt: skip
    evaluating.check_calibration_method(calibration_method)
    as_json = console.wants_json(json_output)
    if mode == "compare":
        assert compare_files is not None
        rows = report_compare.compare_reports(*(evaluating.read_report(path) for path in compare_files))
        a, b = map(str, compare_files)
        _show({"a": a, "b": b, "metrics": rows}, lambda: report.comparison_view(rows, a, b), as_json)
        return
    if plot is not None:
        from rmjudge.render.plot import check_plot_path

        check_plot_path(plot)
    if mode == "from":
        assert from_results is not None
        stored = evaluating.read_results(from_results)
    else:
        assert data is not None
        stored = _judged(data, judge, protocol=protocol, limit=limit, maps=maps, full_rm_bench=full_rm_bench, out=out)
    built = metrics.build_report(stored.results, stored.skipped, stored.run)
    if calibrate:
        built["calibration_fit"] = _calibrated(stored, calibration_method)
    _show(built, lambda: report.report_view(built), as_json)
    if plot is not None:
        from rmjudge.render.plot import plot_report

        plot_report(built, plot)
        console.print_line(f"wrote {plot}", console=console.stderr)


def _show(data: dict[str, Any], view: Callable[[], Any], as_json: bool) -> None:
    from rmjudge.render import console

    if as_json:
        console.print_json(data)
    else:
        console.stdout.print(view())


def _calibrated(stored: StoredResults, method: str) -> dict[str, Any]:
    """Fit and store a calibration on the run's pairs; what the report says about it."""
    from rmjudge import calibration
    from rmjudge import evaluate as evaluating
    from rmjudge.render import console

    fitted = evaluating.fit_calibration(stored.run, stored.results, method)
    path = calibration.save(fitted)
    console.print_line(f"stored the calibration in {path}", console=console.stderr)
    if fitted.ece_raw is not None and fitted.ece_calibrated is not None and fitted.ece_calibrated > fitted.ece_raw:
        # Few held-out pairs make ECE noisy, so the fit is kept; but the user should know what it did there.
        console.warn(
            f"on the {fitted.held_out} held-out pairs the fit made ECE worse ({fitted.ece_raw:.3f} -> "
            f"{fitted.ece_calibrated:.3f}): fit on more labelled pairs or with a reasoning budget, "
            f"or delete {path} to report raw confidences"
        )
    return evaluating.calibration_summary(fitted, path)


def _judged(
    data: str,
    options: JudgeOptions,
    *,
    protocol: str,
    limit: int | None,
    maps: Sequence[str] | None,
    full_rm_bench: bool,
    out: Path | None,
) -> StoredResults:
    """The results of judging DATA's labelled pairs under ``protocol``."""
    from rmjudge import evaluate as evaluating
    from rmjudge.records import parse_maps
    from rmjudge.render import console
    from rmjudge.render.progress import progress_bar

    items = evaluating.load_pairs(data, maps=parse_maps(maps or []), limit=limit, full_rm_bench=full_rm_bench)
    judge = open_judge(options)
    seed = options.sampling.seed
    info = evaluating.run_info(judge, data=data, protocol=protocol, seed=seed, limit=limit)
    results, skipped = evaluating.run_eval(
        judge, items, protocol=protocol, seed=seed, run=info, out=out, warn=console.warn, progress=progress_bar()
    )
    return evaluating.StoredResults(info, results, skipped)
