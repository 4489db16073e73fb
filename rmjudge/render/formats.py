"""Numbers as people read them, in every table, panel and report line (sizes: ``rmjudge.system.human_size``)."""

from __future__ import annotations


def percent(value: float | None, digits: int = 0) -> str:
    """0.625 as "62%" (or "62.5%" with ``digits=1``); "n/a" for no value."""
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def number(value: float | None, digits: int = 1) -> str:
    """1234.5 as "1,234.5"; "n/a" for no value."""
    return "n/a" if value is None else f"{value:,.{digits}f}"
