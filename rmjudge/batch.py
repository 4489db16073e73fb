"""``rmjudge batch``: judge every pair of a JSONL file, one output line per input line, in order.

Each output line is the input object with the judgment under ``rmjudge`` (or flattened into
``rmjudge_*`` fields), written whole as soon as it is judged, so a pipe sees it at once and an
interruption (Ctrl-C, SIGTERM) or a write error loses only the pair in flight. ``--resume`` continues
an output file once it is proven to be this input's output, judged as this run judges (see "resume"
below); the output is never the input file, by any name.
"""

from __future__ import annotations

import io
import itertools
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson

from rmjudge.errors import ExitCode, OutputError, RmjudgeError, Terminated, UsageError
from rmjudge.judge import ORDERS, Judge, Judgment, judge_along
from rmjudge.progress import Progress, no_progress
from rmjudge.records import Record, count_records, read_records, record_key, with_error
from rmjudge.verdict import one_line_reason

KEY = "rmjudge"  # the output field that holds the judgment
MAX_WARNINGS = 10  # failed lines named on stderr; the rest are only in the output


class LineFailed(RmjudgeError):
    """--strict: the first failed line stops the batch, with that failure's own exit code."""

    def __init__(self, line: int, error: RmjudgeError) -> None:
        super().__init__(f"line {line}: {error} (--strict stops at the first failed line)")
        self.exit_code = error.exit_code


@dataclass
class BatchSummary:
    """What one run did. ``failed`` counts this run's error lines; ``resumed_failed`` earlier ones."""

    judged: int = 0
    failed: int = 0
    ties: int = 0
    forced: int = 0
    cached: int = 0  # pairs whose every order came from the verdict cache
    labelled: int = 0
    agreed: int = 0
    resumed: int = 0  # lines already in the output file (--resume)
    resumed_failed: int = 0
    torn_line_removed: bool = False
    schema: str | None = None
    engine_seconds: float = 0.0  # the judge's own generation time, summed over orders
    load_seconds: float = 0.0  # model load (not part of the per-pair time)
    seconds: float = 0.0  # wall time of the whole run, load included
    interrupted: bool = False
    terminated: bool = False  # the interruption was SIGTERM (exit 143), not Ctrl-C (130)

    @property
    def written(self) -> int:
        return self.judged + self.failed

    def stop(self, interrupt: KeyboardInterrupt) -> None:
        """Ctrl-C, or SIGTERM raised as ``Terminated``, ended the run (after the lines already written)."""
        self.interrupted = True
        self.terminated = self.terminated or isinstance(interrupt, Terminated)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return ExitCode.TERMINATED if self.terminated else ExitCode.INTERRUPTED
        return ExitCode.NEGATIVE if self.failed or self.resumed_failed else ExitCode.OK

    def line(self) -> str:
        """The one-line summary printed at the end."""
        parts = [f"{self.judged} pairs"]
        if self.cached:
            parts[0] += f" ({self.cached} from the cache)"
        parts.append(f"{self.failed} failed")
        parts.append(f"{self.ties} ties")
        parts.append(f"{self.forced} forced")
        if self.labelled:
            parts.append(f"agrees with the label on {self.agreed}/{self.labelled} ({self.agreed / self.labelled:.0%})")
        load = f" (model load {_duration(self.load_seconds)})" if self.load_seconds else ""
        parts.append(_duration(self.seconds) + load)
        text = ", ".join(parts)
        if self.resumed:
            failed = f", {self.resumed_failed} of them failed" if self.resumed_failed else ""
            text = f"resumed after {self.resumed} lines{failed}; " + text
        return text


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m {rest:02d}s"


# -- output lines ------------------------------------------------------------------------------


def judgment_block(record: Record, judgment: Judgment, *, raw: bool = False) -> dict[str, Any]:
    """What goes under ``rmjudge`` for a judged line: the judgment, the label and whether it agrees.

    ``agrees`` is ``winner == label``: a tie agrees with no label (false); null when unlabelled.
    """
    data = judgment.to_dict(raw=raw)
    return {
        "line": record.line,
        "winner": data.pop("winner"),
        "confidence": data.pop("confidence"),
        "consistent": data.pop("consistent"),
        "probability_a": data.pop("probability_a"),
        "forced": judgment.forced,
        "label": record.label,
        "agrees": None if record.label is None else judgment.winner == record.label,
        "reason": one_line_reason(judgment.orders[0].rationale),
        **data,
    }


def error_block(record: Record, error: RmjudgeError) -> dict[str, Any]:
    return {"error": str(error), "line": record.line, "exit_code": error.exit_code}


_FLAT_SCALARS = ("line", "winner", "confidence", "consistent", "probability_a", "forced", "label", "agrees", "reason")


