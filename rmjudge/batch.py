"""``rmjudge batch``: judge every pair of a JSONL file, one output line per input line, in order.

Each output line is the input object with the judgment under ``rmjudge`` (or flattened into
``rmjudge_*`` fields), written whole as soon as it is judged, so a pipe sees it at once and an
interruption (Ctrl-C, SIGTERM) or a write error loses only the pair in flight. ``--resume`` continues
an output file once it is proven to be this input's output, judged as this run judges (see
``rmjudge.resume``); the output is never the input file, by any name. Lines are built in
``rmjudge.output_lines`` and written by ``rmjudge.output``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rmjudge.engines.base import EndpointFigures, endpoint_figures
from rmjudge.errors import ExitCode, RmjudgeError, Terminated, UsageError
from rmjudge.judge import Judge, Judgment, judge_along
from rmjudge.output import Interrupts, Sink, check_output_path
from rmjudge.output_lines import error_block, judgment_block, output_row
from rmjudge.progress import Progress, no_progress
from rmjudge.records import Record, count_records, read_records, with_error
from rmjudge.resume import Existing, check_existing, check_settings

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
    endpoints: list[EndpointFigures] = field(default_factory=list)  # per server, with --endpoint

    def add(self, record: Record, judgment: Judgment) -> None:
        """Count one judged line."""
        self.judged += 1
        self.ties += judgment.winner == "tie"
        self.forced += judgment.forced
        self.cached += all(order.cached for order in judgment.orders)
        self.engine_seconds += sum(order.seconds for order in judgment.orders)
        if record.label is not None:
            self.labelled += 1
            self.agreed += judgment.winner == record.label

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
        if self.endpoints:
            judging = self.seconds - self.load_seconds
            text += "; per endpoint: " + "; ".join(f"{e.endpoint} {endpoint_rate(e, judging)}" for e in self.endpoints)
        if self.resumed:
            failed = f", {self.resumed_failed} of them failed" if self.resumed_failed else ""
            text = f"resumed after {self.resumed} lines{failed}; " + text
        return text


def endpoint_rate(figures: EndpointFigures, seconds: float) -> str:
    """One server's share of a run: "41.2 tok/s, 120 requests", and why it is resting if it is."""
    rate = f"{figures.tokens / seconds:.1f} tok/s, " if seconds > 0 else ""
    resting = f", set aside ({figures.last_error})" if figures.set_aside else ""
    return f"{rate}{figures.requests} requests{resting}"


def _endpoints_of(judge: Judge | None) -> list[EndpointFigures]:
    """Per-server figures, for an engine that spreads its jobs over several ([] otherwise, or unloaded)."""
    return endpoint_figures(judge.engine) if judge is not None else []


def _endpoint_fields(figures: list[EndpointFigures], seconds: float) -> dict[str, str]:
    """The progress bar's field per server: "host:port" -> "41.2 tok/s, 120 requests"."""
    return {e.endpoint.split("://")[-1]: endpoint_rate(e, seconds) for e in figures}


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m {rest:02d}s"


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
        check_output_path(source, output_path, resume=resume, overwrite=overwrite)
    records = _noting_schema(read_records(source, maps=maps), summary)
    existing = Existing()
    if resume and output_path is not None:
        existing, records = check_existing(output_path, records, flat=flat, source=source)
        summary.resumed, summary.resumed_failed = existing.lines, existing.failed
    total = count_records(source)
    remaining = None if total is None else max(total - existing.lines, 0)
    warnings = 0
    judge: Judge | None = None

    bar = (progress or no_progress)(remaining, description="starting", ties=0, forced=0, failed=0)
    with Interrupts() as interrupts, bar as update:

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
                check_settings(output_path, existing, loaded_judge(), flat=flat)
            summary.torn_line_removed = existing.torn

        sink = Sink(
            output_path, resume=resume, interrupts=interrupts, before_first_write=before_first_write,
            keep_bytes=existing.complete if existing.torn else None,
        )  # fmt: skip
        try:
            # Many pairs are judged at once; each line is written as soon as it and all before it are done.
            for record, outcome in judge_along(records, lambda record: record.pair, loaded_judge):
                if isinstance(outcome, Judgment):
                    block = judgment_block(record, outcome, raw=raw)
                    sink.write(output_row(record, block, flat=flat))
                    summary.add(record, outcome)
                    judging = time.perf_counter() - started - summary.load_seconds
                    servers = _endpoint_fields(_endpoints_of(judge), judging)
                    update(advance=1, ties=summary.ties, forced=summary.forced, **servers)
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
            summary.endpoints = _endpoints_of(judge)
    return summary
