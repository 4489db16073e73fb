#!/usr/bin/env python3
"""Better verdicts from the same model: the decision rules, calibration and repeated samples, measured.

    python bench/bench_decide.py [--pairs 120] [--limit N] [--max-chars 1500] [--budget 0]
                                 [--samples-pairs 16] [--samples-budget 48] [--temperature 0.7]
                                 [--model PATH.gguf] [--cache PATH] [--threads N] [--parallel 4]
                                 [--compare-parallel 1 --compare-pairs 50]

Pairs: a seeded draw of ``--pairs`` labelled pairs, as evenly as they allow, across the four files of
../shared/data (llmbar, hhh_alignment, pandalm_test, rm_bench), each no longer than ``--max-chars``
characters (question and both responses: short pairs keep a CPU run affordable). Which text is shown
as A is a seeded coin per pair, so the labels are balanced. ``--limit`` judges only the first N of
them (a quick look; the draw itself does not change).

1. Decision rules: every pair in both orders at ``--budget`` (default 0: verdict-only, the verdict
   read off P(A) and P(B) right after ``<answer>[[``), decided by ``agreement`` and by
   ``probability`` (tie margins 0, 0.05, 0.1) from the same readings; accuracy (a tie counts half)
   with its 95% bootstrap interval (rmjudge.metrics.bootstrap_interval).
2. Calibration: Platt and temperature fits on 70% of those pairs (mirrored: each pair also counts
   with A and B swapped), ECE raw against calibrated on the other 30%, which the fit never saw.
3. Samples: on the first ``--samples-pairs`` pairs, a reasoning budget of ``--samples-budget`` tokens
   at ``--temperature``, ``--samples 1`` against ``--samples 3`` (seeds seed, seed+1, seed+2): accuracy
   under both rules and wall time. Sample 0 of the 3-sample run is the 1-sample run's trace (same
   seed: from the cache), so the 3-sample time is the 1-sample run's plus the extra traces'.
4. With ``--compare-parallel Q``: the first ``--compare-pairs`` pairs judged again at ``--parallel Q``
   with no cache, against the readings of step 1 (at ``--parallel``, default 4): how many orders give the
   same verdict, how many pairs the same winner, and the largest difference in P(A). Batched arithmetic
   may change a reading near a tie; this counts how often it does.

Verdicts go through a verdict cache (``--cache``, default: rmjudge's own), so a re-run is cheap; its
times then show cache hits (the table says how many traces were generated). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rmjudge import calibration as cal
from rmjudge.cache import VerdictCache
from rmjudge.decision import Trace, decide
from rmjudge.engines import Sampling
from rmjudge.errors import RmjudgeError
from rmjudge.evaluate import LabelledPair, load_pairs
from rmjudge.judge import Judge, Judgment
from rmjudge.metrics import bootstrap_interval
from rmjudge.prompts import Pair

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
# The four files and the prefix of their ids.
FILES = {"llmbar": "llmbar/", "hhh_alignment": "hhh/", "pandalm_test": "pandalm/", "rm_bench": "rmbench/"}
MODEL = ROOT / ".models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
RULES = (("agreement", 0.0), ("probability", 0.0), ("probability", 0.05), ("probability", 0.1))


@dataclass(frozen=True)
class Judged:
    item: LabelledPair
    traces: tuple[Trace, ...]
    generated: int  # traces the engine generated (not from the cache)


def _length(item: LabelledPair) -> int:
    return len(item.pair.question or "") + len(item.pair.a) + len(item.pair.b)


def draw(pairs: int, max_chars: int, seed: int) -> list[LabelledPair]:
    """``pairs`` short labelled pairs across FILES (an even share each, topped up from the others),
    the shown order of each a seeded coin."""
    rng = random.Random(seed)
    pools = {}
    for name in FILES:
        loaded = [i for i in load_pairs(str(DATA / f"{name}.jsonl")) if isinstance(i, LabelledPair)]
        pool = [i for i in loaded if _length(i) <= max_chars and not i.pair.is_multi_turn]
        rng.shuffle(pool)
        pools[name] = pool
    chosen: list[LabelledPair] = []
    share = pairs // len(FILES)
    for name in FILES:
        chosen += pools[name][:share]
        del pools[name][:share]
    leftovers = [i for name in FILES for i in pools[name]]
    rng.shuffle(leftovers)
    chosen += leftovers[: pairs - len(chosen)]
    if len(chosen) < pairs:
        sys.exit(f"only {len(chosen)} pairs of at most {max_chars} characters: raise --max-chars")
    rng.shuffle(chosen)
    return [_shown_at_random(item, rng) for item in chosen]


def _shown_at_random(item: LabelledPair, rng: random.Random) -> LabelledPair:
    if rng.random() < 0.5:
        return item
    pair = Pair(a=item.pair.b, b=item.pair.a, question=item.pair.question, conversation=item.pair.conversation)
    return LabelledPair(item.id, pair, "B" if item.label == "A" else "A", item.subset)


def judge_all(judge: Judge, items: Sequence[LabelledPair], what: str) -> tuple[list[Judged], float]:
    """Every item through ``judge.judge_many``; the readings of each, and the wall time."""
    started = time.perf_counter()
    judged: list[Judged] = []
    for number, (item, outcome) in enumerate(zip(items, judge.judge_many(i.pair for i in items), strict=True), 1):
        if isinstance(outcome, RmjudgeError):
            print(f"  {item.id}: skipped ({outcome})", file=sys.stderr)
            continue
        judged.append(Judged(item, _traces(outcome), sum(not o.cached for o in outcome.orders)))
        if number % 10 == 0 or number == len(items):
            minutes = (time.perf_counter() - started) / 60
            print(f"  {what}: {number}/{len(items)} pairs, {minutes:.2f} min", file=sys.stderr, flush=True)
    return judged, time.perf_counter() - started


def _traces(judgment: Judgment) -> tuple[Trace, ...]:
    return tuple(Trace(o.order, o.verdict, o.probability_a) for o in judgment.orders)


def score(judged: Sequence[Judged], rule: str, margin: float) -> tuple[float, tuple[float, float], float]:
    """Accuracy (a tie counts half), its 95% bootstrap interval, and the tie rate."""
    winners = [decide(j.traces, rule, margin).winner for j in judged]
    scores = [0.5 if w == "tie" else float(w == j.item.label) for w, j in zip(winners, judged, strict=True)]
    interval = bootstrap_interval(scores)
    assert interval is not None
    return sum(scores) / len(scores), interval, sum(w == "tie" for w in winners) / len(winners)


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def decision_table(judged: Sequence[Judged]) -> None:
    flipped = sum(len({t.verdict for t in j.traces}) > 1 for j in judged) / len(judged)
    print(f"\n{len(judged)} pairs, both orders; verdicts flipped between the orders on {pct(flipped)} of pairs")
    print(f"{'rule':<26}{'accuracy':>10}{'95% interval':>20}{'ties':>8}")
    for rule, margin in RULES:
        accuracy, (low, high), ties = score(judged, rule, margin)
        name = rule if rule == "agreement" else f"{rule} (margin {margin:g})"
        print(f"{name:<26}{pct(accuracy):>10}{f'[{pct(low)}, {pct(high)}]':>20}{pct(ties):>8}")


def calibration_table(judged: Sequence[Judged]) -> None:
    probabilities = [[t.probability_a for t in j.traces] for j in judged]
    labels = [int(j.item.label == "A") for j in judged]
    print(f"\ncalibration: fit on 70% of the {len(judged)} pairs, ECE on the other 30% (never fitted on)")
    print(f"{'method':<14}{'slope':>8}{'intercept':>11}{'held out':>10}{'ECE raw':>10}{'ECE calibrated':>16}")
    for method in cal.METHODS:
        fitted = cal.calibrate(probabilities, labels, model="bench", template="bench", method=method, mirrored=True)
        assert fitted.ece_raw is not None and fitted.ece_calibrated is not None
        print(
            f"{method:<14}{fitted.slope:>8.3f}{fitted.intercept:>11.3f}{fitted.held_out:>10}"
            f"{fitted.ece_raw:>10.3f}{fitted.ece_calibrated:>16.3f}"
        )


def samples_table(judge: Judge, items: Sequence[LabelledPair], args: argparse.Namespace) -> None:
    sampling = Sampling(temperature=args.temperature, seed=args.seed)
    print(
        f"\nsamples: {len(items)} pairs, budget {args.samples_budget} tokens per trace, temperature {args.temperature}"
    )
    print(f"{'samples':<9}{'agreement':>11}{'probability':>13}{'traces generated':>18}{'wall min':>10}")
    wall_one = 0.0
    for samples in (1, 3):
        sampler = Judge(
            judge.engine, template=judge.template.id.removeprefix("rm-r1-"), max_tokens=args.samples_budget,
            sampling=sampling, cache=judge.cache, samples=samples,
        )  # fmt: skip
        judged, wall = judge_all(sampler, items, f"samples {samples}")
        wall_one = wall if samples == 1 else wall_one
        total = wall if samples == 1 else wall_one + wall  # sample 0 came from the 1-sample run's cache
        generated = sum(j.generated for j in judged)
        agreement, probability = score(judged, "agreement", 0.0)[0], score(judged, "probability", 0.0)[0]
        print(f"{samples:<9}{pct(agreement):>11}{pct(probability):>13}{generated:>18}{total / 60:>10.2f}")


def parallel_table(judge: Judge, judged: Sequence[Judged], args: argparse.Namespace) -> None:
    """The first ``--compare-pairs`` of ``judged`` again, at ``--compare-parallel``, uncached."""
    head = list(judged[: args.compare_pairs])
    other = Judge(
        model=args.model, template=judge.template.id.removeprefix("rm-r1-"), max_tokens=args.budget, cache=None,
        threads=args.threads, parallel=args.compare_parallel,
    )  # fmt: skip
    again, wall = judge_all(other, [j.item for j in head], f"--parallel {args.compare_parallel}")
    pairs = list(zip(head, again, strict=True))
    orders = [(t, u) for j, k in pairs for t, u in zip(j.traces, k.traces, strict=True)]
    same_orders = sum(t.verdict == u.verdict for t, u in orders)
    same_winners = sum(decide(j.traces).winner == decide(k.traces).winner for j, k in pairs)
    largest = max(abs(t.probability_a - u.probability_a) for t, u in orders)
    print(f"\n--parallel {args.parallel} against --parallel {args.compare_parallel} ({len(pairs)} pairs, budget "
          f"{args.budget}, {wall / 60:.2f} min): same verdict in {same_orders}/{len(orders)} orders, same winner in "
          f"{same_winners}/{len(pairs)} pairs, P(A) differs by at most {largest:.4f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=120)
    parser.add_argument("--limit", type=int, default=None, help="judge only the first N pairs of the draw")
    parser.add_argument("--max-chars", type=int, default=1500)
    parser.add_argument("--budget", type=int, default=0, help="reasoning budget for the rules (0: verdict-only)")
    parser.add_argument("--samples-pairs", type=int, default=16, help="0: no samples step")
    parser.add_argument("--samples-budget", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--cache", type=Path, default=None, help="verdict cache file (default: rmjudge's own)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--parallel", type=int, default=4, help="sequences at once for steps 1 to 3")
    parser.add_argument("--compare-parallel", type=int, default=None, help="step 4: judge again at this --parallel")
    parser.add_argument("--compare-pairs", type=int, default=50)
    args = parser.parse_args()

    items = draw(args.pairs, args.max_chars, args.seed)[: args.limit]
    started = time.perf_counter()
    cache = VerdictCache(args.cache) if args.cache else VerdictCache()
    judge = Judge(model=args.model, max_tokens=args.budget, cache=cache, threads=args.threads, parallel=args.parallel)
    by_file = {name: sum(i.id.startswith(prefix) for i in items) for name, prefix in FILES.items()}
    print(
        f"model {args.model.name} ({time.perf_counter() - started:.1f} s to load) · {len(items)} pairs of at most "
        f"{args.max_chars} characters ({', '.join(f'{n} {k}' for k, n in by_file.items())}) · seed {args.seed}",
        flush=True,
    )
    judged, wall = judge_all(judge, items, "both orders")
    print(f"judged in {wall / 60:.2f} min ({sum(j.generated for j in judged)} traces generated, the rest cached)")
    decision_table(judged)
    calibration_table(judged)
    if args.samples_pairs > 0:
        samples_table(judge, items[: args.samples_pairs], args)
    if args.compare_parallel is not None:
        parallel_table(judge, judged, args)


if __name__ == "__main__":
    main()