def _flat_settings(block: Mapping[str, Any]) -> dict[str, Any]:
    """How a line was judged, as --flat records it: the model file, the template, the sampling and budget."""
    model, template = block["model"], block["template"]
    settings = {
        f"{KEY}_model": model["file"],
        f"{KEY}_model_sha256": model.get("sha256"),
        f"{KEY}_template": template["id"],
        f"{KEY}_template_sha256": template.get("sha256"),
    }
    settings.update({f"{KEY}_{name}": value for name, value in block["sampling"].items()})
    settings.update({f"{KEY}_decision_{name}": value for name, value in block.get("decision", {}).items()})
    return settings


def flatten(block: dict[str, Any]) -> dict[str, Any]:
    """``--flat``: the scalar parts of a block as top-level ``rmjudge_*`` fields (for CSV, spreadsheets)."""
    if "error" in block:
        return {f"{KEY}_{name}": value for name, value in block.items()}
    flat = {f"{KEY}_{name}": block[name] for name in _FLAT_SCALARS}
    flat.update({f"{KEY}_{name}": block[name] for name in ("confidence_raw", "calibrated") if name in block})
    orders = block["orders"]
    flat[f"{KEY}_cached"] = all(order["cached"] for order in orders)
    flat[f"{KEY}_seconds"] = sum(order["seconds"] for order in orders)
    flat[f"{KEY}_tokens_out"] = sum(order["tokens_out"] for order in orders)
    for order in orders:
        # With --samples, sample i > 0 of an order is rmjudge_ab_<i>_verdict; sample 0 is rmjudge_ab_verdict.
        name = f"{KEY}_{order['order']}" + (f"_{order['sample']}" if order.get("sample") else "")
        flat[f"{name}_verdict"] = order["verdict"]
        flat[f"{name}_probability_a"] = order["probability_a"]
    flat.update(_flat_settings(block))
    return flat


def output_row(record: Record, block: dict[str, Any], *, flat: bool) -> dict[str, Any]:
    """The input fields, passed through, with the block under ``rmjudge`` (or flattened)."""
    row = dict(record.data or {})
    if flat:
        row.update(flatten(block))
    else:
        row[KEY] = block
    return row


def _is_own(name: str, flat: bool) -> bool:
    """Whether ``name`` is a field rmjudge writes (every other field of a line is passed through)."""
    return name.startswith(f"{KEY}_") if flat else name == KEY


# -- resume ------------------------------------------------------------------------------------
# --resume changes nothing in the output file until each of its lines is proven to be rmjudge's
# output for the same line of this input (same key, same input fields), written with the same
# --flat, and, before the first line is added, judged with the same model, template, sampling,
# budget and orders as this run. Only then is a torn last line (a write cut short) removed.


@dataclass
class _Existing:
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
    return {name[len(KEY) + 1 :]: value for name, value in row.items() if _is_own(name, True)}


def _check_line(row: dict[str, Any], number: int, record: Record, *, flat: bool, where: tuple[str, str]) -> None:
    """Refuse unless output line ``number`` is the output for ``record``: same key, same input fields."""
    output, source = where
    block = _block(row, flat)
    key = record_key(row, record.id_field, block["line"])
    if key != record.key:
        there = _key_text(record.key)
        raise _refused(f"line {number} of {output} is for {_key_text(key)} but the input has {there} there")
    passed = {name: value for name, value in row.items() if not _is_own(name, flat)}
    given = {name: value for name, value in (record.data or {}).items() if not _is_own(name, flat)}
    found = _first_difference(passed, given)
    if found is not None:
        differs = f"{found[0]!r} differs"
        raise _refused(f"line {number} of {output} holds other input than line {record.line} of {source}: {differs}")


def _line_start(record: Record, flat: bool) -> bytes:
    """The bytes every output line for ``record`` starts with: its input fields, up to rmjudge's first."""
    data = record.data or {}
    passed: dict[str, Any] = {}
    for name, value in data.items():
        if _is_own(name, flat):
            break
        passed[name] = value
    head = orjson.dumps(passed)[:-1] + (b"," if passed else b"")
    return head + b'"' + KEY.encode()


def _check_existing(
    path: Path, records: Iterator[Record], *, flat: bool, source: str
) -> tuple[_Existing, Iterator[Record]]:
    """Match every line of ``path`` to the next input record; refuse (UsageError) at the first that
    is not its output. Reads only: the file is left exactly as it is. Returns what was found, and
    the records still to judge."""
    found = _Existing()
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
                start = _line_start(record, flat) if record is not None else b""
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
        return _flat_settings(meta), list(ORDERS[judge.order])
    # Each order's samples in turn (one without --samples); a line of an older rmjudge records no decision.
    orders = [order for order in ORDERS[judge.order] for _ in range(judge.samples)]
    return {name: meta[name] for name in ("model", "template", "sampling", "decision")}, orders


