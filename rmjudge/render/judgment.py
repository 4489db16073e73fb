"""``rmjudge compare`` on a terminal: the verdict, each order's reading, and the model's reasons."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from rmjudge.judge import Judgment, OrderJudgment
from rmjudge.render.console import print_json, stdout
from rmjudge.render.formats import percent

_CHATBOT = re.compile(r"\bChatbot ([AB])\b")


def in_user_labels(text: str, order: str) -> str:
    """The model's "Chatbot A/B" are positions; here they become the user's texts: in order ``ba`` the
    model's Chatbot A is the user's B."""
    swap = order == "ba"
    return _CHATBOT.sub(lambda match: "text " + ({"A": "B", "B": "A"}[match[1]] if swap else match[1]), text)


def _order_name(order: str) -> str:
    return "A, B" if order == "ab" else "B, A"


def _order_line(order: OrderJudgment, numbered: bool = False) -> str:
    notes = [f"{order.tokens_out} tokens", "cached" if order.cached else f"{order.seconds:.1f}s"]
    if order.forced:
        why = {"length": "budget spent", "none": "no reasoning (budget 0)"}.get(
            order.stopped_by, "the model gave no answer"
        )
        notes.append(f"[yellow]forced: {why}[/]")
    verdict = f"[bold]{order.verdict}[/] ({percent(order.probability)})"
    sample = f" sample {order.sample + 1}" if numbered else ""
    return f"order {_order_name(order.order)}{sample}: {verdict} · " + " · ".join(notes)


def _rule(judgment: Judgment) -> str:
    return str(judgment.meta.get("decision", {}).get("rule", "agreement"))


def _agreement(judgment: Judgment) -> str:
    readings = len(judgment.orders)
    if readings == 1:
        return "one order"
    if judgment.consistent:
        return "both orders agree" if readings == 2 else f"all {readings} readings agree"
    votes = " to ".join(f"{judgment.votes.get(side, 0)} {side}" for side in ("A", "B"))
    if _rule(judgment) == "agreement":
        return f"each order's majority agrees ({votes})"
    return f"the readings disagree ({votes}): decided by the mean P(A better)"


def _confidence(judgment: Judgment) -> str:
    raw = f" calibrated (raw {percent(judgment.confidence_raw)})" if judgment.confidence_raw is not None else ""
    return f"confidence {percent(judgment.confidence)}{raw}"


def _headline(judgment: Judgment) -> Text:
    if judgment.winner == "tie":
        if _rule(judgment) == "agreement":
            why = "the orders disagree"
        else:
            why = "the orders disagree and cancel out" if not judgment.consistent else "within the tie margin of 50%"
        return Text.from_markup(f"[bold yellow]Tie[/]: {why} · P(A better) {percent(judgment.probability_a)}")
    colour = "green" if judgment.winner == "A" else "cyan"
    return Text.from_markup(
        f"[bold {colour}]Winner: {judgment.winner}[/]  {_confidence(judgment)} · {_agreement(judgment)}"
    )


def _section_title(title: str, order: str) -> Text:
    where = "order A, B" if order == "ab" else "order B, A · relabelled: the model's Chatbot A is your B"
    return Text.from_markup(f"\n[bold]{title}[/] [dim]({where})[/]")


def judgment_panel(judgment: Judgment) -> Panel:
    """The verdict, then the reasons, with every "Chatbot A/B" in the user's labels (text A, text B)."""
    numbered = judgment.meta.get("decision", {}).get("samples", 1) > 1
    lines = "\n".join(_order_line(o, numbered) for o in judgment.orders)
    parts: list[Any] = [_headline(judgment), Text.from_markup(lines)]
    first = judgment.orders[0]
    sections = [
        ("Task", first.rationale.task_type, first.order),
        ("Rubric", first.rationale.rubric, first.order),
        ("Why this rubric", first.rationale.justification, first.order),
        ("Own solution", first.rationale.solution, first.order),
    ]
    # Each order's evaluation (its first sample's): where they disagree, both sides show.
    for order in (o for o in judgment.orders if o.sample == 0):
        sections.append(("Evaluation", order.rationale.evaluation, order.order))
        sections.append(("Thinking", order.rationale.thinking, order.order))
    for title, body, order_name in sections:
        if body:
            parts.append(_section_title(title, order_name))
            parts.append(Text(in_user_labels(body, order_name)))
    model = judgment.meta["model"]
    parts.append(Text.from_markup(f"\n[dim]{escape(model['file'])} · {judgment.meta['template']['id']}[/]"))
    return Panel(Group(*parts), title="rmjudge", expand=False)


def print_judgment(judgment: Judgment, as_json: bool, raw: bool) -> None:
    if as_json:
        print_json(judgment.to_dict(raw=raw))
        return
    stdout.print(judgment_panel(judgment))
    if raw:  # the completions as the model wrote them, in its own position labels
        for order in judgment.orders:
            stdout.rule(f"completion, order {_order_name(order.order)} (as written: Chatbot A is the first shown)")
            stdout.print(Text(order.completion))
