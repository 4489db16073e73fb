"""``--criteria``: what "better" means, written into the client question in one way; RM-R1's template
bytes untouched (tests/test_prompts.py still checks them byte for byte)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmjudge.check import plan_check
from rmjudge.config import Settings, load_config
from rmjudge.errors import InputError, UsageError
from rmjudge.prompts import CRITERIA_LEAD, DEFAULT_QUESTION, Message, Pair, load_template
from rmjudge.textio import read_criteria

from .conftest import SHARED

PROMPTS = json.loads((SHARED / "reference" / "rm-r1-prompts.json").read_text())["prompts"]
CRITERIA = "Factual accuracy first, then brevity."
ASKED = f"\n\n{CRITERIA_LEAD} {CRITERIA}"
EARLIER = (Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Name a prime."))


@pytest.mark.parametrize("family", ["instruct", "reasoning"])
def test_criteria_follow_the_question_in_rm_r1s_own_prompt(family: str) -> None:
    template = load_template(family)
    messages = template.render(Pair(a="2", b="4", question="Name a prime.", criteria=CRITERIA))
    reference = PROMPTS[f"RM_R1_SINGLE_TURN_{family.upper()}_USER_PROMPT"]
    # The template's bytes around the question are RM-R1's; only the question carries the criteria.
    assert messages[-1].content == reference.format(question="Name a prime." + ASKED, answer_a="2", answer_b="4")
    assert "Judge the responses by these criteria: Factual accuracy first, then brevity." in messages[-1].content
    # Without criteria, nothing changes.
    assert template.render(Pair(a="2", b="4", question="Name a prime.")) == template.render(
        Pair(a="2", b="4", question="Name a prime.", criteria="  \n")
    )


def test_criteria_without_a_question_follow_the_default_question() -> None:
    messages = load_template("instruct").render(Pair(a="2", b="4", criteria=CRITERIA))
    assert f"[Client Question]\n{DEFAULT_QUESTION}{ASKED}\n" in messages[-1].content


def test_in_a_conversation_the_criteria_follow_the_users_last_turn() -> None:
    messages = load_template("instruct").render(Pair(a="2", b="4", conversation=EARLIER, criteria=CRITERIA))
    content = messages[-1].content
    assert content.count(CRITERIA_LEAD) == 2  # in each of the two conversations shown
    assert f"User: Name a prime.{ASKED}\nChatbot A: 2" in content
    assert f"User: Hi{ASKED}" not in content
    # A conversation of one user turn is the single-turn prompt, criteria included.
    single = load_template("instruct").render(Pair(a="2", b="4", conversation=EARLIER[:1], criteria=CRITERIA))
    assert f"[Client Question]\nHi{ASKED}\n" in single[-1].content


def test_swapping_keeps_the_criteria() -> None:
    pair = Pair(a="2", b="4", question="q", criteria=CRITERIA)
    assert pair.swapped().criteria == CRITERIA
    assert pair.swapped().swapped() == pair


def test_criteria_from_text_or_a_file(tmp_path: Path) -> None:
    path = tmp_path / "criteria.md"
    path.write_text("Cite sources.\n", encoding="utf-8")
    assert read_criteria(str(path)) == "Cite sources.\n"
    assert read_criteria("Cite sources.") == "Cite sources."
    warnings: list[str] = []
    assert read_criteria("   ", warnings.append) is None
    assert warnings == ["the criteria text is empty: judging without criteria"]
    with pytest.raises(InputError, match=r"^--criteria rules\.md: no such file"):
        read_criteria("rules.md")


CONFIG = """
[tool.rmjudge]
criteria = "Top-level criteria."
decide = "agreement"
tie_margin = 0.1
samples = 3

[[tool.rmjudge.check]]
files = "notes/*.txt"
criteria = "criteria.txt"
"""


def test_check_takes_criteria_per_glob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in {
        "pyproject.toml": CONFIG, "criteria.txt": "From a file.", "notes/a.txt": "new a", "docs/b.md": "new b",
        "golden/notes/a.txt": "old a", "golden/docs/b.md": "old b",
    }.items():  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    config = load_config(tmp_path / "pyproject.toml")
    assert (config.defaults.decide, config.defaults.tie_margin, config.defaults.samples) == ("agreement", 0.1, 3)
    items = {i.path: i for i in plan_check(["notes/a.txt", "docs/b.md"], reference="golden", source="worktree",
                                           config=config)}  # fmt: skip
    assert items["notes/a.txt"].pair is not None and items["notes/a.txt"].pair.criteria == "From a file."
    assert items["docs/b.md"].pair is not None and items["docs/b.md"].pair.criteria == "Top-level criteria."
    overridden = plan_check(["docs/b.md"], reference="golden", source="worktree", config=config,
                            overrides=Settings(criteria="From the CLI."))  # fmt: skip
    assert overridden[0].pair is not None and overridden[0].pair.criteria == "From the CLI."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("decide = 'vote'\n", r"tool.rmjudge.decide: expected 'agreement' or 'probability', got 'vote'"),
        ("tie_margin = 0.5\n", "tool.rmjudge.tie_margin: expected a number from 0 to below 0.5"),
        ("samples = 0\n", "tool.rmjudge.samples: expected a whole number, 1 or more"),
        ("criteria = ''\n", "tool.rmjudge.criteria: expected a non-empty string"),
        ("[[tool.rmjudge.check]]\nfiles = '*.md'\ndecide = 'agreement'\n", r"check\[0\].decide: unknown key"),
    ],
)
def test_bad_decision_settings(tmp_path: Path, text: str, message: str) -> None:
    body = text if text.startswith("[[") else "[tool.rmjudge]\n" + text
    (tmp_path / "pyproject.toml").write_text(body, encoding="utf-8")
    with pytest.raises(UsageError, match=message):
        load_config(tmp_path / "pyproject.toml")
