"""``rmjudge eval``: run a judge over labelled pairs under an evaluation protocol, keep per-pair results.

Protocols (all on the same Judge, so the verdict cache, keyed per order, serves every order any of
them has judged before):
- ``both``: each pair in both orders, a tie when they disagree (the default of compare and batch);
- ``official``: RM-R1's published protocol: one order per pair, picked by a coin seeded with
  ``--seed`` and the pair's id (reproducible, independent of the file's order and of --limit), no tie;
- ``verdict-only``: both orders with no reasoning (budget 0): the verdict is read off the token
  probabilities of A and B right after ``<answer>[[``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from rmjudge import calibration
from rmjudge.errors import ContextTooLongError, InputError, UsageError
from rmjudge.judge import Judge, Judgment, judge_along
from rmjudge.metrics import OrderResult, PairResult, Skipped, rm_bench_styles
from rmjudge.progress import Progress, no_progress
from rmjudge.prompts import Pair
from rmjudge.records import Record, read_records
from rmjudge.verdict import one_line_reason

PROTOCOLS = ("both", "official", "verdict-only")
RESULTS_FORMAT = 1
MAX_WARNINGS = 20  # skipped inputs reported one by one; the rest only counted
MIN_CALIBRATION_PAIRS = 10  # a 70/30 split leaves 3 held out: fewer would measure nothing


@dataclass(frozen=True)
class LabelledPair:
    """A pair to judge and which of its two responses the data says is better."""

    id: str
    pair: Pair
    label: str  # "A" or "B"
    subset: str | None = None


def record_id(record: Record) -> str:
    """The record's id field as text, else its line number."""
    value = record.data.get(record.id_field) if record.data is not None and record.id_field else None
    return f"line {record.line}" if value is None else str(value)


def labelled_pairs(records: Iterable[Record]) -> Iterator[LabelledPair | Skipped]:
    """Records as pairs to score; broken lines and pairs without a better side are skipped, with why."""
    for record in records:
        pair_id = record_id(record)
        if record.pair is None:
            yield Skipped(pair_id, "broken", f"line {record.line}: {record.error}")
        elif record.label is None:
            yield Skipped(pair_id, "unlabelled", f"line {record.line}: no label (or a tie): nothing to score against")
        else:
            subset = record.data.get("subset") if record.data is not None else None
            yield LabelledPair(pair_id, record.pair, record.label, None if subset is None else str(subset))


def _style_matched(item: LabelledPair | Skipped) -> tuple[str, int] | None:
    """(the prompt's part of the id, the style) for an RM-Bench pair c<i>r<i>."""
    styles = rm_bench_styles(item.id) if isinstance(item, LabelledPair) else None
    return None if styles is None or styles[1] != styles[2] else styles[:2]


def rm_bench_matrix(items: Iterable[LabelledPair | Skipped]) -> Iterator[LabelledPair | Skipped]:
    """RM-Bench's full 3x3 style matrix from its style-matched pairs.

    RM-Bench gives each prompt a chosen and a rejected response in three styles; files that keep
    only the matched pairs (ids ending c0r0, c1r1, c2r2) lack the mismatched ones that its easy and
    hard accuracies need. For every prompt with all three, this yields the nine pairs c<i>r<j>
    (chosen in style i, shown as A, against rejected in style j); everything else passes unchanged.
    """
    items = list(items)
    styles: dict[str, dict[int, LabelledPair]] = {}
    for item in items:
        matched = _style_matched(item)
        if matched is not None and isinstance(item, LabelledPair):
            styles.setdefault(matched[0], {})[matched[1]] = item
    for item in items:
        matched = _style_matched(item)
        if matched is None or len(styles[matched[0]]) < 3:
            yield item
        elif matched[1] == 0:  # the prompt's whole matrix, where its first pair was
            prefix, by_style = matched[0], styles[matched[0]]
            chosen = {i: p.pair.a if p.label == "A" else p.pair.b for i, p in by_style.items()}
            rejected = {i: p.pair.b if p.label == "A" else p.pair.a for i, p in by_style.items()}
            for i in range(3):
                pair = by_style[i].pair
                for j in range(3):
                    yield LabelledPair(
                        f"{prefix}c{i}r{j}",
                        Pair(a=chosen[i], b=rejected[j], question=pair.question, conversation=pair.conversation),
                        "A",
                        by_style[i].subset,
                    )


