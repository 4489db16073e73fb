"""rmjudge: judge which of two texts is better with an RM-R1 reasoning reward model, locally.

The public names load on first use (PEP 562), so ``import rmjudge`` and ``rmjudge --help`` stay
fast: the judge pulls in numpy, jinja2 and llama.cpp only when it is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from rmjudge.judge import Judge
    from rmjudge.judgment import Judgment, OrderJudgment
    from rmjudge.prompts import Message, Pair
    from rmjudge.verdict import parse_verdict

_HOMES = {
    "Judge": "rmjudge.judge",
    "Judgment": "rmjudge.judgment",
    "OrderJudgment": "rmjudge.judgment",
    "Message": "rmjudge.prompts",
    "Pair": "rmjudge.prompts",
    "parse_verdict": "rmjudge.verdict",
}

__all__ = ["Judge", "Judgment", "Message", "OrderJudgment", "Pair", "__version__", "parse_verdict"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(import_module(_HOMES[name]), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module 'rmjudge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
