"""What one ``rmjudge batch`` output line holds: the input fields, passed through, with the judgment
(or the line's error) under ``rmjudge``, or flattened into ``rmjudge_*`` fields with ``--flat``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rmjudge.errors import RmjudgeError
from rmjudge.judgment import Judgment
from rmjudge.records import Record
from rmjudge.verdict import one_line_reason

KEY = "rmjudge"  # the output field that holds the judgment


def judgment_block(record: Record, judgment: Judgment, *, raw: bool = False) -> dict[str, Any]:
    """What goes under ``rmjudge`` for a judged line: the judgment, the label and whether it agrees.

    ``agrees`` is ``winner == label``: a tie agrees with no label (false); null when unlabelled.
    """
    data = judgment.to_dict(raw=raw)
    return {
        "line": record.line,
        "winner": data.pop("winner"),
        "confidence": data.pop("confidence"),
        "consistent": data.pop("consistent"),
        "probability_a": data.pop("probability_a"),
        "forced": judgment.forced,
        "label": record.label,
        "agrees": None if record.label is None else judgment.winner == record.label,
        "reason": one_line_reason(judgment.orders[0].rationale),
        **data,
    }


def error_block(record: Record, error: RmjudgeError) -> dict[str, Any]:
    return {"error": str(error), "line": record.line, "exit_code": error.exit_code}


_FLAT_SCALARS = ("line", "winner", "confidence", "consistent", "probability_a", "forced", "label", "agrees", "reason")


def flat_settings(block: Mapping[str, Any]) -> dict[str, Any]:
    """How a line was judged, as --flat records it: the model file, the template, the sampling and budget."""
    model, template = block["model"], block["template"]
    settings = {
        f"{KEY}_model": model["file"],
        f"{KEY}_model_sha256": model.get("sha256"),
        f"{KEY}_template": template["id"],
        f"{KEY}_template_sha256": template.get("sha256"),
    }
    settings.update({f"{KEY}_{name}": value for name, value in block["sampling"].items()})
    settings.update({f"{KEY}_decision_{name}": value for name, value in block.get("decision", {}).items()})
    return settings


def flatten(block: dict[str, Any]) -> dict[str, Any]:
    """``--flat``: the scalar parts of a block as top-level ``rmjudge_*`` fields (for CSV, spreadsheets)."""
    if "error" in block:
        return {f"{KEY}_{name}": value for name, value in block.items()}
    flat = {f"{KEY}_{name}": block[name] for name in _FLAT_SCALARS}
    flat.update({f"{KEY}_{name}": block[name] for name in ("confidence_raw", "calibrated") if name in block})
    orders = block["orders"]
    flat[f"{KEY}_cached"] = all(order["cached"] for order in orders)
    flat[f"{KEY}_seconds"] = sum(order["seconds"] for order in orders)
    flat[f"{KEY}_tokens_out"] = sum(order["tokens_out"] for order in orders)
    for order in orders:
        # With --samples, sample i > 0 of an order is rmjudge_ab_<i>_verdict; sample 0 is rmjudge_ab_verdict.
        name = f"{KEY}_{order['order']}" + (f"_{order['sample']}" if order.get("sample") else "")
        flat[f"{name}_verdict"] = order["verdict"]
        flat[f"{name}_probability_a"] = order["probability_a"]
    flat.update(flat_settings(block))
    return flat


def output_row(record: Record, block: dict[str, Any], *, flat: bool) -> dict[str, Any]:
    """The input fields, passed through, with the block under ``rmjudge`` (or flattened)."""
    row = dict(record.data or {})
    if flat:
        row.update(flatten(block))
    else:
        row[KEY] = block
    return row


def is_own(name: str, flat: bool) -> bool:
    """Whether ``name`` is a field rmjudge writes (every other field of a line is passed through)."""
    return name.startswith(f"{KEY}_") if flat else name == KEY