def load_pairs(
    source: str, *, maps: Mapping[str, str] | None = None, limit: int | None = None, full_rm_bench: bool = False
) -> list[LabelledPair | Skipped]:
    """The labelled pairs of JSONL ``source`` (the formats ``rmjudge batch`` reads), the first ``limit``."""
    items: Iterable[LabelledPair | Skipped] = labelled_pairs(read_records(source, maps=maps))
    if full_rm_bench:
        items = rm_bench_matrix(items)
    loaded = list(limited(items, limit))
    if not any(isinstance(item, LabelledPair) for item in loaded):
        skipped = [item for item in loaded if isinstance(item, Skipped)]
        detail = f" ({len(skipped)} skipped; the first: {skipped[0].message})" if skipped else ""
        raise InputError(f"{source} holds no labelled pair to judge{detail}")
    return loaded


def check_protocol(protocol: str, max_tokens: int | None) -> None:
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol {protocol!r}: use both, official or verdict-only")
    if protocol == "verdict-only" and max_tokens not in (None, 0):
        raise UsageError("--protocol verdict-only judges with no reasoning (--max-tokens 0): leave --max-tokens out")


def eval_mode(
    *, data: str | None, from_results: Path | None, compare: tuple[Path, Path] | None, plot: Path | None = None,
    out: Path | None = None, limit: int | None = None, maps: Sequence[str] = (), rm_bench_matrix: bool = False,
    protocol: str = "both", max_tokens: int | None = None, calibrate: bool = False,
) -> str:  # fmt: skip
    """What ``rmjudge eval`` is asked to do: "judge" DATA, recompute a report "from" results, or
    "compare" two reports; a usage error when the options do not go with it."""
    if sum(x is not None for x in (data, from_results, compare)) != 1:
        raise UsageError("give one of: DATA to judge, --from RESULTS to recompute a report, --compare A B")
    judging_only = out is not None or limit is not None or bool(maps) or rm_bench_matrix
    if compare is not None:
        if plot is not None or judging_only or calibrate:
            raise UsageError("--compare reads two reports and takes none of --plot, --out, --limit, --map, --calibrate")
        return "compare"
    if from_results is not None:
        if judging_only:
            raise UsageError("--limit, --out, --map and --rm-bench-matrix apply when judging DATA, not with --from")
        return "from"
    check_protocol(protocol, max_tokens)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: give a number of pairs, 1 or more")
    if out is not None and data != "-" and out.resolve() == Path(str(data)).resolve():
        raise UsageError(f"--out {out} is the input file: write the results elsewhere")
    return "judge"


def official_order(pair_id: str, seed: int) -> str:
    """The order RM-R1's protocol shows this pair in: a fair coin from the seed and the pair's id."""
    digest = hashlib.sha256(f"{seed}\0{pair_id}".encode()).digest()
    return "ab" if digest[0] & 1 == 0 else "ba"


def protocol_orders(protocol: str, pair_id: str, seed: int) -> tuple[str, ...]:
    return (official_order(pair_id, seed),) if protocol == "official" else ("ab", "ba")


def judge_for_protocol(judge: Judge, protocol: str) -> Judge:
    """``judge`` itself, or for verdict-only the same judge (model, template, cache) with budget 0."""
    if protocol != "verdict-only" or judge.max_tokens == 0:
        return judge
    return judge.with_max_tokens(0)


def pair_result(item: LabelledPair, judgment: Judgment, seconds: float) -> PairResult:
    """What the report keeps of one labelled pair's judgment."""
    orders = tuple(
        OrderResult(
            order=o.order, verdict=o.verdict, position_verdict=o.position_verdict, probability_a=o.probability_a,
            forced=o.forced, tokens_in=o.tokens_in, tokens_out=o.tokens_out, seconds=o.seconds, cached=o.cached,
        )
        for o in judgment.orders
    )  # fmt: skip
    all_cached = all(o.cached for o in orders)
    return PairResult(
        id=item.id,
        subset=item.subset,
        label=item.label,
        winner=judgment.winner,
        # The raw confidence: an eval measures the model itself, whatever calibration is stored for it.
        confidence=judgment.confidence if judgment.confidence_raw is None else judgment.confidence_raw,
        length_a=len(item.pair.a),
        length_b=len(item.pair.b),
        seconds=0.0 if all_cached else seconds,
        orders=orders,
        reason=one_line_reason(judgment.orders[0].rationale),
    )


