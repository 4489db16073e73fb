"""Pairs from JSON Lines: the common pair schemas, recognised without flags, and ``--map`` for the rest.

Each input line becomes a ``Record``: its line number, the object as read, and either a ``Pair``
(with the label, when the data says which text is better) or the error that makes it unusable.
The schema is detected once, from the first JSON object, and then holds for the whole file, so a
line that lacks a field is an error rather than silently read another way.

Recognised schemas (first match wins; ``a``/``b`` are the texts shown as A and B):

=================================  ==========================================  ================
keys                               read as                                     label
=================================  ==========================================  ================
prompt, chosen, rejected           question=prompt, a=chosen, b=rejected       A (a is chosen)
chosen, rejected                   whole transcripts (Anthropic HH) or texts   A (a is chosen)
instruction, output_1, output_2    AlpacaEval: question=instruction            ``preference``
question, answer_a, answer_b       question, a=answer_a, b=answer_b            ``label``
prompt, response_a, response_b     question=prompt                             ``label``
conversation_a, conversation_b     two message lists sharing earlier turns     ``winner``
messages, a, b                     shared messages ending with a user turn     ``label``
=================================  ==========================================  ================

Multi-turn input becomes ``Pair.conversation`` (earlier turns, ending with the last user turn) and
gets RM-R1's multi-turn template: message lists (``[{"role": "user"|"assistant", "content": str}]``),
or a question string written as a transcript, ``"...\\n\\nAssistant: ...\\n\\nHuman: ..."`` (the
first turn with or without ``Human:``), which is how ../shared/data and HH-RLHF write dialogues.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from rmjudge.errors import InputError, RmjudgeError, UsageError
from rmjudge.prompts import Message, Pair
from rmjudge.textio import BOM, decode_utf8, open_input, strip_bom

# What ``--map ROLE=FIELD`` can name: the parts of a pair, its label, and the id used by --resume.
ROLES = ("question", "conversation", "a", "b", "label", "id")
_TEXT_ROLES = ("question", "conversation", "a", "b")


@dataclass(frozen=True)
class Schema:
    """Which input field plays which role. ``chosen``: the field the data marks as the better text."""

    name: str
    fields: Mapping[str, str]  # role -> input field
    chosen: str | None = None

    def describe(self) -> str:
        return ", ".join(f"{role}={name}" for role, name in self.fields.items())

    @property
    def id_field(self) -> str:
        return self.fields.get("id", "id")


SCHEMAS: tuple[Schema, ...] = (
    Schema("prompt/chosen/rejected", {"question": "prompt", "a": "chosen", "b": "rejected"}, chosen="chosen"),
    Schema("chosen/rejected", {"a": "chosen", "b": "rejected"}, chosen="chosen"),
    Schema(
        "instruction/output_1/output_2",
        {"question": "instruction", "a": "output_1", "b": "output_2", "label": "preference"},
    ),
    Schema("question/answer_a/answer_b", {"question": "question", "a": "answer_a", "b": "answer_b", "label": "label"}),
    Schema(
        "prompt/response_a/response_b",
        {"question": "prompt", "a": "response_a", "b": "response_b", "label": "label"},
    ),
    Schema("conversation_a/conversation_b", {"a": "conversation_a", "b": "conversation_b", "label": "winner"}),
    Schema("messages/a/b", {"conversation": "messages", "a": "a", "b": "b", "label": "label"}),
)

_MAP_HELP = "--map question=FIELD --map a=FIELD --map b=FIELD (and label=FIELD, id=FIELD)"


def parse_maps(items: Sequence[str]) -> dict[str, str]:
    """``["question=instruction", "a=output_1"]`` -> ``{"question": "instruction", "a": "output_1"}``.

    An empty field (``--map label=``) means the input has none: no label, no question (the default
    task statement), no id.
    """
    maps: dict[str, str] = {}
    for item in items:
        role, sep, name = item.partition("=")
        role = role.strip()
        if not sep or role not in ROLES:
            raise UsageError(
                f"--map {item!r}: write ROLE=FIELD with ROLE one of {', '.join(ROLES)}, e.g. --map a=output_1"
            )
        if role in maps:
            raise UsageError(f"--map {role}= is given twice: give each role once")
        maps[role] = name.strip()
    return maps


def detect_schema(data: Mapping[str, Any], maps: Mapping[str, str] | None = None) -> Schema | None:
    """The schema for an object with ``data``'s keys, with ``maps`` applied; None when none fits."""
    maps = dict(maps or {})
    base = next(
        (s for s in SCHEMAS if all(name in data for role, name in s.fields.items() if role in _TEXT_ROLES)), None
    )
    if not maps:
        return base
    fields = dict(base.fields) if base else {}
    for role, name in maps.items():
        if name:
            fields[role] = name
        else:
            fields.pop(role, None)
    if "a" not in fields or "b" not in fields:
        return None
    if "question" in maps and "conversation" not in maps and "conversation" in fields and "question" in fields:
        del fields["conversation"]  # the user named where the request is: that replaces the detected one
    if "conversation" in maps and "question" in fields and "question" not in maps:
        del fields["question"]
    # The detected "chosen" stays the label only while it is still one of the two texts.
    chosen = base.chosen if base and base.chosen in (fields["a"], fields["b"]) and "label" not in maps else None
    ordered = {role: fields[role] for role in ROLES if role in fields}
    return Schema("--map" if base is None else f"{base.name} with --map", ordered, chosen)


