"""Reading pairs from JSONL: every recognised schema, --map, multi-turn forms, and each kind of broken line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmjudge.errors import ContextTooLongError, ExitCode, InputError, UsageError
from rmjudge.prompts import DEFAULT_QUESTION, Message, Pair, load_template
from rmjudge.records import (
    Record,
    detect_schema,
    parse_label,
    parse_maps,
    read_records,
    split_transcript,
    with_error,
)
from tests.conftest import SHARED


def records(*objects: Any, maps: dict[str, str] | None = None) -> list[Record]:
    lines = [obj if isinstance(obj, (str, bytes)) else json.dumps(obj) for obj in objects]
    return list(read_records(lines, maps=maps))


def only(*objects: Any, maps: dict[str, str] | None = None) -> Record:
    (record,) = records(*objects, maps=maps)
    assert record.error is None, record.error
    return record


# -- the recognised schemas --------------------------------------------------------------------


def test_prompt_chosen_rejected_maps_chosen_to_a_with_label_a() -> None:
    record = only({"id": "x1", "prompt": "Q?", "chosen": "good", "rejected": "bad", "subset": "s"})
    assert record.pair == Pair(a="good", b="bad", question="Q?")
    assert record.label == "A"
    assert record.schema is not None and record.schema.name == "prompt/chosen/rejected"
    assert record.key == 'id:"x1"'


def test_alpacaeval_instruction_outputs_with_preference_label() -> None:
    first, second, tie = records(
        {"instruction": "Say hi", "output_1": "hi", "output_2": "hello", "preference": 2},
        {"instruction": "Say hi", "output_1": "hi", "output_2": "hello", "preference": 1.0},
        {"instruction": "Say hi", "output_1": "hi", "output_2": "hello", "preference": 1.5},
    )
    assert first.pair == Pair(a="hi", b="hello", question="Say hi")
    assert (first.label, second.label, tie.label) == ("B", "A", None)
    assert first.schema is not None and first.schema.name == "instruction/output_1/output_2"


def test_question_answer_a_answer_b() -> None:
    record = only({"question": "2+2?", "answer_a": "4", "answer_b": "5", "label": "a"})
    assert record.pair == Pair(a="4", b="5", question="2+2?")
    assert record.label == "A"


def test_prompt_response_a_response_b_unlabelled() -> None:
    record = only({"prompt": "2+2?", "response_a": "4", "response_b": "5"})
    assert record.pair == Pair(a="4", b="5", question="2+2?")
    assert record.label is None


def test_conversation_a_b_share_earlier_turns_and_become_a_conversation() -> None:
    earlier = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell a joke"},
    ]
    record = only(
        {
            "question_id": 7,
            "conversation_a": [*earlier, {"role": "assistant", "content": "joke A"}],
            "conversation_b": [*earlier, {"role": "assistant", "content": "joke B"}],
            "winner": "model_b",
        }
    )
    assert record.pair is not None
    assert record.pair.conversation == (
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
        Message("user", "Tell a joke"),
    )
    assert (record.pair.a, record.pair.b, record.pair.question) == ("joke A", "joke B", None)
    assert record.pair.is_multi_turn
    assert record.label == "B"


def test_conversations_that_differ_before_the_last_turn_are_an_error() -> None:
    (record,) = records(
        {
            "conversation_a": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}],
            "conversation_b": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "B1"}],
        }
    )
    assert isinstance(record.error, InputError)
    assert "differ before their last turn" in str(record.error)


def test_messages_plus_a_b() -> None:
    messages = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "R1"},
        {"role": "user", "content": "Q2"},
    ]
    record = only({"messages": messages, "a": "first", "b": "second", "label": "B"})
    assert record.pair == Pair(
        a="first", b="second", conversation=(Message("user", "Q1"), Message("assistant", "R1"), Message("user", "Q2"))
    )
    assert record.label == "B"


def test_messages_with_one_user_turn_is_single_turn() -> None:
    record = only({"messages": [{"role": "user", "content": "Q"}], "a": "x", "b": "y"})
    assert record.pair == Pair(a="x", b="y", question="Q")
    assert not record.pair.is_multi_turn


def test_messages_must_end_with_a_user_turn() -> None:
    (record,) = records(
        {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "R"}], "a": "x", "b": "y"}
    )
    assert record.error is not None and "must end with a user turn" in str(record.error)


def test_chosen_rejected_as_message_lists_ultrafeedback_style() -> None:
    record = only(
        {
            "prompt": "Q",
            "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}],
        }
    )
    assert record.pair == Pair(a="good", b="bad", question="Q")
    assert record.label == "A"


def test_chosen_rejected_transcripts_hh_rlhf_style() -> None:
    shared = "\n\nHuman: How do I boil an egg?\n\nAssistant: In water.\n\nHuman: For how long?"
    record = only(
        {"chosen": shared + "\n\nAssistant: About 8 minutes.", "rejected": shared + "\n\nAssistant: No idea."}
    )
    assert record.pair is not None
    assert record.pair.conversation == (
        Message("user", "How do I boil an egg?"),
        Message("assistant", "In water."),
        Message("user", "For how long?"),
    )
    assert (record.pair.a, record.pair.b) == ("About 8 minutes.", "No idea.")
    assert record.label == "A"


def test_chosen_rejected_plain_texts_get_the_default_question() -> None:
    record = only({"chosen": "text one", "rejected": "text two"})
    assert record.pair == Pair(a="text one", b="text two")
    template = load_template("instruct")
    assert DEFAULT_QUESTION in template.render(record.pair)[-1].content


# -- Human:/Assistant: prompts (../shared/data) ----------------------------------------------


def test_human_assistant_prompt_splits_into_a_conversation() -> None:
    prompt = "My daughter got in a fight.\n\nAssistant:  I'm sorry to hear that.\n\nHuman:  She's only nine."
    record = only({"prompt": prompt, "chosen": "Talk to her.", "rejected": "Ground her."})
    assert record.pair is not None
    assert record.pair.conversation == (
        Message("user", "My daughter got in a fight."),
        Message("assistant", "I'm sorry to hear that."),
        Message("user", "She's only nine."),
    )
    assert record.pair.question is None
    rendered = load_template("instruct").render(record.pair)[-1].content
    assert "[The Start of the Conversation between Chatbot A and the Client]" in rendered
    assert "Chatbot A: I'm sorry to hear that.\nUser: She's only nine.\nChatbot A: Talk to her." in rendered


def test_leading_human_prefix_is_accepted() -> None:
    messages = split_transcript("Human: Q1\n\nAssistant: R1\n\nHuman: Q2", ends_with="user")
    assert messages == [Message("user", "Q1"), Message("assistant", "R1"), Message("user", "Q2")]


@pytest.mark.parametrize(
    "text",
    [
        "Explain what 'Assistant: hello' means in a log file.",  # no turn boundary
        "Q1\n\nHuman: Q2\n\nAssistant: R",  # two user turns in a row, ends with an assistant
        "Continue the given dialogue:\n\n\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye\n\nAssistant:",
        "Q1\n\nAssistant:\n\nHuman: Q2",  # an empty assistant turn in the middle
        "Just a question?",
    ],
)
def test_text_that_is_no_user_final_transcript_stays_whole(text: str) -> None:
    assert split_transcript(text, ends_with="user") is None


@pytest.mark.skipif(not (SHARED / "data" / "hhh_alignment.jsonl").exists(), reason="../shared/data missing")
def test_shared_data_multi_turn_prompts_become_conversations() -> None:
    found = list(read_records(str(SHARED / "data" / "hhh_alignment.jsonl")))
    assert all(r.error is None for r in found)
    multi = [r for r in found if r.pair is not None and r.pair.is_multi_turn]
    raw = [json.loads(line) for line in (SHARED / "data" / "hhh_alignment.jsonl").read_text().splitlines()]
    expected = [i + 1 for i, row in enumerate(raw) if "\n\nAssistant:" in row["prompt"]]
    assert [r.line for r in multi] == expected and len(expected) > 10
    for record in multi:
        assert record.pair is not None
        conversation = record.pair.conversation
        assert conversation[0].role == "user" and conversation[-1].role == "user"
        assert [m.role for m in conversation] == ["user", "assistant"] * (len(conversation) // 2) + ["user"]
        assert record.pair.a == record.data["chosen"] and record.label == "A"  # type: ignore[index]


# -- --map -------------------------------------------------------------------------------------


def test_parse_maps() -> None:
    assert parse_maps(["question=instruction", "a=output_1", "b = output_2", "label="]) == {
        "question": "instruction", "a": "output_1", "b": "output_2", "label": "",
    }  # fmt: skip
    for bad in (["nonsense=x"], ["question"], ["a=x", "a=y"]):
        with pytest.raises(UsageError) as raised:
            parse_maps(bad)
        assert raised.value.exit_code == ExitCode.USAGE


def test_map_names_every_field_of_an_unknown_schema() -> None:
    maps = parse_maps(["question=task", "a=left", "b=right", "label=better", "id=uid"])
    record = only({"uid": 5, "task": "T", "left": "L", "right": "R", "better": "B"}, maps=maps)
    assert record.pair == Pair(a="L", b="R", question="T")
    assert record.label == "B"
    assert record.key == "id:5"


def test_map_overrides_part_of_a_detected_schema() -> None:
    data = {"prompt": "P", "instruction": "I", "chosen": "c", "rejected": "r"}
    record = only(data, maps=parse_maps(["question=instruction"]))
    assert record.pair == Pair(a="c", b="r", question="I")
    assert record.label == "A"


def test_map_swapping_chosen_into_b_moves_the_label() -> None:
    record = only({"prompt": "P", "chosen": "c", "rejected": "r"}, maps=parse_maps(["a=rejected", "b=chosen"]))
    assert record.pair == Pair(a="r", b="c", question="P")
    assert record.label == "B"


def test_empty_map_ignores_a_label_and_a_question() -> None:
    data = {"question": "Q", "answer_a": "x", "answer_b": "y", "label": 0}
    (unmapped,) = records(data)
    assert unmapped.error is not None and "'label'" in str(unmapped.error)
    record = only(data, maps=parse_maps(["label=", "question="]))
    assert record.pair == Pair(a="x", b="y")
    assert record.label is None


def test_no_schema_is_an_input_error_naming_the_keys() -> None:
    with pytest.raises(InputError) as raised:
        records({"foo": 1, "bar": 2})
    assert "foo, bar" in str(raised.value) and "--map" in str(raised.value)
    assert detect_schema({"foo": 1}) is None


def test_schema_is_fixed_by_the_first_object() -> None:
    first, second = records(
        {"prompt": "P", "chosen": "c", "rejected": "r"}, {"prompt": "P", "response_a": "x", "response_b": "y"}
    )
    assert first.error is None
    assert isinstance(second.error, InputError)
    assert "missing field 'chosen'" in str(second.error) and "--map" in str(second.error)


# -- broken lines --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "P", "chosen": "c", ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object, not a list"),
        ('"just a string"', "must be a JSON object, not str"),
        (b'{"prompt": "P", "chosen": "caf\xe9", "rejected": "r"}', "not UTF-8"),
        ('{"prompt": "P", "chosen": "c"}', "missing field 'rejected'"),
        ('{"prompt": "P", "chosen": null, "rejected": "r"}', "field 'chosen' is null"),
        ('{"prompt": "P", "chosen": 42, "rejected": "r"}', "field 'chosen' must be a string, not a number"),
        ('{"prompt": ["P"], "chosen": "c", "rejected": "r"}', "field 'prompt' must be a string, not a list"),
        (
            '{"prompt": "P", "chosen": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "c"}],'
            ' "rejected": [{"role": "assistant", "content": "r"}]}',
            "role 'system'",
        ),
        (
            '{"prompt": "P", "chosen": [{"role": "assistant", "content": 3}], "rejected": "r"}',
            "content must be a string",
        ),
    ],
)
def test_broken_line_becomes_an_error_record(line: str | bytes, message: str) -> None:
    good = json.dumps({"id": "ok", "prompt": "P", "chosen": "c", "rejected": "r"})
    first, broken, last = records(good, line, good)
    assert first.error is None and last.error is None
    assert broken.line == 2 and broken.pair is None
    assert isinstance(broken.error, InputError) and broken.error.exit_code == ExitCode.INPUT
    assert message in str(broken.error)


def test_an_unknown_label_is_an_error() -> None:
    (record,) = records({"question": "Q", "answer_a": "x", "answer_b": "y", "label": "maybe"})
    assert record.error is not None and "'maybe'" in str(record.error) and "--map label=" in str(record.error)
    assert parse_label("Model_A") == "A" and parse_label(2) == "B" and parse_label("tie (bothbad)") is None


def test_error_record_keeps_the_parsed_input_and_can_be_marked_later() -> None:
    (record,) = records({"id": 9, "prompt": "P", "chosen": 1, "rejected": "r"})
    assert record.data == {"id": 9, "prompt": "P", "chosen": 1, "rejected": "r"}
    good = only({"id": 9, "prompt": "P", "chosen": "c", "rejected": "r"})
    failed = with_error(good, ContextTooLongError("too long", needed=10, available=5))
    assert failed.pair is None and failed.error is not None and failed.error.exit_code == ExitCode.CONTEXT
    assert failed.key == good.key


def test_blank_lines_are_skipped_and_line_numbers_count_them(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    row = json.dumps({"prompt": "P", "chosen": "c", "rejected": "r"})
    path.write_text(f"\n{row}\n   \n{row}\n")
    found = list(read_records(str(path)))
    assert [r.line for r in found] == [2, 4]
    assert [r.key for r in found] == ["line:2", "line:4"]


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        list(read_records(str(tmp_path / "nope.jsonl")))
    assert "no such file" in str(raised.value)


# -- properties: any bytes in, one record per non-blank line out ----------------------------------

_BOM = "\ufeff".encode()
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_FIELDS = st.sampled_from(["a", "b", "id", "label", "question", "prompt", "chosen", "rejected", "x"])
_OBJECT_LINES = st.dictionaries(_FIELDS | st.text(max_size=6), _VALUES, max_size=6).map(
    lambda obj: json.dumps(obj).encode()  # NaN and Infinity too: JSON that orjson refuses
)
_LINES = st.lists(
    st.binary(max_size=40).map(lambda raw: raw.replace(b"\n", b""))  # any bytes: broken JSON, not UTF-8
    | st.sampled_from([b"", b"  ", b"\t\r", b"[1, 2]", b'"text"', b"null", b"{", _BOM])
    | _OBJECT_LINES,
    max_size=12,
)


def _non_blank_line_numbers(blob: bytes) -> list[int]:
    lines = blob.split(b"\n")
    lines[0] = lines[0].removeprefix(_BOM)
    return [number for number, line in enumerate(lines, start=1) if line.strip()]


def _check_record(record: Record) -> None:
    assert (record.pair is None) != (record.error is None)  # a pair to judge, or why not: never both
    if record.error is not None:
        assert isinstance(record.error, InputError) and record.error.exit_code == ExitCode.INPUT
        assert str(record.error) and "\n" not in str(record.error)  # one line, whatever the input held


@settings(max_examples=200, deadline=None)
@given(lines=_LINES, bom=st.booleans(), final_newline=st.booleans())
def test_any_bytes_give_one_record_per_non_blank_line(lines: list[bytes], bom: bool, final_newline: bool) -> None:
    blob = (_BOM if bom else b"") + b"\n".join(lines) + (b"\n" if final_newline else b"")
    # With a and b mapped, every object fits a schema: no line stops the reading.
    found = list(read_records(io.BytesIO(blob), maps={"a": "a", "b": "b"}))
    assert [record.line for record in found] == _non_blank_line_numbers(blob)
    for record in found:
        _check_record(record)


@settings(max_examples=200, deadline=None)
@given(lines=_LINES)
def test_without_a_map_only_a_first_object_of_no_schema_stops_the_reading(lines: list[bytes]) -> None:
    blob = b"\n".join(lines)
    found: list[Record] = []
    try:
        for record in read_records(io.BytesIO(blob)):
            found.append(record)
    except InputError as error:
        # It names the line of the first object, after which nothing was read.
        stopped = _non_blank_line_numbers(blob)[len(found)]
        assert str(error).startswith(f"line {stopped} of input fits no known pair schema")
        assert all(record.data is None for record in found)
    else:
        assert [record.line for record in found] == _non_blank_line_numbers(blob)
    for record in found:
        _check_record(record)


_TEXTS = st.text(max_size=60)


@settings(max_examples=200, deadline=None)
@given(
    pair_id=st.one_of(st.text(max_size=10), st.integers(-(2**63), 2**63 - 1)),  # orjson reads wider ones as floats
    question=_TEXTS.filter(lambda text: "Assistant:" not in text),  # a transcript becomes a conversation
    a=_TEXTS,
    b=_TEXTS,
    label=st.sampled_from(["A", "B", "a", "model_b", 1, 2, None]),
    ascii_only=st.booleans(),
    ending=st.sampled_from([b"\n", b"\r\n", b""]),
    bom=st.booleans(),
)
def test_valid_pairs_round_trip(
    pair_id: str | int, question: str, a: str, b: str, label: str | int | None, ascii_only: bool, ending: bytes,
    bom: bool,
) -> None:  # fmt: skip
    data = {"id": pair_id, "question": question, "answer_a": a, "answer_b": b, "label": label}
    line = (_BOM if bom else b"") + json.dumps(data, ensure_ascii=ascii_only).encode() + ending
    (record,) = read_records(io.BytesIO(line))
    assert record.error is None, record.error
    assert record.data == data and record.line == 1
    assert record.pair == Pair(a=a, b=b, question=question)
    assert record.label == parse_label(label)
    assert record.key == "id:" + json.dumps(pair_id, ensure_ascii=False, separators=(",", ":"))
