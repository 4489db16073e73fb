"""What ``rmjudge rank`` reads and writes: candidate files, or JSON Lines of prompts with their responses.

- Files: each file is one candidate, named by its path; the question comes from ``-q``.
- JSON Lines: each line ``{"prompt": ..., "responses": [...]}`` is ranked on its own. ``prompt`` is a
  string (a ``Human: ... Assistant: ...`` transcript becomes a conversation) or a list of
  ``{role, content}`` messages; a line's own ``reference`` field is its reference (else ``--reference``).
  The output line is the input line, every field passed through, with the ranking under ``rmjudge``, or
  that line's error there (``{"error", "line", "exit_code"}``, as ``rmjudge batch`` writes it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rmjudge.batch import error_block, output_row
from rmjudge.errors import ContextTooLongError, ExitCode, InputError, RmjudgeError, UsageError
from rmjudge.prompts import Message
from rmjudge.rank import check_candidates, choose_strategy, rank
from rmjudge.ranking import PairJudge, Ranking
from rmjudge.records import Record, iter_lines, split_transcript
from rmjudge.rewards import completion_text, request_of
from rmjudge.textio import decode_utf8, read_question, read_text, strip_bom

JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class RankRequest:
    """One ranking to do: the request, the candidates with their names, and the reference if any."""

    question: str | None
    candidates: list[str]
    names: list[str]
    reference: str | None = None
    conversation: tuple[Message, ...] = ()


def is_jsonl(sources: Sequence[str]) -> bool:
    """One ``.jsonl`` file (or ``-``, standard input) holds prompts with responses; anything else is candidate files."""
    return len(sources) == 1 and (sources[0] == "-" or Path(sources[0]).suffix.lower() in JSONL_SUFFIXES)


def read_candidate_files(
    sources: Sequence[str],
    question: str | None = None,
    reference: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> RankRequest:
    """Each file is a candidate, named by its path; ``question`` is ``--question`` (text or a file) and
    ``reference`` a file. Any one of them may be ``-``, standard input."""
    stdin_used: list[bool] = []
    candidates = [read_text(source, stdin_used) for source in sources]
    names = ["standard input" if source == "-" else source for source in sources]
    reference_text = None if reference is None else read_text(reference, stdin_used)
    return RankRequest(read_question(question, warn, stdin_used), candidates, names, reference_text)


# -- JSON Lines --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankLine:
    """One non-blank input line: a ranking to do, or the error that keeps it from being done."""

    line: int
    data: dict[str, Any] | None
    request: RankRequest | None = None
    error: RmjudgeError | None = None

    @property
    def record(self) -> Record:
        return Record(self.line, self.data)


def _request(data: Mapping[str, Any], reference: str | None) -> RankRequest:
    if "prompt" not in data:
        raise InputError('missing field "prompt": give each line {"prompt": ..., "responses": [...]}')
    if not isinstance(data.get("responses"), list):
        raise InputError('field "responses" must be a list of the texts to rank')
    prompt = data["prompt"]
    try:
        if isinstance(prompt, str):
            turns = split_transcript(prompt, ends_with="user")
            request = request_of([{"role": t.role, "content": t.content} for t in turns] if turns else prompt)
        else:
            request = request_of(prompt, "prompt")
        candidates = [completion_text(r, f"responses[{i}]") for i, r in enumerate(data["responses"])]
        line_reference = data.get("reference")
        if line_reference is not None:
            reference = completion_text(line_reference, "reference")
    except UsageError as error:
        raise InputError(str(error)) from None
    names = [f"responses[{i}]" for i in range(len(candidates))]
    return RankRequest(request.question, candidates, names, reference, request.conversation)


def read_rank_lines(source: str, reference: str | None = None) -> Iterator[RankLine]:
    """The lines of JSON Lines file ``source`` (``-``: standard input), each parsed or with its error."""
    name = "standard input" if source == "-" else source
    for number, raw in enumerate(iter_lines(source), start=1):
        if not raw.strip():
            continue
        try:
            data = orjson.loads(decode_utf8(strip_bom(raw) if number == 1 else raw, f"line {number} of {name}"))
        except orjson.JSONDecodeError as error:
            yield RankLine(number, None, error=InputError(f"not valid JSON: {error.msg} at column {error.colno}"))
            continue
        except InputError as error:
            yield RankLine(number, None, error=error)
            continue
        if not isinstance(data, dict):
            yield RankLine(number, None, error=InputError("a line must be a JSON object"))
            continue
        try:
            yield RankLine(number, data, request=_request(data, reference))
        except RmjudgeError as error:
            yield RankLine(number, data, error=error)


@dataclass
class RankSummary:
    """What a JSON Lines run did."""

    ranked: int = 0
    failed: int = 0
    comparisons: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        return ExitCode.NEGATIVE if self.failed else ExitCode.OK

    def line(self) -> str:
        return f"{self.ranked} rankings, {self.failed} failed, {self.comparisons} comparisons, {self.seconds:.1f}s" + (
            " (interrupted)" if self.interrupted else ""
        )


def ranking_block(ranking: Ranking, line: int, *, raw: bool = False) -> dict[str, Any]:
    return {"line": line, **ranking.to_dict(raw=raw)}


def check_request(request: RankRequest, strategy: str = "auto") -> None:
    """What can be checked before a model loads: the candidates, and the strategy for them."""
    check_candidates(request.candidates, request.names, request.reference)
    choose_strategy(strategy, len(request.candidates), request.reference)


def rank_request(judge: PairJudge, request: RankRequest, **options: Any) -> Ranking:
    return rank(
        judge,
        request.question,
        request.candidates,
        names=request.names,
        reference=request.reference,
        conversation=request.conversation,
        **options,
    )


# What is wrong with one line, not with the run: the line gets an error row and the rest go on.
LINE_ERRORS = (InputError, UsageError, ContextTooLongError)


def rank_lines(
    lines: Iterator[RankLine],
    judge_factory: Callable[[], PairJudge],
    write: Callable[[dict[str, Any]], None],
    *,
    warn: Callable[[str], None] | None = None,
    raw: bool = False,
    **options: Any,
) -> RankSummary:
    """Rank each line and ``write`` its output row as soon as it is done, in input order.

    The judge is made when the first line needs one. A line that cannot be ranked (bad input, too
    long for the model) gets an error row and a warning, and the rest go on; any other error (the
    model, the engine) stops the run. Ctrl-C ends the run with ``interrupted`` set, every row
    already written kept.
    """
    started = time.perf_counter()
    summary = RankSummary()
    judge: PairJudge | None = None
    try:
        for item in lines:
            error = item.error
            if item.request is not None:
                try:
                    check_request(item.request, options.get("strategy", "auto"))
                    if judge is None:
                        judge = judge_factory()
                    ranking = rank_request(judge, item.request, **options)
                except LINE_ERRORS as failure:
                    error = failure
                else:
                    write(output_row(item.record, ranking_block(ranking, item.line, raw=raw), flat=False))
                    summary.ranked += 1
                    summary.comparisons += ranking.cost.comparisons
                    continue
            assert error is not None
            write(output_row(item.record, error_block(item.record, error), flat=False))
            summary.failed += 1
            if warn is not None:
                warn(f"line {item.line}: {error}")
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.seconds = time.perf_counter() - started
    return summary