@dataclass(frozen=True)
class Record:
    """One non-blank input line: a pair to judge, or the error that keeps it from being judged."""

    line: int  # 1-based line number in the input
    data: dict[str, Any] | None  # the JSON object as read (None when the line is not one)
    pair: Pair | None = None
    label: str | None = None  # "A" or "B": the better text according to the data; None: unlabelled or a tie
    error: RmjudgeError | None = None
    id_field: str = "id"
    schema: Schema | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        """What --resume matches output lines by: the id when the line has one, else the line number."""
        return record_key(self.data, self.id_field, self.line)


def record_key(data: Mapping[str, Any] | None, id_field: str, line: int) -> str:
    if data is not None and id_field and data.get(id_field) is not None:
        return "id:" + orjson.dumps(data[id_field], option=orjson.OPT_SORT_KEYS).decode()
    return f"line:{line}"


# -- multi-turn text ---------------------------------------------------------------------------

_TURN_MARK = re.compile(r"(?:^|\n\n)(Human|Assistant):")


def split_transcript(text: str, *, ends_with: str) -> list[Message] | None:
    """``"Q1\\n\\nAssistant: R1\\n\\nHuman: Q2"`` -> user/assistant messages, or None when ``text`` is
    not such a transcript: turns must alternate from a user turn, hold at least one assistant turn
    and end with ``ends_with`` ("user" or "assistant"). Strict, so ordinary text never splits."""
    marks = list(_TURN_MARK.finditer(text))
    if not any(m.group(1) == "Assistant" for m in marks):
        return None
    turns: list[tuple[str, str]] = []
    head = text[: marks[0].start()]
    if head.strip():
        turns.append(("user", head))  # the first human turn, written without "Human:"
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        body = text[mark.end() : following.start() if following else len(text)]
        turns.append(("user" if mark.group(1) == "Human" else "assistant", body))
    roles = [role for role, _ in turns]
    if roles != [("user", "assistant")[i % 2] for i in range(len(roles))] or roles[-1] != ends_with:
        return None
    messages = [Message(role, body.strip()) for role, body in turns]
    # Only a final assistant turn (a response) may be empty: an empty turn elsewhere is no dialogue.
    if any(not m.content for m in messages[: -1 if ends_with == "assistant" else None]):
        return None
    return messages


# -- one line ----------------------------------------------------------------------------------


class _LineError(InputError):
    """A problem with one line (exit code 3), reported in that line's output record."""


class _MissingField(_LineError):
    pass


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _messages(value: Any, name: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise _LineError(
            f"field {name!r} must be a non-empty list of {{role, content}} messages, not {_type_name(value)}"
        )
    messages = []
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("role"), str) or "content" not in item:
            raise _LineError(f"{where} must be an object with a role and a content")
        role, content = item["role"], item["content"]
        if role not in ("user", "assistant"):
            raise _LineError(
                f"{where} has role {role!r}: RM-R1's conversation prompt takes user and assistant turns only"
            )
        if not isinstance(content, str):
            raise _LineError(f"{where}.content must be a string, not {_type_name(content)}")
        messages.append(Message(role, content))
    return messages