def evaluate(
    judge: Judge,
    items: Iterable[LabelledPair | Skipped],
    *,
    protocol: str = "both",
    seed: int = 0,
    on_item: Callable[[PairResult | Skipped], None] | None = None,
) -> tuple[list[PairResult], list[Skipped]]:
    """Judge every labelled pair; inputs already skipped (broken lines) pass through, and pairs too
    long for the model's context are skipped and counted. ``on_item`` sees each outcome as it comes
    (to write it out at once: an interrupted eval keeps what it judged).

    All pairs go through one stream, many at once, so a pair's ``seconds`` is the wall time since the
    previous outcome: they add up to the run's time, and pairs per minute stay true."""
    check_protocol(protocol, None)
    judge = judge_for_protocol(judge, protocol)
    results: list[PairResult] = []
    skipped: list[Skipped] = []

    def request(item: LabelledPair | Skipped) -> tuple[Pair, tuple[str, ...]] | None:
        return None if isinstance(item, Skipped) else (item.pair, protocol_orders(protocol, item.id, seed))

    last = time.perf_counter()
    for item, judged in judge_along(items, request, lambda: judge):
        outcome: PairResult | Skipped
        if isinstance(item, Skipped):
            outcome = item
        elif isinstance(judged, Judgment):
            now = time.perf_counter()
            outcome = pair_result(item, judged, now - last)
            last = now
        else:  # the pair's own error: skipped and counted
            reason = "too_long" if isinstance(judged, ContextTooLongError) else "broken"
            outcome = Skipped(item.id, reason, str(judged))
        if isinstance(outcome, Skipped):
            skipped.append(outcome)
        else:
            results.append(outcome)
        if on_item is not None:
            on_item(outcome)
    return results, skipped


def run_info(judge: Judge, *, data: str, protocol: str, seed: int, limit: int | None) -> dict[str, Any]:
    """What the report says about the run: data, protocol and everything that reproduces the judgments."""
    meta = judge_for_protocol(judge, protocol).meta()
    return {"data": data, "protocol": protocol, "seed": seed, "limit": limit, **meta}


