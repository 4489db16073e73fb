"""``rmjudge batch --resume``: the proof that an output file is this input's output, judged as this run judges.

--resume changes nothing in the output file until each of its lines is proven to be rmjudge's
output for the same line of this input (same key, same input fields), written with the same
--flat, and, before the first line is added, judged with the same model, template, sampling,
budget and orders as this run. Only then is a torn last line (a write cut short) removed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rmjudge.errors import UsageError
from rmjudge.judge import ORDERS, Judge
from rmjudge.output_lines import KEY, flat_settings, is_own
from rmjudge.records import Record, record_key


@dataclass
class Existing:
    """What --resume found in the output file; every line checked against the input."""

    lines: int = 0
    failed: int = 0
    judged: int = 0  # lines with a judgment: they record how they were judged
    complete: int = 0  # bytes of complete lines; anything after them is a torn line
    torn: bool = False


_SAME_INPUT = "resume with the same input and --map options, or write to another file"


def _refused(problem: str, fix: str = _SAME_INPUT) -> UsageError:
    """A --resume refusal: what does not match, that the file is as it was, what to do."""
    return UsageError(f"--resume: {problem} (nothing was changed): {fix}")


def _source_name(source: str) -> str:
    return "standard input" if source == "-" else source


def _key_text(key: str) -> str:
    kind, _, value = key.partition(":")
    return f"id {value}" if kind == "id" else f"line {value}"


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _first_difference(recorded: Any, expected: Any, name: str = "") -> tuple[str, Any, Any] | None:
    """The first (dotted name, recorded value, expected value) where two JSON values differ."""
    if isinstance(recorded, dict) and isinstance(expected, dict):
        for key in [*expected, *(k for k in recorded if k not in expected)]:
            found = _first_difference(recorded.get(key), expected.get(key), f"{name}.{key}" if name else key)
            if found is not None:
                return found
        return None
    # Compared as JSON text: true is not 1, and 1.0 is not 1.
    return None if orjson.dumps(recorded) == orjson.dumps(expected) else (name, recorded, expected)


def _row_form(row: Any) -> str | None:
    """The form of a line rmjudge wrote: "nested" or "flat"; None for anything else."""
    if not isinstance(row, dict):
        return None
    block = row.get(KEY)
    if isinstance(block, dict) and isinstance(block.get("line"), int):
        return "nested"
    return "flat" if isinstance(row.get(f"{KEY}_line"), int) else None


def _block(row: dict[str, Any], flat: bool) -> dict[str, Any]:
    """A line's judgment fields: the ``rmjudge`` block, or (--flat) the ``rmjudge_*`` fields unprefixed."""
    if not flat:
        block: dict[str, Any] = row[KEY]
        return block
    return {name[len(KEY) + 1 :]: value for name, value in row.items() if is_own(name, True)}


def _check_line(row: dict[str, Any], number: int, record: Record, *, flat: bool, where: tuple[str, str]) -> None:
    """Refuse unless output line ``number`` is the output for ``record``: same key, same input fields."""
    output, source = where
    block = _block(row, flat)
    key = record_key(row, record.id_field, block["line"])
    if key != record.key:
        there = _key_text(record.key)
        raise _refused(f"line {number} of {output} is for {_key_text(key)} but the input has {there} there")
    passed = {name: value for name, value in row.items() if not is_own(name, flat)}
    given = {name: value for name, value in (record.data or {}).items() if not is_own(name, flat)}
    found = _first_difference(passed, given)
    if found is not None:
        differs = f"{found[0]!r} differs"
        raise _refused(f"line {number} of {output} holds other input than line {record.line} of {source}: {differs}")


def line_start(record: Record, flat: bool) -> bytes:
    """The bytes every output line for ``record`` starts with: its input fields, up to rmjudge's first."""
    data = record.data or {}
    passed: dict[str, Any] = {}
    for name, value in data.items():
        if is_own(name, flat):
            break
        passed[name] = value
    head = orjson.dumps(passed)[:-1] + (b"," if passed else b"")
    return head + b'"' + KEY.encode()


def check_existing(
    path: Path, records: Iterator[Record], *, flat: bool, source: str
) -> tuple[Existing, Iterator[Record]]:
    """Match every line of ``path`` to the next input record; refuse (UsageError) at the first that
    is not its output. Reads only: the file is left exactly as it is. Returns what was found, and
    the records still to judge."""
    found = Existing()
    where = (str(path), _source_name(source))
    if not path.exists():
        return found, records
    try:
        handle = path.open("rb")
    except OSError as error:
        raise UsageError(f"--resume: cannot read {path}: {error.strerror}") from None
    not_ours = "is not rmjudge batch output", "give the file an earlier run wrote, or another -o"
    with handle:
        if handle.read(1) not in (b"{", b""):  # not JSON Lines at all (e.g. a model file): read no further
            raise _refused(f"{path} {not_ours[0]}", not_ours[1])
        handle.seek(0)
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                found.torn = True
                record = next(records, None)
                start = line_start(record, flat) if record is not None else b""
                if record is None or raw[: len(start)] != start[: len(raw)]:
                    left = "no line left for it" if record is None else f"not the output for line {record.line}"
                    raise _refused(f"the last line of {path} is incomplete and {left} of {where[1]}")
                return found, itertools.chain([record], records)
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError:
                row = None
            form = _row_form(row)
            if form is None:
                raise _refused(f"line {number} of {path} {not_ours[0]}", not_ours[1])
            if (form == "flat") != flat:
                was = "with" if form == "flat" else "without"
                raise _refused(f"{path} was written {was} --flat", "resume with the options of the run that wrote it")
            record = next(records, None)
            if record is None:
                raise _refused(f"{path} has more lines than {where[1]} (line {number} has no input line left)")
            _check_line(row, number, record, flat=flat, where=where)
            failed = "error" in _block(row, flat)
            found.lines += 1
            found.failed += failed
            found.judged += not failed
            found.complete += len(raw)
    return found, records


def _run_settings(judge: Judge, flat: bool) -> tuple[dict[str, Any], list[str]]:
    """How this run's lines record their judging, and the orders each is judged in."""
    meta = judge.meta()
    if flat:
        return flat_settings(meta), list(ORDERS[judge.order])
    # Each order's samples in turn (one without --samples); a line of an older rmjudge records no decision.
    orders = [order for order in ORDERS[judge.order] for _ in range(judge.samples)]
    return {name: meta[name] for name in ("model", "template", "sampling", "decision")}, orders


def check_settings(path: Path, existing: Existing, judge: Judge, *, flat: bool) -> None:
    """Refuse unless every judged line of ``path`` was judged as ``judge`` judges (what it records)."""
    expected, orders = _run_settings(judge, flat)
    fix = "resume with the --model, --template, --max-tokens, --order and sampling options it was written with"
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number > existing.lines:
                break
            block = _block(orjson.loads(raw), flat)
            if "error" in block:
                continue
            # What the line records (a --flat line of an older rmjudge has no sampling fields).
            recorded = {name: block[field] for name in expected if (field := name.removeprefix(f"{KEY}_")) in block}
            if flat:
                recorded_orders = [order for order in ORDERS["both"] if f"{order}_verdict" in block]
            else:
                recorded_orders = [order.get("order") for order in block.get("orders", [])]
            difference = _first_difference(recorded, {name: expected[name] for name in recorded})
            if difference is None and recorded_orders != orders:
                difference = ("orders", recorded_orders, orders)
            if difference is not None:
                name, was, now = difference
                problem = f"line {number} of {path} was judged with {name} {_shown(was)}, this run with {_shown(now)}"
                raise _refused(problem, fix + ", or write to another file")