def _field(data: Mapping[str, Any], name: str) -> Any:
    if name not in data:
        raise _MissingField(f"missing field {name!r}")
    if data[name] is None:
        raise _MissingField(f"field {name!r} is null")
    return data[name]


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _LineError(f"field {name!r} must be a string, not {_type_name(value)}")
    return value


def _final_turns(a: list[Message], b: list[Message], names: tuple[str, str]) -> tuple[list[Message], str, str]:
    """Two full conversations -> (shared earlier turns, final reply a, final reply b)."""
    for messages, name in ((a, names[0]), (b, names[1])):
        if messages[-1].role != "assistant":
            raise _LineError(f"{name} must end with an assistant turn: the response to judge")
    if a[:-1] != b[:-1]:
        raise _LineError(
            f"{names[0]} and {names[1]} differ before their last turn: rmjudge judges two final replies "
            "to one shared conversation"
        )
    return a[:-1], a[-1].content, b[-1].content


_LABELS = {
    "a": "A", "model_a": "A", "1": "A", "chatbot a": "A",
    "b": "B", "model_b": "B", "2": "B", "chatbot b": "B",
    "tie": None, "tie (bothbad)": None, "1.5": None,
}  # fmt: skip
_LABEL_HELP = "A, B, model_a, model_b, 1, 2 or tie"


def parse_label(value: Any, name: str = "label") -> str | None:
    """"A"/"B" from the usual label spellings: A/B, model_a/model_b (Chatbot Arena, MT-Bench),
    1/2 (AlpacaEval's preference). Ties (tie, 1.5) and null give None: no better text."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _LineError(f"field {name!r} must be a label ({_LABEL_HELP}), not {_type_name(value)}")
    spelled = str(value).strip().lower()
    if isinstance(value, float) and value.is_integer():
        spelled = str(int(value))
    if spelled not in _LABELS:
        raise _LineError(f"field {name!r} is {value!r}: use {_LABEL_HELP}, or ignore it with --map label=")
    return _LABELS[spelled]


def _pair(data: Mapping[str, Any], schema: Schema) -> tuple[Pair, str | None]:
    fields = schema.fields
    a_value, b_value = _field(data, fields["a"]), _field(data, fields["b"])
    conversation: list[Message] = []
    if isinstance(a_value, list) or isinstance(b_value, list):
        # Full conversations (conversation_a/b, UltraFeedback's chosen/rejected message lists).
        conversation, a, b = _final_turns(
            _messages(a_value, fields["a"]), _messages(b_value, fields["b"]), (fields["a"], fields["b"])
        )
    else:
        a, b = _text(a_value, fields["a"]), _text(b_value, fields["b"])
        if "question" not in fields and "conversation" not in fields:
            # Whole dialogues in each text (Anthropic HH): the shared turns are the conversation.
            dialogue_a = split_transcript(a, ends_with="assistant")
            dialogue_b = split_transcript(b, ends_with="assistant")
            if dialogue_a and dialogue_b and dialogue_a[:-1] == dialogue_b[:-1]:
                conversation, a, b = dialogue_a[:-1], dialogue_a[-1].content, dialogue_b[-1].content
    question: str | None = None
    if not conversation:
        if "conversation" in fields:
            conversation = _messages(_field(data, fields["conversation"]), fields["conversation"])
            if conversation[-1].role != "user":
                raise _LineError(f"{fields['conversation']} must end with a user turn: the request both replies answer")
        elif "question" in fields:
            question = _text(_field(data, fields["question"]), fields["question"])
            conversation = split_transcript(question, ends_with="user") or []
    if len(conversation) == 1:
        question, conversation = conversation[0].content, []  # one user turn: the single-turn prompt
    elif conversation:
        question = None
    pair = Pair(a=a, b=b, question=question, conversation=tuple(conversation))

    if schema.chosen is not None:
        label: str | None = "A" if fields["a"] == schema.chosen else "B"
    elif "label" in fields and data.get(fields["label"]) is not None:
        label = parse_label(data[fields["label"]], fields["label"])
    else:
        label = None
    return pair, label


# -- reading -----------------------------------------------------------------------------------


def iter_lines(source: str) -> Iterator[bytes]:
    """The raw lines of file ``source``, or of standard input for ``-``, streamed."""
    if source == "-":
        stdin = _own_reader_of_stdin()
        try:
            yield from stdin
        finally:
            if stdin is not sys.stdin.buffer:
                stdin.close()  # its own reader only: the descriptor stays open
        return
    with open_input(source, "JSONL file") as handle:
        yield from handle


def _own_reader_of_stdin() -> BinaryIO:
    """A reader of its own on standard input's descriptor, where it has one. The judge reads its input
    in a thread (``rmjudge.prefetch``); one still waiting on a pipe inside ``sys.stdin``'s reader at exit
    would hold that reader's lock, and Python aborts (exit 134) when it closes it."""
    try:
        return open(sys.stdin.fileno(), "rb", closefd=False)
    except (AttributeError, OSError, ValueError):  # no descriptor (an in-memory stdin): it never blocks
        return sys.stdin.buffer


