"""Choosing tokens: sampling from logits, and the checks on the newest bytes of a sequence's text."""

from __future__ import annotations

import re

import numpy as np

from rmjudge.engines.base import Sampling


def decode_text(text: bytearray) -> str:
    return text.decode("utf-8", "replace")


_PROBE_PATTERNS: dict[str, re.Pattern[bytes]] = {}


def ends_with_probe(text: bytearray, probe: str) -> bool:
    """Whether the text ends with ``probe`` (whitespace allowed before each ``[`` and at the end)."""
    pattern = _PROBE_PATTERNS.get(probe)
    if pattern is None:
        pattern = re.compile(re.escape(probe).replace(r"\[", r"\s*\[").encode() + rb"\s*$")
        _PROBE_PATTERNS[probe] = pattern
    # Only the tail can complete the probe: constant work per token.
    return pattern.search(bytes(text[-(len(probe) + 8) :])) is not None


def sample(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
    if sampling.temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / sampling.temperature
    probabilities = np.exp(scaled - scaled.max())
    probabilities /= probabilities.sum()
    if sampling.top_p < 1.0:
        order = np.argsort(-probabilities)
        keep = order[: int(np.searchsorted(np.cumsum(probabilities[order]), sampling.top_p)) + 1]
        mask = np.zeros_like(probabilities)
        mask[keep] = probabilities[keep]
        probabilities = mask / mask.sum()
    return int(rng.choice(len(probabilities), p=probabilities))
