"""Calibration fit, ECE, held-out split and the stored file's round trip (no model)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from rmjudge import calibration as cal
from rmjudge import session
from rmjudge.cache import VerdictCache
from rmjudge.errors import UsageError
from rmjudge.session import JudgeOptions

from .conftest import SHARED, FakeEngine, invoke_cli, run_cli


def _overconfident(n: int, seed: int = 1) -> tuple[list[list[float]], list[int]]:
    """Pairs whose true P(A) is sigmoid(z) but whose judge reports sigmoid(4 z) in both orders."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int).tolist()
    reported = 1 / (1 + np.exp(-4 * z))
    return [[float(p), float(p)] for p in reported], labels


def test_order_logit_averages_log_odds_and_clips() -> None:
    assert cal.order_logit([0.5, 0.5]) == pytest.approx(0.0)
    assert cal.order_logit([0.8, 0.2]) == pytest.approx(0.0)  # a position flip cancels out
    assert cal.order_logit([0.9]) == pytest.approx(math.log(9))
    assert math.isfinite(cal.order_logit([1.0, 1.0]))


def test_platt_fit_recovers_the_overconfidence_and_lowers_ece() -> None:
    probabilities, labels = _overconfident(4000)
    fitted = cal.calibrate(probabilities, labels, model="sha256:x", template="t:1", method="platt")
    assert fitted.slope == pytest.approx(0.25, abs=0.05)
    assert fitted.held_out == 1200 and fitted.pairs == 2800
    assert fitted.ece_raw is not None and fitted.ece_calibrated is not None
    assert fitted.ece_calibrated < fitted.ece_raw / 2


def test_temperature_fit_has_no_intercept() -> None:
    probabilities, labels = _overconfident(2000)
    slope, intercept = cal.fit([cal.order_logit(p) for p in probabilities], labels, "temperature")
    assert intercept == 0.0 and slope == pytest.approx(0.25, abs=0.06)