def count_records(source: str) -> int | None:
    """How many non-blank lines file ``source`` has (None for standard input: unknown ahead)."""
    if source == "-":
        return None
    try:
        with Path(source).open("rb") as handle:
            return sum(1 for number, line in enumerate(handle) if (strip_bom(line) if number == 0 else line).strip())
    except OSError:
        return None  # read_records reports it, with the right message


def read_records(
    source: str | Iterable[bytes | str],
    *,
    maps: Mapping[str, str] | None = None,
    schema: Schema | None = None,
    name: str | None = None,
) -> Iterator[Record]:
    """Records from JSON Lines: a path, ``-`` for standard input, or an iterable of lines.

    Blank lines are skipped (line numbers still count them), and so is a byte order mark before
    line 1 (see ``rmjudge.textio``). Raises InputError only when no record can be read at all (a
    missing file) or the first object fits no schema; every other problem becomes that line's
    ``Record.error``.
    """
    label = name or ("standard input" if source == "-" else str(source) if isinstance(source, str) else "input")
    lines = iter_lines(source) if isinstance(source, str) else source
    for number, raw in enumerate(lines, start=1):
        if number == 1:  # a byte order mark (Windows editors write one) is not part of line 1's JSON
            raw = raw.removeprefix(BOM) if isinstance(raw, str) else strip_bom(raw)
        if not raw.strip():
            continue
        id_field = schema.id_field if schema else (maps or {}).get("id", "id")
        try:
            # No place in the message: whoever reports a record's error names its line.
            text = raw if isinstance(raw, str) else decode_utf8(raw)
        except InputError as error:
            yield Record(number, None, error=error, id_field=id_field, schema=schema)
            continue
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            problem = InputError(f"not valid JSON: {error.msg} at column {error.colno}")
            yield Record(number, None, error=problem, id_field=id_field, schema=schema)
            continue
        if not isinstance(data, dict):
            problem = InputError(f"a line must be a JSON object, not {_type_name(data)}")
            yield Record(number, None, error=problem, id_field=id_field, schema=schema)
            continue
        if schema is None:
            schema = detect_schema(data, maps)
            if schema is None:
                keys = ", ".join(list(data)[:12])
                raise InputError(
                    f"line {number} of {label} fits no known pair schema (keys: {keys}): "
                    f"name the fields with {_MAP_HELP}"
                )
            id_field = schema.id_field
        try:
            pair, pair_label = _pair(data, schema)
        except _LineError as error:
            missing = isinstance(error, _MissingField)
            hint = f" (reading {schema.describe()}: name other fields with --map)" if missing else ""
            yield Record(number, data, error=InputError(f"{error}{hint}"), id_field=id_field, schema=schema)
            continue
        yield Record(number, data, pair=pair, label=pair_label, id_field=id_field, schema=schema)


def with_error(record: Record, error: RmjudgeError) -> Record:
    """``record`` failed later (e.g. too long for the model's context)."""
    return replace(record, pair=None, error=error)
