"""``rmjudge batch``: judge every pair of a JSONL file, one output line per input line, in order.

Each output line is the input object with the judgment under ``rmjudge`` (or flattened into
``rmjudge_*`` fields), written and flushed as soon as it is judged, so a pipe sees it at once and an
interruption loses only the pair being judged. ``--resume`` continues an output file: the lines
already there are matched to the input (by id, else line number) and the rest is appended.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson

from rmjudge.errors import ExitCode, RmjudgeError, UsageError
from rmjudge.judge import Judge, Judgment, judge_along
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

    @property
    def written(self) -> int:
        return self.judged + self.failed

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return ExitCode.INTERRUPTED
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


def flatten(block: dict[str, Any]) -> dict[str, Any]:
    """``--flat``: the scalar parts of a block as top-level ``rmjudge_*`` fields (for CSV, spreadsheets)."""
    if "error" in block:
        return {f"{KEY}_{name}": value for name, value in block.items()}
    flat = {f"{KEY}_{name}": block[name] for name in _FLAT_SCALARS}
    orders = block["orders"]
    flat[f"{KEY}_cached"] = all(order["cached"] for order in orders)
    flat[f"{KEY}_seconds"] = sum(order["seconds"] for order in orders)
    flat[f"{KEY}_tokens_out"] = sum(order["tokens_out"] for order in orders)
    for order in orders:
        flat[f"{KEY}_{order['order']}_verdict"] = order["verdict"]
        flat[f"{KEY}_{order['order']}_probability_a"] = order["probability_a"]
    flat[f"{KEY}_model"] = block["model"]["file"]
    flat[f"{KEY}_template"] = block["template"]["id"]
    return flat


def output_row(record: Record, block: dict[str, Any], *, flat: bool) -> dict[str, Any]:
    """The input fields, passed through, with the block under ``rmjudge`` (or flattened)."""
    row = dict(record.data or {})
    if flat:
        row.update(flatten(block))
    else:
        row[KEY] = block
    return row


def _line_of(row: dict[str, Any]) -> int | None:
    block = row.get(KEY)
    line = block.get("line") if isinstance(block, dict) else row.get(f"{KEY}_line")
    return line if isinstance(line, int) else None


def _failed(row: dict[str, Any]) -> bool:
    block = row.get(KEY)
    return ("error" in block) if isinstance(block, dict) else f"{KEY}_error" in row


# -- resume ------------------------------------------------------------------------------------


@dataclass
class _Done:
    keys: list[str]
    failed: int
    torn: bool


def _read_done(path: Path, id_field: str) -> _Done:
    """The keys of the complete lines in ``path``; a torn last line (no newline) is cut off the file."""
    if not path.exists():
        return _Done([], 0, False)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"--resume: cannot read {path}: {error.strerror}") from None
    complete = data.rfind(b"\n") + 1
    torn = complete < len(data)
    if torn:
        # Interrupted in the middle of a write: drop the partial line, it is judged again.
        with path.open("r+b") as handle:
            handle.truncate(complete)
    keys: list[str] = []
    failed = 0
    for number, raw in enumerate(data[:complete].splitlines(), start=1):
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError:
            row = None
        line = _line_of(row) if isinstance(row, dict) else None
        if row is None or line is None:
            raise UsageError(
                f"--resume: line {number} of {path} is not rmjudge batch output: give the file an earlier "
                "run wrote, or use another -o"
            )
        keys.append(record_key(row, id_field, line))
        failed += _failed(row)
    return _Done(keys, failed, torn)


def _key_text(key: str) -> str:
    kind, _, value = key.partition(":")
    return f"id {value}" if kind == "id" else f"line {value}"


# -- signals and output ------------------------------------------------------------------------


class _Interrupts:
    """Ctrl-C raises KeyboardInterrupt as usual, except while a line is written: then right after,
    so the output never holds a torn line."""

    def __init__(self) -> None:
        self.writing = False
        self.pending = False
        self._installed = False

    def __enter__(self) -> _Interrupts:
        # Only where Python's own handler is in place: an ignored SIGINT (nohup) stays ignored.
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.writing:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.writing = True
        try:
            yield
        finally:
            self.writing = False
            if self.pending:
                self.pending = False
                raise KeyboardInterrupt


class _Sink:
    """Output lines, each written whole and flushed at once (pipes see every line as it is judged)."""

    def __init__(self, output: Path | None, *, append: bool, interrupts: _Interrupts) -> None:
        self._interrupts = interrupts
        self._own = output is not None
        if output is None:
            self._stream: IO[bytes] = sys.stdout.buffer
        else:
            try:
                self._stream = output.open("ab" if append else "wb")
            except OSError as error:
                raise UsageError(f"cannot write {output}: {error.strerror}") from None

    def write(self, row: dict[str, Any]) -> None:
        data = orjson.dumps(row) + b"\n"
        with self._interrupts.deferred():
            self._stream.write(data)
            self._stream.flush()

    def close(self) -> None:
        if self._own:
            self._stream.close()


@contextmanager
def _progress_bar(total: int | None, enabled: bool) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr; yields ``update(advance=0, **fields)``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from rmjudge.render import stderr

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            if speed is None:
                return Text("")
            per_minute = speed * 60
            shown = f"{per_minute:.1f}" if per_minute < 100 else f"{per_minute:.0f}"
            return Text(f"{shown}/min", style="progress.data.speed")

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("pairs"),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("· ties {task.fields[ties]} · forced {task.fields[forced]} · failed {task.fields[failed]}"),
        console=stderr,
        transient=True,
        disable=not (enabled and stderr.is_terminal),
    ) as progress:
        task = progress.add_task("starting", total=total, ties=0, forced=0, failed=0)

        def update(advance: int = 0, **fields: Any) -> None:
            progress.update(task, advance=advance, **fields)

        yield update


# -- the batch ---------------------------------------------------------------------------------


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
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Judge every pair in ``source`` (a path or ``-``) into ``output`` (a path, or None: stdout).

    ``judge_factory`` is called once, when the first pair needs judging (a fully resumed run loads
    no model). Returns what was done; Ctrl-C ends the run early with ``interrupted`` set, after the
    lines already judged are written. Raises RmjudgeError for problems with the run as a whole,
    and ``LineFailed`` for the first failed line with ``strict``.
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
        if source != "-" and Path(source).resolve() == output_path.resolve():
            raise UsageError(f"-o {output} is the input file: write the output to another file")
        if not resume and not overwrite and output_path.exists() and output_path.stat().st_size > 0:
            raise UsageError(f"{output} exists: continue it with --resume, or replace it with --overwrite")
    done = _Done([], 0, False)
    if resume and output_path is not None:
        done = _read_done(output_path, maps.get("id", "id"))
        summary.torn_line_removed = done.torn
        summary.resumed_failed = done.failed
    total = count_records(source)
    remaining = None if total is None else max(total - len(done.keys), 0)
    warnings = 0

    def unresumed() -> Iterator[Record]:
        """The input records after those the output already holds (--resume), checked against them."""
        for index, record in enumerate(read_records(source, maps=maps)):
            if summary.schema is None and record.schema is not None:
                summary.schema = record.schema.name
            if index < len(done.keys):
                if record.key != done.keys[index]:
                    raise UsageError(
                        f"--resume: line {index + 1} of {output} is for {_key_text(done.keys[index])} but the "
                        f"input has {_key_text(record.key)} there: resume with the same input and --map options"
                    )
                summary.resumed += 1
                continue
            yield record

    def load() -> Judge:
        update(description="loading")
        loading = time.perf_counter()
        judge = judge_factory()
        summary.load_seconds = time.perf_counter() - loading
        update(description="judging")
        return judge

    with _Interrupts() as interrupts, _progress_bar(remaining, progress) as update:
        sink = _Sink(output_path, append=resume, interrupts=interrupts)
        try:
            # Many pairs are judged at once; each line is written as soon as it and all before it are done.
            for record, outcome in judge_along(unresumed(), lambda record: record.pair, load):
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
            if extra := len(done.keys) - summary.resumed:
                raise UsageError(
                    f"--resume: {output} has {extra} more lines than the input has left: "
                    "resume with the same input, or write to another file"
                )
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            sink.close()
            summary.seconds = time.perf_counter() - started
    return summary