def run_eval(
    judge: Judge,
    items: list[LabelledPair | Skipped],
    *,
    protocol: str,
    seed: int,
    run: dict[str, Any],
    out: Path | None = None,
    warn: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> tuple[list[PairResult], list[Skipped]]:
    """``evaluate`` for the command line: results written to ``out`` as they come, skipped inputs
    told to ``warn``, the pairs judged so far to ``progress``."""
    stream: IO[bytes] | None = None
    if out is not None:
        try:
            stream = out.open("wb")
        except OSError as error:
            raise InputError(f"cannot write the results to {out}: {error.strerror}") from None
    writer = ResultsWriter(stream, run) if stream is not None else None
    total = sum(isinstance(item, LabelledPair) for item in items)
    bar = (progress or no_progress)(total, description="judging")
    scores: list[float] = []
    warned = 0

    def on_item(outcome: PairResult | Skipped) -> None:
        nonlocal warned
        if writer is not None:
            writer(outcome)
        if isinstance(outcome, Skipped):
            warned += 1
            if warn is not None and warned <= MAX_WARNINGS:
                warn(f"skipped {outcome.id} ({outcome.message})")
            return
        scores.append(outcome.score)
        accuracy = sum(scores) / len(scores)
        update(advance=1, description=f"judging · accuracy so far {100 * accuracy:.0f}%")

    try:
        with bar as update:
            return evaluate(judge, items, protocol=protocol, seed=seed, on_item=on_item)
    finally:
        if warn is not None and warned > MAX_WARNINGS:
            warn(f"{warned - MAX_WARNINGS} more inputs skipped (counted in the report)")
        if stream is not None:
            stream.close()


# -- calibration: fit on some labelled pairs, score on the others --------------------------------


def check_calibration_method(method: str) -> None:
    if method not in calibration.METHODS:
        raise UsageError(f"--calibration-method {method!r}: use {' or '.join(calibration.METHODS)}")


def fit_calibration(
    run: Mapping[str, Any], results: Sequence[PairResult], method: str = "platt"
) -> calibration.Calibration:
    """A calibration of the run's model and template (``run``: the report's run record) on its judged
    pairs: fit on a seeded 70% of them, ECE before and after measured on the other 30% (never fit and
    scored on the same pairs). The input is each pair's raw P(A better) of every order (and sample)."""
    check_calibration_method(method)
    if len(results) < MIN_CALIBRATION_PAIRS:
        raise UsageError(
            f"--calibrate needs at least {MIN_CALIBRATION_PAIRS} judged pairs (70% to fit on, 30% to test on): "
            f"{len(results)} judged; give more labelled pairs"
        )
    model, template = calibration.key_for(run)
    return calibration.calibrate(
        [[o.probability_a for o in r.orders] for r in results],
        [int(r.label == "A") for r in results],
        model=model,
        template=template,
        method=method,
        mirrored=True,  # which text a file calls A is arbitrary; often the better one is always A
    )


def calibration_summary(fitted: calibration.Calibration, path: Path | None) -> dict[str, Any]:
    """What the eval report says about a fit (``calibration_fit``)."""
    return {
        "method": fitted.method,
        "slope": fitted.slope,
        "intercept": fitted.intercept,
        "fit_pairs": fitted.pairs,
        "held_out": fitted.held_out,
        "ece_raw": fitted.ece_raw,
        "ece_calibrated": fitted.ece_calibrated,
        "model": fitted.model,
        "template": fitted.template,
        "path": None if path is None else str(path),
    }


# -- per-pair results as JSONL: a "run" line, then one "pair" or "skipped" line per input ----------


class ResultsWriter:
    """Writes results as they come, one flushed line each."""

    def __init__(self, stream: IO[bytes], run: dict[str, Any]) -> None:
        self.stream = stream
        self._write({"kind": "run", "results_format": RESULTS_FORMAT, **run})

    def _write(self, data: dict[str, Any]) -> None:
        self.stream.write(orjson.dumps(data) + b"\n")
        self.stream.flush()

    def __call__(self, outcome: PairResult | Skipped) -> None:
        kind = "skipped" if isinstance(outcome, Skipped) else "pair"
        self._write({"kind": kind, **outcome.to_dict()})


@dataclass(frozen=True)
class StoredResults:
    run: dict[str, Any]
    results: list[PairResult]
    skipped: list[Skipped]


def read_results(path: Path) -> StoredResults:
    """Results written by ``--out``, for recomputing a report without judging again."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (give a results file written by rmjudge eval --out)") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from None
    run: dict[str, Any] | None = None
    results: list[PairResult] = []
    skipped: list[Skipped] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
            kind = data.get("kind") if isinstance(data, dict) else None
            if kind == "run":
                run = {k: v for k, v in data.items() if k not in ("kind", "results_format")}
            elif kind == "pair":
                results.append(PairResult.from_dict(data))
            elif kind == "skipped":
                skipped.append(Skipped.from_dict(data))
            else:
                raise ValueError("no kind")
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError):
            raise InputError(
                f"{path}, line {number}: not an rmjudge eval result line: give a file written by rmjudge eval --out"
            ) from None
    if run is None:
        raise InputError(f"{path}: no run line: give a file written by rmjudge eval --out")
    return StoredResults(run, results, skipped)


def read_report(path: Path) -> dict[str, Any]:
    """A report written by ``rmjudge eval --json``."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (give a report written by rmjudge eval --json)") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from None
    except orjson.JSONDecodeError as error:
        raise InputError(f"{path} is not JSON ({error.msg}): give a report written by rmjudge eval --json") from None
    if not isinstance(data, dict) or "report_format" not in data:
        raise InputError(f"{path} is not an rmjudge eval report: give a file written by rmjudge eval --json")
    return data


def limited(items: Iterable[LabelledPair | Skipped], limit: int | None) -> Iterator[LabelledPair | Skipped]:
    """The first ``limit`` pairs (skipped inputs met on the way are passed along, not counted)."""
    pairs = 0
    for item in items:
        if limit is not None and pairs >= limit:
            return
        if isinstance(item, LabelledPair):
            pairs += 1
        yield item
