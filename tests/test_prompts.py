"""The rendered prompts must be RM-R1's exact bytes: the models were trained on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmjudge.errors import UsageError
from rmjudge.prompts import DEFAULT_QUESTION, Message, Pair, detect_family, load_template

from .conftest import SHARED

REFERENCE = json.loads((SHARED / "reference" / "rm-r1-prompts.json").read_text())
PROMPTS = REFERENCE["prompts"]

# Deliberately awkward content: Jinja syntax, braces, verdict markup, trailing whitespace, unicode.
QUESTION = "Explain {x} and {{ y }} in one line.\n  Keep it {% raw %} short. "
ANSWER_A = "A says <answer>[[B]]</answer> {question} ü\n"
ANSWER_B = "  B's answer\n\nwith blank lines\t"
EARLIER = (
    Message("user", "Hi there"),
    Message("assistant", "Hello! How can I help?"),
    Message("user", "Name a prime {number}."),
)


def flatten(messages: list[Message], chatbot: str) -> str:
    # RM-R1's convert_data_multi: "\n".join(f"{role}: {content}") with User / Chatbot X
    return "\n".join(f"{'User' if m.role == 'user' else chatbot}: {m.content}" for m in messages)


def test_instruct_single_turn_is_byte_identical() -> None:
    messages = load_template("instruct").render(Pair(a=ANSWER_A, b=ANSWER_B, question=QUESTION))
    assert [m.role for m in messages] == ["system", "user"]
    assert messages[0].content == PROMPTS["RM_R1_INSTRUCT_SYSTEM_PROMPT"]
    assert messages[1].content == PROMPTS["RM_R1_SINGLE_TURN_INSTRUCT_USER_PROMPT"].format(
        question=QUESTION, answer_a=ANSWER_A, answer_b=ANSWER_B
    )


def test_instruct_multi_turn_is_byte_identical() -> None:
    pair = Pair(a=ANSWER_A, b=ANSWER_B, conversation=EARLIER)
    messages = load_template("instruct").render(pair)
    assert messages[0].content == PROMPTS["RM_R1_INSTRUCT_SYSTEM_PROMPT"]
    assert messages[1].content == PROMPTS["RM_R1_MULTI_TURN_INSTRUCT_USER_PROMPT"].format(
        conversation_1=flatten([*EARLIER, Message("assistant", ANSWER_A)], "Chatbot A"),
        conversation_2=flatten([*EARLIER, Message("assistant", ANSWER_B)], "Chatbot B"),
    )


def test_reasoning_single_turn_is_byte_identical() -> None:
    messages = load_template("reasoning").render(Pair(a=ANSWER_A, b=ANSWER_B, question=QUESTION))
    assert [m.role for m in messages] == ["user"]  # the DeepSeek-Distilled family takes no system message
    assert messages[0].content == PROMPTS["RM_R1_SINGLE_TURN_REASONING_USER_PROMPT"].format(
        question=QUESTION, answer_a=ANSWER_A, answer_b=ANSWER_B
    )


def test_reasoning_multi_turn_is_byte_identical() -> None:
    messages = load_template("reasoning").render(Pair(a=ANSWER_A, b=ANSWER_B, conversation=EARLIER))
    assert [m.role for m in messages] == ["user"]
    assert messages[0].content == PROMPTS["RM_R1_MULTI_TURN_REASONING_USER_PROMPT"].format(
        conversation_1=flatten([*EARLIER, Message("assistant", ANSWER_A)], "Chatbot A"),
        conversation_2=flatten([*EARLIER, Message("assistant", ANSWER_B)], "Chatbot B"),
    )


def test_a_single_user_turn_conversation_is_a_single_turn_question() -> None:
    template = load_template("instruct")
    as_conversation = template.render(Pair(a="x", b="y", conversation=(Message("user", "Q?"),)))
    assert as_conversation == template.render(Pair(a="x", b="y", question="Q?"))


def test_no_question_uses_the_documented_default() -> None:
    messages = load_template("instruct").render(Pair(a="x", b="y"))
    assert f"[Client Question]\n{DEFAULT_QUESTION}\n\n" in messages[1].content


def test_swapped_pair_swaps_the_responses_only() -> None:
    pair = Pair(a="first", b="second", question="Q")
    template = load_template("reasoning")
    text = template.render(pair.swapped())[0].content
    assert text.index("second") < text.index("first")


def test_template_hash_identifies_the_templates(tmp_path: Path) -> None:
    instruct, reasoning = load_template("instruct"), load_template("reasoning")
    assert instruct.sha256 != reasoning.sha256 and len(instruct.sha256) == 64
    custom = tmp_path / "mine"
    custom.mkdir()
    (custom / "single_turn.j2").write_text("Q: {{ question }}\nA: {{ answer_a }}\nB: {{ answer_b }}\n")
    (custom / "multi_turn.j2").write_text("{% from '_flatten.j2' import flatten %}{{ flatten(conversation_1, 'A') }}\n")
    template = load_template(str(custom))
    assert template.family == "reasoning" and template.id.startswith("custom:")
    assert template.render(Pair(a="1", b="2", question="q"))[0].content == "Q: q\nA: 1\nB: 2"


def test_templates_run_sandboxed(tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "single_turn.j2").write_text("{{ question.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(UsageError, match=r"line 1: not allowed in a sandboxed template: .*unsafe"):
        load_template(str(evil))


def custom_template(directory: Path, single_turn: str, **others: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "single_turn.j2").write_text(single_turn)
    for name, text in others.items():
        (directory / f"{name}.j2").write_text(text)
    return directory


@pytest.mark.parametrize(
    ("single_turn", "line", "problem"),
    [
        ("Q: {{ question }}\n{% if answer_a %}\nA: {{ answer_a }}\n", 3, "syntax error: Unexpected end of template"),
        ("Q: {{ question }}\nA: {{ answer_a }}\nB: {{ answer_c }}\n", 3, "'answer_c' is undefined (single_turn"),
        ("Q: {{ question }}\n\n{{ question.__class__ }}", 3, "not allowed in a sandboxed template: access to"),
        ("Q: {{ question }}\n{% include '../secret.txt' %}", 2, "cannot include '../secret.txt': a template includes"),
        ("{% include '/etc/passwd' %}", 1, "cannot include '/etc/passwd': a template includes only files"),
        ("{% include 'missing.j2' %}", 1, "no template 'missing.j2' in "),
        ("{{ question }}{{ 1 // 0 }}", 1, "ZeroDivisionError: integer division or modulo by zero"),
    ],
)
def test_a_broken_custom_template_is_one_line_naming_its_file_and_line(
    tmp_path: Path, single_turn: str, line: int, problem: str
) -> None:
    (tmp_path / "secret.txt").write_text("not for the prompt")
    directory = custom_template(tmp_path / "mine", single_turn)
    with pytest.raises(UsageError) as raised:
        load_template(str(directory))
    message = str(raised.value)
    assert message.startswith(f"template {directory / 'single_turn.j2'}, line {line}: {problem}"), message
    assert message.endswith(": fix the template") and "\n" not in message


def test_an_include_through_a_link_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("not for the prompt")
    directory = custom_template(tmp_path / "mine", "Q: {{ question }}\n{% include 'notes.j2' %}")
    (directory / "notes.j2").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(UsageError, match=r"single_turn.j2, line 2: cannot include 'notes.j2': a template includes"):
        load_template(str(directory))


def test_includes_inside_the_directory_and_the_shared_partials_work(tmp_path: Path) -> None:
    directory = custom_template(
        tmp_path / "mine", "{% include 'header.j2' %}Q: {{ question }}", header="# Judge: ",
        multi_turn="{% from '_flatten.j2' import flatten %}{{ flatten(conversation_1, 'A') }}",
    )  # fmt: skip
    template = load_template(str(directory))
    assert template.render(Pair(a="1", b="2", question="q"))[0].content == "# Judge: Q: q"


def test_an_error_only_some_pairs_reach_is_reported_when_rendered(tmp_path: Path) -> None:
    directory = custom_template(tmp_path / "mine", "Q: {{ question }}\n{% if answer_a == 'x' %}{{ oops }}{% endif %}")
    template = load_template(str(directory))  # the sample pair does not reach line 2
    with pytest.raises(UsageError, match=rf"^template {directory / 'single_turn.j2'}, line 2: 'oops' is undefined"):
        template.render(Pair(a="x", b="y", question="q"))


def test_a_multi_turn_template_is_tried_too(tmp_path: Path) -> None:
    directory = custom_template(tmp_path / "mine", "{{ question }}", multi_turn="{{ conversation_1[0].nope }}")
    with pytest.raises(UsageError, match=r"multi_turn.j2, line 1: .*has no attribute 'nope'"):
        load_template(str(directory))


def test_cli_show_prompt_with_a_broken_template_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    directory = custom_template(tmp_path / "mine", "Q: {{ question }}\nA: {{ answer_a }}\nB: {{ answer_x }}")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    result = run_cli("compare", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--template", str(directory),
                     "--show-prompt")  # fmt: skip
    assert result.returncode == 2, result.stderr
    where = directory / "single_turn.j2"
    assert result.stderr.startswith(f"rmjudge: template {where}, line 3: 'answer_x' is undefined")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_template_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="instruct"):
        load_template("qwen-magic")


@pytest.mark.parametrize(
    ("metadata", "family"),
    [
        ({"general.name": "RM-R1 DeepSeek Distilled Qwen 7B"}, "reasoning"),
        ({"general.name": "model", "tokenizer.chat_template": "{{'<｜Assistant｜><think>\\n'}}"}, "reasoning"),
        ({"general.name": "RM-R1 Qwen2.5 Instruct 7B", "tokenizer.chat_template": "<|im_start|>"}, "instruct"),
        ({}, "instruct"),
    ],
)
def test_family_comes_from_gguf_metadata(metadata: dict[str, object], family: str) -> None:
    assert detect_family(metadata) == family
