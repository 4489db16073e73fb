"""Benchmark ``rank`` on sets of 8 real candidates from ../shared/data with a real GGUF. Prints plain lines.

Sets: a PandaLM prompt's own responses (4 or 5, from several models), filled up to 8 with the
shortest responses to other prompts of the same category (off-topic drafts), the sets with the
shortest texts first (fast to prefill on a shared CPU). Verdict-only judging (``--max-tokens 0``).

1. Agreement: on each set, round-robin judges all 28 pairs (batched through ``judge_many``) into a
   verdict cache; adaptive and knockout then rank the same set from that cache (a greedy judge gives
   the same judgment twice, so they see exactly what they would have judged). Reported: comparisons
   used by adaptive against round-robin's 28, and how often adaptive's (and knockout's) first place is
   round-robin's. Target: adaptive agrees at least 90% of the time.
2. Seconds per ranking, on the first set with no cache: round-robin batched (``judge_many``, the
   engine's parallel slots), round-robin sequential (the same pairs one ``judge`` call at a time), and
   adaptive batched.

    python bench/bench_rank.py                 # 8 sets, Gemma 3 270M from .models/, 1 thread
    python bench/bench_rank.py --quick         # 2 sets, timing on 6 candidates
    python bench/bench_rank.py --model .models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --sets 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "pandalm_test.jsonl"
GEMMA = ROOT / ".models" / "gemma-3-270m-q4_k_m.gguf"
SIZE = 8


def candidate_sets(count: int, size: int = SIZE) -> list[tuple[str, list[str]]]:
    """``count`` sets of ``size`` distinct responses: a prompt's own, then other prompts' of its category."""
    responses: dict[tuple[str, str], list[str]] = defaultdict(list)
    for line in DATA.read_bytes().splitlines():
        row = orjson.loads(line)
        for text in (row["chosen"], row["rejected"]):
            if text.strip() and text not in responses[row["subset"], row["prompt"]]:
                responses[row["subset"], row["prompt"]].append(text)
    by_category: dict[str, list[str]] = defaultdict(list)
    for (category, _), texts in responses.items():
        by_category[category] += texts
    sets = []
    for (category, prompt), own in responses.items():
        if len(own) < 4:
            continue
        others = sorted((t for t in set(by_category[category]) if t not in own), key=lambda t: (len(t), t))
        if len(own) + len(others) >= size:
            sets.append((prompt, (own + others)[:size]))
    sets.sort(key=lambda s: (sum(len(t) for t in s[1]) + len(s[0]), s[0]))
    return sets[:count]


class OneAtATime:
    """The judge, asked one pair at a time (``judge`` per pair): what ranking costs without batching."""

    def __init__(self, judge: Any) -> None:
        self.judge = judge
        self.order = judge.order
        self.max_tokens = judge.max_tokens
        self.check_fits = judge.check_fits

    def judge_many(self, pairs: Iterable[Any]) -> Iterator[Any]:
        from rmjudge.errors import RmjudgeError

        for pair in pairs:
            try:
                yield self.judge.judge(pair)
            except RmjudgeError as error:
                yield error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(GEMMA), help="GGUF to judge with (default: Gemma 3 270M)")
    parser.add_argument("--sets", type=int, default=8, help="candidate sets for the agreement figures")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for llama.cpp (default 1: shared machine)")
    parser.add_argument("--parallel", type=int, default=4, help="engine slots for the batched runs")
    parser.add_argument("--quick", action="store_true", help="2 sets; timing on 6 candidates")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-agreement", action="store_true")
    args = parser.parse_args()
    sets = candidate_sets(max(1, 2 if args.quick else args.sets))
    timing_size = 6 if args.quick else SIZE

    os.environ["RMJUDGE_HOME"] = tempfile.mkdtemp(prefix="rmjudge-bench-rank-")
    from rmjudge.cache import VerdictCache
    from rmjudge.judge import Judge
    from rmjudge.prompts import Pair
    from rmjudge.rank import rank

    started = time.perf_counter()
    options: dict[str, Any] = {"max_tokens": 0, "threads": args.threads}
    batched = "judge_many" in vars(Judge)
    if batched:
        options["parallel"] = args.parallel
    judge = Judge(args.model, **options)
    batch_judge: Any = judge if batched else OneAtATime(judge)
    print(f"model: {Path(args.model).name}; load {time.perf_counter() - started:.1f} s; threads {args.threads}; "
          f"cores {os.cpu_count()}; sets of {SIZE} from {DATA.name}")  # fmt: skip
    if not batched:
        print("note: this Judge has no judge_many: 'batched' below is one pair at a time too")

    if not args.skip_timing:
        prompt, candidates = sets[0]
        candidates = candidates[:timing_size]
        pairs = timing_size * (timing_size - 1) // 2
        # Warm up: the system prompt's prefill (the first judgment's cost) is no ranking's.
        warm = sets[-1][1]
        list(batch_judge.judge_many([Pair(a=warm[0], b=warm[1], question=sets[-1][0])]))
        print(f"\nseconds per ranking of {timing_size} candidates (no cache, both orders, --max-tokens 0):")
        for label, ranker, strategy in (
            ("adaptive, batched", batch_judge, "adaptive"),
            ("round-robin, batched", batch_judge, "round-robin"),
            ("round-robin, sequential", OneAtATime(judge), "round-robin"),
        ):
            result = rank(ranker, prompt, candidates, strategy=strategy, resamples=0)  # type: ignore[arg-type]
            seconds = result.cost.wall_seconds
            print(f"  {label:24} {seconds:7.1f} s  ({result.cost.comparisons} of {pairs} pairs, "
                  f"{seconds / result.cost.comparisons:.2f} s per pair)")  # fmt: skip

    if args.skip_agreement:
        return
    judge.cache = VerdictCache()  # from here on: a pair judged once serves every strategy
    print(f"\nagreement with round-robin's first place ({len(sets)} sets):")
    agree = {"adaptive": 0, "knockout": 0}
    used: list[int] = []
    settled = 0
    for number, (prompt, candidates) in enumerate(sets, start=1):
        full = rank(batch_judge, prompt, candidates, strategy="round-robin", resamples=0)  # type: ignore[arg-type]
        adaptive = rank(batch_judge, prompt, candidates, strategy="adaptive", seed=number, resamples=0)  # type: ignore[arg-type]
        knockout = rank(batch_judge, prompt, candidates, strategy="knockout", seed=number, resamples=0)  # type: ignore[arg-type]
        agree["adaptive"] += adaptive.best == full.best
        agree["knockout"] += knockout.best == full.best
        used.append(adaptive.cost.comparisons)
        settled += adaptive.stopped == "settled"
        print(f"  set {number}: round-robin first {full.best} ({full.cost.wall_seconds:.0f} s); adaptive first "
              f"{adaptive.best} with {adaptive.cost.comparisons} pairs ({adaptive.stopped}); "
              f"knockout first {knockout.best}")  # fmt: skip
    total = len(sets)
    share = agree["adaptive"] / total
    print(f"adaptive: {sum(used) / total:.1f} of 28 comparisons on average ({sum(used) / total / 28:.0%}), "
          f"first place = round-robin's in {agree['adaptive']}/{total} ({share:.0%}; target >= 90%), "
          f"settled early in {settled}/{total}")  # fmt: skip
    print(f"knockout: 7 of 28 comparisons, first place = round-robin's in {agree['knockout']}/{total} "
          f"({agree['knockout'] / total:.0%})")  # fmt: skip
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
