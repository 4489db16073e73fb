"""Calibration fit, ECE, held-out split and the stored file's round trip (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rmjudge import calibration as cal
from rmjudge.errors import UsageError


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