def _check_settings(path: Path, existing: _Existing, judge: Judge, *, flat: bool) -> None:
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


# -- signals and output ------------------------------------------------------------------------


class _Interrupts:
    """Ctrl-C and SIGTERM stop the batch as usual, except while a line is written: then right after,
    so the output never holds a torn line.

    Only a signal whose handler is Python code is deferred (Python's own KeyboardInterrupt for
    Ctrl-C; the command line's, which raises ``Terminated``, for SIGTERM): an ignored signal (nohup)
    stays ignored, and a default SIGTERM still ends a library caller's process.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.writing = False
        self.pending: tuple[int, FrameType | None] | None = None
        self._handlers: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                handler = signal.getsignal(signum)
                if callable(handler):
                    self._handlers[signum] = handler
                    signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.writing:
            self.pending = self.pending or (signum, frame)
        else:
            self._handlers[signum](signum, frame)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.writing = True
        try:
            yield
        finally:
            self.writing = False
            if self.pending is not None:
                (signum, frame), self.pending = self.pending, None
                self._handlers[signum](signum, frame)


def _same_file(source: str, output: Path) -> bool:
    """Whether writing ``output`` would write the input: the same file by any name (a link too)."""
    try:
        if source == "-":
            return sys.stdin is not None and os.path.samestat(os.fstat(sys.stdin.fileno()), output.stat())
        return os.path.samefile(source, output)
    except (OSError, ValueError, AttributeError):  # one of them does not exist, or stdin is no file
        return False


def _check_output_path(source: str, output: Path, *, resume: bool, overwrite: bool) -> None:
    if output.is_dir():
        raise UsageError(f"-o {output} is a directory: give a file to write, e.g. -o {output / 'judged.jsonl'}")
    if _same_file(source, output):
        raise UsageError(f"-o {output} is the input file: write the output to another file")
    if not resume and not overwrite and output.exists() and output.stat().st_size > 0:
        raise UsageError(f"{output} exists: continue it with --resume, or replace it with --overwrite")


class _Sink:
    """Output lines, each written whole with unbuffered writes, so a pipe sees every line as it is
    judged and a failed write leaves nothing half-written in Python's buffers.

    A write error (a full disk, an I/O error) raises OutputError naming the output; the lines written
    before it are kept, and a partial line is removed from a regular file. ``before_first_write``
    runs once, before anything is written or truncated (the --resume checks that need the model).
    """

    def __init__(
        self,
        output: Path | None,
        *,
        resume: bool,
        interrupts: _Interrupts,
        keep_bytes: int | None = None,
        before_first_write: Callable[[], None] | None = None,
    ) -> None:
        self._interrupts = interrupts
        self._name = str(output) if output is not None else "standard output"
        self._keep_bytes = keep_bytes  # --resume: cut the file to this length first (a torn last line)
        self._before_first_write = before_first_write
        self._started = False
        self.lines = 0
        self._own = output is not None
        self._stream: IO[bytes] | None = None  # standard output replaced in-process (no file descriptor)
        if output is None:
            sys.stdout.flush()
            try:
                self._fd = sys.stdout.fileno()
            except (AttributeError, ValueError, io.UnsupportedOperation):
                self._fd, self._stream = -1, sys.stdout.buffer
            return
        # Appending changes nothing until the first write; without --resume the file is replaced.
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if resume else os.O_TRUNC)
        try:
            self._fd = os.open(output, flags, 0o666)
        except OSError as error:
            raise OutputError(f"cannot write {output}: {error.strerror}") from None

    def _start(self) -> None:
        self._started = True
        if self._before_first_write is not None:
            self._before_first_write()
        if self._keep_bytes is not None:
            try:
                os.ftruncate(self._fd, self._keep_bytes)
            except OSError as error:
                raise OutputError(f"cannot remove the torn last line of {self._name}: {error.strerror}") from None

    def write(self, row: dict[str, Any]) -> None:
        if not self._started:
            self._start()
        data = orjson.dumps(row) + b"\n"
        with self._interrupts.deferred():
            self._write_all(data)
        self.lines += 1

    def _write_all(self, data: bytes) -> None:
        size = None
        if self._own and stat.S_ISREG((status := os.fstat(self._fd)).st_mode):
            size = status.st_size
        try:
            if self._stream is not None:
                self._stream.write(data)
                self._stream.flush()
            else:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
        except OSError as error:
            if isinstance(error, BrokenPipeError) and not self._own:
                raise  # the reader of standard output is gone (head): the command line ends quietly
            if size is not None:
                with suppress(OSError):
                    os.ftruncate(self._fd, size)  # no partial line: --resume continues cleanly
            written = f"the {self.lines} lines before it are kept" if self.lines else "nothing was written"
            raise OutputError(f"cannot write {self._name}: {error.strerror} ({written})") from None

    def close(self) -> None:
        if self._own:
            os.close(self._fd)
            self._own = False


# -- the batch ---------------------------------------------------------------------------------


def _noting_schema(records: Iterator[Record], summary: BatchSummary) -> Iterator[Record]:
    for record in records:
        if summary.schema is None and record.schema is not None:
            summary.schema = record.schema.name
        yield record


def run_batch(
    source: str,
    output: str | None,
    judge_factory: Callable[[], Judge],
    *,
    maps: Mapping[str, str] | None = None,
    flat: bool = False,
    raw: bool = False,
    strict: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Judge every pair in ``source`` (a path or ``-``) into ``output`` (a path, or None: stdout).

    ``judge_factory`` is called once, when the first pair needs judging (a fully resumed run loads
    no model). Returns what was done; Ctrl-C (or SIGTERM raising ``Terminated``) ends the run early
    with ``interrupted`` set, after the lines already judged are written. Raises RmjudgeError for
    problems with the run as a whole (OutputError when the output cannot be written), and
    ``LineFailed`` for the first failed line with ``strict``.
    """
    started = time.perf_counter()
    summary = BatchSummary()
    maps = dict(maps or {})
    output_path = Path(output) if output is not None else None
    if source == "-" and sys.stdin is not None and sys.stdin.isatty():
        raise UsageError("rmjudge batch reads JSON Lines from a file or a pipe: name a file (rmjudge batch in.jsonl)")
    if resume and output_path is None:
        raise UsageError("--resume needs -o FILE: the output file to continue")
    if output_path is not None:
        _check_output_path(source, output_path, resume=resume, overwrite=overwrite)
    records = _noting_schema(read_records(source, maps=maps), summary)
    existing = _Existing()
    if resume and output_path is not None:
        existing, records = _check_existing(output_path, records, flat=flat, source=source)
        summary.resumed, summary.resumed_failed = existing.lines, existing.failed
    total = count_records(source)
    remaining = None if total is None else max(total - existing.lines, 0)
    warnings = 0
    judge: Judge | None = None

    bar = (progress or no_progress)(remaining, description="starting", ties=0, forced=0, failed=0)
    with _Interrupts() as interrupts, bar as update:

        def loaded_judge() -> Judge:
            nonlocal judge
            if judge is None:
                update(description="loading")
                loading = time.perf_counter()
                judge = judge_factory()
                summary.load_seconds = time.perf_counter() - loading
                update(description="judging")
            return judge

        def before_first_write() -> None:
            if existing.judged and output_path is not None:
                _check_settings(output_path, existing, loaded_judge(), flat=flat)
            summary.torn_line_removed = existing.torn

        sink = _Sink(
            output_path, resume=resume, interrupts=interrupts, before_first_write=before_first_write,
            keep_bytes=existing.complete if existing.torn else None,
        )  # fmt: skip
        try:
            # Many pairs are judged at once; each line is written as soon as it and all before it are done.
            for record, outcome in judge_along(records, lambda record: record.pair, loaded_judge):
                if isinstance(outcome, Judgment):
                    block = judgment_block(record, outcome, raw=raw)
                    sink.write(output_row(record, block, flat=flat))
                    summary.judged += 1
                    summary.ties += outcome.winner == "tie"
                    summary.forced += outcome.forced
                    summary.cached += all(order.cached for order in outcome.orders)
                    summary.engine_seconds += sum(order.seconds for order in outcome.orders)
                    if record.label is not None:
                        summary.labelled += 1
                        summary.agreed += outcome.winner == record.label
                    update(advance=1, ties=summary.ties, forced=summary.forced)
                    continue
                if outcome is not None:  # the pair's own error (too long for the context)
                    record = with_error(record, outcome)
                assert record.error is not None
                if strict:
                    raise LineFailed(record.line, record.error)
                sink.write(output_row(record, error_block(record, record.error), flat=flat))
                summary.failed += 1
                update(advance=1, failed=summary.failed)
                if warn is not None and warnings < MAX_WARNINGS:
                    warnings += 1
                    more = " (more failed lines are named only in the output)" if warnings == MAX_WARNINGS else ""
                    warn(f"line {record.line}: {record.error}{more}")
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM as Terminated
            summary.stop(stop)
        finally:
            try:
                sink.close()
            except KeyboardInterrupt as stop:
                # A signal sent to another thread reaches the main thread only at its next bytecode:
                # when the loop had already ended (a pipe closed with the signal), that is here.
                summary.stop(stop)
            summary.seconds = time.perf_counter() - started
    return summary
