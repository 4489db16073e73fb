"""``rmjudge compare``: read the two texts and the question; what ``--show-prompt`` prints."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rmjudge import gguf
from rmjudge.prompts import Pair, detect_family, load_template
from rmjudge.textio import read_question, read_text


def read_pair(a: str, b: str, question: str | None, warn: Callable[[str], None] | None = None) -> Pair:
    """Texts A and B (files, or - for standard input) and the question (text, a file, or None)."""
    stdin_used: list[bool] = []
    text_a, text_b = read_text(a, stdin_used), read_text(b, stdin_used)
    return Pair(a=text_a, b=text_b, question=read_question(question, warn, stdin_used))


def show_prompt(pair: Pair, *, model: str | None, template: str | None, order: str) -> dict[str, Any]:
    """The chat messages for each order, without loading the model (its header names the family)."""
    from rmjudge.judge import ORDERS
    from rmjudge.models import registry, resolve_model

    if template is None:
        known = registry()["models"].get(model or os.environ.get("RMJUDGE_MODEL") or registry()["default"])
        if known and known.get("family"):
            template = str(known["family"])  # an alias: its family is known without the file
        else:
            template = detect_family(gguf.read_metadata(resolve_model(model, pull=False).path))
    prompt_template = load_template(template)
    orders = ORDERS.get(order, ("ab",))
    return {
        "template": prompt_template.id,
        "orders": {
            name: [
                {"role": m.role, "content": m.content}
                for m in prompt_template.render(pair if name == "ab" else pair.swapped())
            ]
            for name in orders
        },
    }
