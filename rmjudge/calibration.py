"""Calibrated confidence: fit a model's P(A better) to how often it is right, on labelled pairs.

The judge's raw confidence is a softmax over two tokens; small and quantized judges are over- or
under-confident, and position-biased. Following the usual recipe for pairwise judges (AlpacaEval's
weighted judge, PORTIA), the input is the **order-averaged log-odds** of the two orders' P(A better):
averaging the log-odds over both orders cancels the position bias, and a one-dimensional fit then maps
it to a probability:

- ``platt`` (Platt 1999): P = sigmoid(slope * x + intercept);
- ``temperature`` (Guo et al. 2017): P = sigmoid(x / T), stored as slope = 1/T, intercept 0.

The fit is maximum likelihood (scipy), on pairs the caller keeps apart from the pairs it scores: never
fit and score on the same pairs. A fit is stored per model identity and prompt template, and is a plain
JSON file under the user config dir.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rmjudge.errors import UsageError
from rmjudge.paths import user_config_dir

METHODS = ("platt", "temperature")
CALIBRATION_VERSION = 1
_CLIP = 1e-6  # P(A) of exactly 0 or 1 (a saturated softmax) would give infinite log-odds


@dataclass(frozen=True)
class Calibration:
    """A fitted map from order-averaged log-odds to a calibrated P(A better)."""

    method: str
    slope: float
    intercept: float
    model: str  # the engine's identity id (a file's sha256, a server's model id and fingerprint)
    template: str  # template id and hash, e.g. "rm-r1-instruct:3f2a..."
    pairs: int  # labelled pairs the fit used
    ece_raw: float | None = None  # on held-out pairs, before
    ece_calibrated: float | None = None  # on the same held-out pairs, after
    held_out: int = 0
    version: int = CALIBRATION_VERSION

    def probability_a(self, probabilities_a: Sequence[float]) -> float:
        """The calibrated P(A better) of one pair from its orders' raw P(A better)."""
        return _sigmoid(self.slope * order_logit(probabilities_a) + self.intercept)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def order_logit(probabilities_a: Sequence[float]) -> float:
    """The mean over the orders of log(p / (1 - p)), p clipped away from 0 and 1."""
    if not probabilities_a:
        raise ValueError("no order to average")
    clipped = np.clip(np.asarray(probabilities_a, dtype=float), _CLIP, 1.0 - _CLIP)
    return float(np.mean(np.log(clipped) - np.log1p(-clipped)))


def fit(logits: Sequence[float], labels: Sequence[int], method: str = "platt") -> tuple[float, float]:
    """(slope, intercept) maximising the likelihood of ``labels`` (1: A is better) given ``logits``."""
    from scipy.optimize import minimize

    if method not in METHODS:
        raise UsageError(f"calibration method {method!r}: use {' or '.join(METHODS)}")
    x = np.asarray(logits, dtype=float)
    y = np.asarray(labels, dtype=float)
    if len(x) < 2 or len(set(y.tolist())) < 2:
        raise UsageError("calibration needs labelled pairs of both outcomes (A better and B better): add pairs")

    def loss(params: np.ndarray) -> float:
        slope, intercept = (params[0], params[1]) if method == "platt" else (params[0], 0.0)
        z = slope * x + intercept
        # -log-likelihood of a logistic model, written stably; a whisper of L2 keeps separable data finite
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 1e-4 * slope * slope)

    start = np.array([1.0, 0.0]) if method == "platt" else np.array([1.0])
    result = minimize(loss, start, method="L-BFGS-B")
    slope = float(result.x[0])
    return slope, float(result.x[1]) if method == "platt" else 0.0


def expected_calibration_error(probabilities_a: Sequence[float], labels: Sequence[int], bins: int = 10) -> float:
    """ECE of the winner's confidence, in equal-width bins, as ``rmjudge eval`` reports it."""
    p = np.asarray(probabilities_a, dtype=float)
    y = np.asarray(labels, dtype=float)
    confidence = np.maximum(p, 1.0 - p)
    correct = ((p >= 0.5) == (y == 1)).astype(float)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in np.unique(index):
        members = index == b
        gap += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap / len(p)) if len(p) else 0.0


def split_held_out(count: int, fraction: float = 0.3, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices (fit, held out): a seeded shuffle, so the same data always splits the same way."""
    order = np.random.default_rng(seed).permutation(count)
    cut = max(1, round(count * fraction)) if count > 1 else 0
    return sorted(int(i) for i in order[cut:]), sorted(int(i) for i in order[:cut])


def calibrate(
    orders_probabilities_a: Sequence[Sequence[float]],
    labels: Sequence[int],
    *,
    model: str,
    template: str,
    method: str = "platt",
    held_out_fraction: float = 0.3,
    seed: int = 0,
    mirrored: bool = False,
) -> Calibration:
    """Fit on part of the pairs and measure ECE before and after on the rest.

    ``mirrored``: each fitting pair also counts with its labels A and B swapped (log-odds negated,
    label flipped), which is the same judgment of the same texts: the fit is then symmetric (P(A) at
    x is 1 - P(A) at -x), and data whose better text is always A (prompt/chosen/rejected files) can
    be fitted at all. The held-out ECE needs no mirror: it is the same for a pair and its mirror."""
    fit_idx, held_idx = split_held_out(len(labels), held_out_fraction, seed)
    logits = [order_logit(p) for p in orders_probabilities_a]
    fit_logits, fit_labels = [logits[i] for i in fit_idx], [labels[i] for i in fit_idx]
    if mirrored:
        fit_logits, fit_labels = fit_logits + [-x for x in fit_logits], fit_labels + [1 - y for y in fit_labels]
    slope, intercept = fit(fit_logits, fit_labels, method)
    calibration = Calibration(method, slope, intercept, model, template, pairs=len(fit_idx), held_out=len(held_idx))
    if not held_idx:
        return calibration
    held_labels = [labels[i] for i in held_idx]
    raw = [float(np.mean(orders_probabilities_a[i])) for i in held_idx]
    calibrated = [calibration.probability_a(orders_probabilities_a[i]) for i in held_idx]
    return Calibration(
        **{
            **asdict(calibration),
            "ece_raw": expected_calibration_error(raw, held_labels),
            "ece_calibrated": expected_calibration_error(calibrated, held_labels),
        }
    )


def key_for(meta: Mapping[str, object]) -> tuple[str, str]:
    """(model, template) keys of a fit, from a judgment's or an eval run's ``model`` and ``template``
    records: the engine identity's id (older records: the file's sha256) and the template's id and hash."""
    model, template = meta["model"], meta["template"]
    assert isinstance(model, Mapping) and isinstance(template, Mapping)
    model_id = model.get("id") or f"sha256:{model['sha256']}"
    return str(model_id), f"{template['id']}:{template['sha256']}"


def _path(model: str, template: str, directory: Path | None) -> Path:
    digest = hashlib.sha256(f"{model}\n{template}".encode()).hexdigest()[:24]
    return (directory or user_config_dir() / "calibration") / f"{digest}.json"


def save(calibration: Calibration, directory: Path | None = None) -> Path:
    path = _path(calibration.model, calibration.template, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(calibration), indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def load(model: str, template: str, directory: Path | None = None) -> Calibration | None:
    """The stored fit for this model and template, or None (also for an unreadable or foreign file)."""
    path = _path(model, template, directory)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        calibration = Calibration(**data)
    except (OSError, ValueError, TypeError):
        return None
    if calibration.version != CALIBRATION_VERSION or (calibration.model, calibration.template) != (model, template):
        return None
    return calibration