def test_fit_refuses_one_sided_labels_and_unknown_methods() -> None:
    with pytest.raises(UsageError, match="both outcomes"):
        cal.fit([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(UsageError, match="platt or temperature"):
        cal.fit([0.1, 0.2], [0, 1], "isotonic")


def test_split_is_seeded_and_disjoint() -> None:
    fit_a, held_a = cal.split_held_out(50, 0.3, seed=7)
    assert (fit_a, held_a) == cal.split_held_out(50, 0.3, seed=7)
    assert not set(fit_a) & set(held_a) and len(fit_a) + len(held_a) == 50 and len(held_a) == 15


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    # confidence 0.75 in every pair (either side), right in 3 of 4: calibrated
    assert cal.expected_calibration_error([0.75, 0.75, 0.75, 0.25], [1, 1, 1, 1]) == pytest.approx(0.0)
    assert cal.expected_calibration_error([0.75, 0.75, 0.75, 0.75], [1, 1, 1, 0]) == pytest.approx(0.0)
    # confidence 0.95, right in half: off by 0.45
    assert cal.expected_calibration_error([0.95, 0.95, 0.05, 0.05], [1, 0, 1, 0]) == pytest.approx(0.45)


def test_round_trip_is_keyed_by_model_and_template(tmp_path) -> None:
    probabilities, labels = _overconfident(300)
    fitted = cal.calibrate(probabilities, labels, model="sha256:abc", template="rm-r1-instruct:1")
    path = cal.save(fitted, tmp_path)
    assert cal.load("sha256:abc", "rm-r1-instruct:1", tmp_path) == fitted
    assert cal.load("sha256:other", "rm-r1-instruct:1", tmp_path) is None
    path.write_text("{not json", encoding="utf-8")
    assert cal.load("sha256:abc", "rm-r1-instruct:1", tmp_path) is None
    assert fitted.probability_a([0.9, 0.9]) < 0.9  # an overconfident judge is pulled towards 0.5


def test_a_mirrored_fit_takes_data_whose_better_text_is_always_a() -> None:
    probabilities, labels = _overconfident(600)
    # As prompt/chosen/rejected files give it: the better text is always A (swap the pairs labelled B).
    as_chosen = [p if y == 1 else [1 - q for q in p] for p, y in zip(probabilities, labels, strict=True)]
    with pytest.raises(UsageError, match="both outcomes"):
        cal.calibrate(as_chosen, [1] * 600, model="m", template="t")
    fitted = cal.calibrate(as_chosen, [1] * 600, model="m", template="t", mirrored=True)
    assert fitted.slope == pytest.approx(0.25, abs=0.08) and fitted.intercept == pytest.approx(0.0, abs=1e-3)
    assert fitted.probability_a([0.8, 0.7]) == pytest.approx(1 - fitted.probability_a([0.2, 0.3]))
    assert fitted.ece_calibrated is not None and fitted.ece_raw is not None and fitted.ece_calibrated < fitted.ece_raw


# -- eval --calibrate, then compare, batch and check report the calibrated confidence --------------

GOOD_FIRST = 0.95  # the scripted judge's P(the text with GOOD) wherever it is shown: right 70% of the time


def _labelled(tmp_path: Path, pairs: int = 20) -> Path:
    """Pairs where the chosen text carries GOOD in 70% of them (the rest: the rejected one does)."""
    rows = []
    for n in range(pairs):
        chosen, rejected = (f"right {n} GOOD", f"wrong {n}") if n % 10 < 7 else (f"right {n}", f"wrong {n} GOOD")
        rows.append({"id": f"p{n}", "prompt": f"Question {n}?", "chosen": chosen, "rejected": rejected})
    path = tmp_path / "labelled.jsonl"
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeEngine:
    """Every command's judge on one scripted engine (one model file), with the options it was given."""
    from rmjudge.judge import Judge

    from .test_judge import position_probability, prefers

    engine = FakeEngine(path=tmp_path / "model.gguf", script=prefers("GOOD"),
                        probability_a=position_probability("GOOD", GOOD_FIRST))  # fmt: skip

    def open_judge(options: JudgeOptions, **_: Any) -> Judge:
        return Judge(engine, template="instruct", max_tokens=options.max_tokens, cache=VerdictCache(),
                     decide=options.rule, tie_margin=options.margin)  # fmt: skip

    monkeypatch.setattr(session, "open_judge", open_judge)
    return engine


def test_eval_calibrate_round_trip_to_compare_batch_and_check(
    scripted: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, out = _labelled(tmp_path), tmp_path / "results.jsonl"
    result = invoke_cli("eval", str(data), "--calibrate", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    fit = report["calibration_fit"]
    assert (fit["method"], fit["fit_pairs"], fit["held_out"]) == ("platt", 14, 6)
    assert 0 <= fit["ece_calibrated"] <= 1 and 0 <= fit["ece_raw"] <= 1  # on 6 pairs: either may be lower
    assert report["calibration"]["ece"] == pytest.approx(0.95 - 0.7)  # 95% sure, right 70% of the time
    stored = cal.load(fit["model"], fit["template"])
    assert stored is not None and Path(fit["path"]).is_file()
    assert stored.slope < 1 and stored.probability_a([0.95, 0.95]) == pytest.approx(0.7, abs=0.06)  # less sure
    # eval keeps measuring the model: its confidences stay raw with a calibration stored.
    plain = orjson.loads(invoke_cli("eval", str(data), "--json").stdout)
    assert plain["calibration"]["ece"] == pytest.approx(0.25) and "calibration_fit" not in plain
    assert "stored the calibration in" in result.stderr

    # compare: the calibrated confidence, the raw one beside it.
    (tmp_path / "a.txt").write_text("mine GOOD")
    (tmp_path / "b.txt").write_text("theirs")
    compared = orjson.loads(invoke_cli("compare", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--json").stdout)
    assert compared["winner"] == "A" and compared["calibrated"] is True
    assert compared["confidence_raw"] == pytest.approx(GOOD_FIRST)
    assert compared["confidence"] == pytest.approx(stored.probability_a([GOOD_FIRST, GOOD_FIRST]))
    assert 0.5 < compared["confidence"] < GOOD_FIRST

    # batch: the same fields, nested and flat.
    lines = tmp_path / "batch.jsonl"
    lines.write_bytes(orjson.dumps({"prompt": "q", "chosen": "mine GOOD", "rejected": "theirs"}) + b"\n")
    nested = orjson.loads(invoke_cli("batch", str(lines)).stdout)["rmjudge"]
    assert nested["calibrated"] is True and nested["confidence"] == pytest.approx(compared["confidence"])
    flat = orjson.loads(invoke_cli("batch", str(lines), "--flat").stdout)
    assert flat["rmjudge_calibrated"] is True and flat["rmjudge_confidence_raw"] == pytest.approx(GOOD_FIRST)

    # check: the threshold meets the calibrated confidence (95% raw would fail at 0.9; calibrated passes).
    monkeypatch.chdir(tmp_path)
    (tmp_path / "golden").mkdir()
    (tmp_path / "golden" / "doc.md").write_text("mine GOOD")
    (tmp_path / "doc.md").write_text("theirs")
    checked = invoke_cli("check", "doc.md", "--reference", "golden/doc.md", "--worktree", "--threshold", "0.9",
                         "--json")  # fmt: skip
    record = orjson.loads(checked.stdout)
    assert checked.returncode == 0 and record["status"] == "worse" and record["passed"] is True
    assert record["confidence"] == pytest.approx(compared["confidence"]) and record["judgment"]["calibrated"] is True

    # Refit from the stored results, judging nothing; another method, stored in the same place.
    generated = len(scripted.generate_calls)
    again = invoke_cli("eval", "--from", str(out), "--calibrate", "--calibration-method", "temperature", "--json")
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout)["calibration_fit"]["method"] == "temperature"
    assert len(scripted.generate_calls) == generated
    refitted = cal.load(fit["model"], fit["template"])
    assert refitted is not None and refitted.method == "temperature" and refitted.intercept == 0.0


def test_a_fit_that_worsens_held_out_ece_is_stored_with_a_warning(
    scripted: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rmjudge import evaluate

    real_fit = evaluate.fit_calibration

    def worse_on_held_out(*args: Any, **kwargs: Any) -> cal.Calibration:
        fitted = real_fit(*args, **kwargs)
        return replace(fitted, ece_raw=0.045, ece_calibrated=0.119)  # as bench_decide measured verdict-only

    monkeypatch.setattr(evaluate, "fit_calibration", worse_on_held_out)
    result = invoke_cli("eval", str(_labelled(tmp_path)), "--calibrate", "--json")
    assert result.returncode == 0, result.stderr
    path = orjson.loads(result.stdout)["calibration_fit"]["path"]
    assert Path(path).is_file()
    assert "on the 6 held-out pairs the fit made ECE worse (0.045 -> 0.119)" in result.stderr
    assert f"delete {path}" in result.stderr
    fine = invoke_cli("eval", str(_labelled(tmp_path)), "--calibrate", "--json")  # the real fit, no warning forced
    report = orjson.loads(fine.stdout)["calibration_fit"]
    assert ("made ECE worse" in fine.stderr) == (report["ece_calibrated"] > report["ece_raw"])


def test_no_calibration_stored_leaves_the_output_as_it_was(scripted: FakeEngine, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("mine GOOD")
    (tmp_path / "b.txt").write_text("theirs")
    compared = orjson.loads(invoke_cli("compare", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--json").stdout)
    assert compared["confidence"] == pytest.approx(GOOD_FIRST)
    assert "calibrated" not in compared and "confidence_raw" not in compared


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--calibrate", "--calibration-method", "isotonic"), "--calibration-method 'isotonic': use platt or"),
        (("--calibrate", "--limit", "5"), "--calibrate needs at least 10 judged pairs"),
    ],
)
def test_bad_calibration_requests(scripted: FakeEngine, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = invoke_cli("eval", str(_labelled(tmp_path)), *args)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.model
def test_real_eval_calibrate_then_compare(gemma_path: Path, tmp_path: Path) -> None:
    rows = [orjson.loads(raw) for raw in (SHARED / "data" / "llmbar.jsonl").read_bytes().splitlines()]
    short = sorted(rows, key=lambda r: len(r["prompt"]) + len(r["chosen"]) + len(r["rejected"]))[:10]
    data = tmp_path / "short.jsonl"
    data.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in short))
    model = ("--model", str(gemma_path), "--template", "instruct", "--max-tokens", "0")
    result = run_cli("eval", str(data), *model, "--calibrate", "--json")
    assert result.returncode == 0, result.stderr
    fit = orjson.loads(result.stdout)["calibration_fit"]
    assert (fit["fit_pairs"], fit["held_out"]) == (7, 3) and fit["model"].startswith("sha256:")
    assert 0 <= fit["ece_raw"] <= 1 and 0 <= fit["ece_calibrated"] <= 1
    (tmp_path / "a.txt").write_text(short[0]["chosen"])
    (tmp_path / "b.txt").write_text(short[0]["rejected"])
    compared = run_cli("compare", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "-q", short[0]["prompt"], *model,
                       "--json")  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    judgment = orjson.loads(compared.stdout)
    assert judgment["calibrated"] is True and 0 <= judgment["confidence"] <= 1
    stored = cal.load(fit["model"], fit["template"])
    assert stored is not None
    p_calibrated = stored.probability_a([o["probability_a"] for o in judgment["orders"]])
    expected = {"A": p_calibrated, "B": 1 - p_calibrated}.get(judgment["winner"], 1 - abs(2 * p_calibrated - 1))
    assert judgment["confidence"] == pytest.approx(expected)


def test_the_report_shows_the_fit_and_compare_lists_it(scripted: FakeEngine, tmp_path: Path) -> None:
    from rich.console import Console

    from rmjudge.render.report import report_view
    from rmjudge.report_compare import compare_reports

    report = orjson.loads(invoke_cli("eval", str(_labelled(tmp_path)), "--calibrate", "--json").stdout)
    console = Console(width=200, record=True)
    console.print(report_view(report))
    fit = report["calibration_fit"]
    text = " ".join(console.export_text().split())
    assert f"Calibrated (platt) ECE {fit['ece_raw']:.3f} raw, {fit['ece_calibrated']:.3f} calibrated, on 6" in text
    rows = {row["metric"]: row for row in compare_reports(report, report)}
    assert rows["calibration:held_out_ece_calibrated"]["a"] == pytest.approx(fit["ece_calibrated"])
