"""What a person at a terminal sees."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from rmjudge.judge import Judge
from rmjudge.prompts import Pair
from rmjudge.render.judgment import judgment_panel

from .conftest import FakeEngine


def rendered(engine: FakeEngine, order: str = "both") -> str:
    console = Console(record=True, width=100, color_system=None)
    judge = Judge(engine=engine, template="instruct", order=order)
    console.print(judgment_panel(judge.judge(Pair(a="x", b="y", question="q"))))
    return console.export_text()


def test_panel_shows_winner_confidence_agreement_and_rationale(fake_engine_factory: Callable[..., FakeEngine]) -> None:
    def x_shown_first(prompt: str) -> bool:
        return "[The Start of Chatbot A's Response]\nx" in prompt

    def script(prompt: str) -> str:
        choice = "A" if x_shown_first(prompt) else "B"
        rubric = "<type>Chat</type>\n<rubric>1. Accuracy</rubric>\n"
        return f"{rubric}<eval>{choice} is precise.</eval>\n<answer>[[{choice}]]</answer>"

    engine = fake_engine_factory(script=script, probability_a=lambda prompt: 0.8 if x_shown_first(prompt) else 0.2)
    text = rendered(engine)
    assert "Winner: A" in text and "confidence 80%" in text and "both orders agree" in text
    assert "order A, B: A (80%)" in text and "order B, A: A (80%)" in text
    assert "Rubric" in text and "1. Accuracy" in text
    assert "A is precise." in text and "B is precise." in text  # each order's evaluation
    assert "fake.gguf" in text and "rm-r1-instruct" in text


def test_panel_shows_a_tie_and_forced_orders(fake_engine_factory: Callable[..., FakeEngine]) -> None:
    text = rendered(fake_engine_factory(script=lambda _: "<eval>The first is better", probability_a=0.7))
    assert "Tie: the orders disagree" in text and "P(A better) 50%" in text
    assert text.count("forced: the model gave no answer") == 2  # it stopped without an <answer>


def test_panel_names_the_texts_in_the_users_labels_in_order_ba(fake_engine_factory: Callable[..., FakeEngine]) -> None:
    # In order ba the user's B ("y") is shown first, as Chatbot A; the model prefers it and says so.
    def script(prompt: str) -> str:
        return "<eval>Chatbot A is concise; Chatbot B rambles.</eval>\n<answer>[[A]]</answer>"

    text = rendered(fake_engine_factory(script=script, probability_a=0.9), order="ba")
    assert "Winner: B" in text and "order B, A: B (90%)" in text
    assert "text B is concise; text A rambles." in text  # relabelled: no position arithmetic for the reader
    assert "Chatbot A is concise" not in text
    assert "the model's Chatbot A is your B" in text  # and the header says so


def test_relabelling_swaps_only_in_order_ba() -> None:
    from rmjudge.render.judgment import in_user_labels

    said = "Chatbot A beats Chatbot B; Chatbot Alpha stays."
    assert in_user_labels(said, "ab") == "text A beats text B; Chatbot Alpha stays."
    assert in_user_labels(said, "ba") == "text B beats text A; Chatbot Alpha stays."
