"""``--criteria``: what "better" means, written into the client question in one way; RM-R1's template
bytes untouched (tests/test_prompts.py still checks them byte for byte)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from rmjudge import session
from rmjudge.cache import VerdictCache
from rmjudge.check import plan_check
from rmjudge.config import Settings, load_config
from rmjudge.errors import InputError, UsageError
from rmjudge.judge import Judge
from rmjudge.prompts import CRITERIA_LEAD, DEFAULT_QUESTION, Message, Pair, load_template
from rmjudge.session import JudgeOptions
from rmjudge.textio import read_criteria

from .conftest import SHARED, FakeEngine, invoke_cli

EngineFactory = Callable[..., FakeEngine]

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
temperature = 0.7

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
    defaults = config.defaults
    assert (defaults.decide, defaults.tie_margin, defaults.samples, defaults.temperature) == ("agreement", 0.1, 3, 0.7)
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
        ("temperature = -1\n", "tool.rmjudge.temperature: expected a number, 0 or more"),
        ("criteria = ''\n", "tool.rmjudge.criteria: expected a non-empty string"),
        ("[[tool.rmjudge.check]]\nfiles = '*.md'\ndecide = 'agreement'\n", r"check\[0\].decide: unknown key"),
    ],
)
def test_bad_decision_settings(tmp_path: Path, text: str, message: str) -> None:
    body = text if text.startswith("[[") else "[tool.rmjudge]\n" + text
    (tmp_path / "pyproject.toml").write_text(body, encoding="utf-8")
    with pytest.raises(UsageError, match=message):
        load_config(tmp_path / "pyproject.toml")


# -- through the judge: part of the prompt, so of the cache key -----------------------------------


def test_criteria_reach_the_model_and_key_the_cache(fake_engine_factory: EngineFactory, tmp_path: Path) -> None:
    engine = fake_engine_factory()
    cache = VerdictCache(tmp_path / "v.sqlite3")
    pair = Pair(a="2", b="4", question="Name a prime.")
    plain = Judge(engine, template="instruct", cache=cache)
    plain.judge(pair)
    plain.judge(Pair(a="2", b="4", question="Name a prime.", criteria=CRITERIA))  # other prompts: judged anew
    assert len(engine.generate_calls) == 4 and all(CRITERIA_LEAD in p for p in engine.generate_calls[2:])
    # A judge's criteria apply to the pairs that bring none: the same prompts, from the cache.
    with_criteria = Judge(engine, template="instruct", cache=cache, criteria=CRITERIA)
    assert all(o.cached for o in with_criteria.judge(pair).orders)
    assert with_criteria.prompt_messages(pair)[-1]["content"].count(ASKED) == 1
    own = Pair(a="2", b="4", question="Name a prime.", criteria="Brevity.")  # a pair's own criteria win
    with_criteria.judge(own)
    assert len(engine.generate_calls) == 6 and f"{CRITERIA_LEAD} Brevity." in engine.generate_calls[-1]
    assert CRITERIA not in engine.generate_calls[-1]


def test_compare_show_prompt_and_check_per_glob_on_the_command_line(
    fake_engine_factory: EngineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("2")
    (tmp_path / "b.txt").write_text("4")
    (tmp_path / "criteria.txt").write_text(CRITERIA)
    shown = invoke_cli("compare", "a.txt", "b.txt", "-q", "Name a prime.", "--criteria", "criteria.txt",
                       "--template", "instruct", "--show-prompt")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    orders = orjson.loads(shown.stdout)["orders"]
    assert [m["content"].count(f"Name a prime.{ASKED}") for m in orders["ab"] + orders["ba"]] == [0, 1, 0, 1]

    engine = fake_engine_factory()
    opened: list[JudgeOptions] = []

    def open_judge(options: JudgeOptions, **_: Any) -> Judge:
        opened.append(options)
        return Judge(engine, template="instruct", criteria=options.criteria)

    monkeypatch.setattr(session, "open_judge", open_judge)
    (tmp_path / "pyproject.toml").write_text(CONFIG, encoding="utf-8")
    files = {"notes/a.txt": "new", "golden/notes/a.txt": "old", "docs/b.md": "new", "golden/docs/b.md": "old"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    checked = invoke_cli("check", "notes/a.txt", "docs/b.md", "--reference", "golden", "--worktree", "--json")
    assert checked.returncode in (0, 1), checked.stderr
    assert [ASKED in p for p in engine.generate_calls] == [True, True, False, False]  # criteria.txt, per glob
    # The configuration's decision settings reach the judge (its temperature, for its samples).
    assert [(o.rule, o.margin, o.sample_count, o.sampling.temperature) for o in opened] == [("agreement", 0.1, 3, 0.7)]
    assert [CRITERIA_LEAD + " Top-level criteria." in p for p in engine.generate_calls] == [False, False, True, True]


@pytest.mark.model
def test_real_criteria_are_in_the_formatted_prompt_and_the_cache_key(gemma_path: Path, tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "v.sqlite3")
    judge = Judge(model=str(gemma_path), template="instruct", max_tokens=0, cache=cache)
    pair = Pair(a="Paris.", b="Lyon.", question="What is the capital of France?")
    plain = judge.judge(pair)
    asked = judge.judge(Pair(a="Paris.", b="Lyon.", question="What is the capital of France?", criteria=CRITERIA))
    assert not any(o.cached for o in plain.orders + asked.orders)  # criteria make other prompts
    assert all(o.tokens_in > p.tokens_in for o, p in zip(asked.orders, plain.orders, strict=True))
    prompt = judge.engine.format_prompt(judge.prompt_messages(Pair(a="x", b="y", question="q", criteria=CRITERIA)))
    assert f"q{ASKED}" in prompt.text
    again = Judge(judge.engine, template="instruct", max_tokens=0, cache=cache, criteria=CRITERIA).judge(pair)
    assert all(o.cached for o in again.orders) and [o.probability_a for o in again.orders] == [
        o.probability_a for o in asked.orders
    ]
