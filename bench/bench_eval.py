#!/usr/bin/env python3
"""The three eval protocols on the same pairs and model, in one run: accuracy, flip rate, minutes.

    python bench/bench_eval.py [--pairs 100] [--max-tokens 256] [--model PATH.gguf] [--seed 0]

Pairs: a seeded sample of the LLMBar subsets (LLMBar/Natural, LLMBar/Adversarial/*) of
../shared/data/llmbar.jsonl. The model is loaded once; the verdict cache is a fresh file in a
temporary directory, so nothing comes from earlier runs. Order of the runs: ``both``, then
``official`` (every order it needs was judged by ``both``: served from the cache, which this bench
checks), then ``verdict-only`` (budget 0). ``official`` minutes are therefore the time ``both`` spent
on the orders official picks: what official costs on its own. Prints figures; asserts only the cache
reuse. With full reasoning budgets this takes hours on a 2-core CPU: choose --pairs and --max-tokens.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rmjudge.cache import VerdictCache
from rmjudge.evaluate import LabelledPair, evaluate, load_pairs, official_order
from rmjudge.judge import Judge
from rmjudge.metrics import PairResult, build_report
from rmjudge.system import physical_cores

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "llmbar.jsonl"
MODEL = ROOT / ".models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
WIDTHS = (-14, 10, 18, 11, 8, 8, 9)  # the table's columns; negative: left-aligned


def sample(data: Path, subset_prefix: str, pairs: int, seed: int) -> list[LabelledPair]:
    labelled = [
        item for item in load_pairs(str(data))
        if isinstance(item, LabelledPair) and (item.subset or "").startswith(subset_prefix)
    ]  # fmt: skip
    if len(labelled) < pairs:
        sys.exit(f"only {len(labelled)} pairs in {data} have a subset starting with {subset_prefix!r}")
    return random.Random(seed).sample(labelled, pairs)


def progress_printer(protocol: str, total: int) -> Callable[[object], None]:
    """Prints a line per pair on stderr: long runs show where they are."""
    started = time.perf_counter()
    done = itertools.count(1)

    def report(_: object) -> None:
        minutes = (time.perf_counter() - started) / 60
        print(f"  {protocol}: {next(done)}/{total} pairs, {minutes:.2f} min", file=sys.stderr, flush=True)

    return report


def summary(name: str, results: list[PairResult], minutes: float, wall_minutes: float) -> dict[str, Any]:
    report = build_report(results)
    return {
        "protocol": name,
        "accuracy": report["accuracy"]["value"],
        "interval": [report["accuracy"]["low"], report["accuracy"]["high"]],
        "flip_rate": report["flip_rate"]["value"],
        "tie_rate": report["tie_rate"]["value"],
        "forced_rate": report["forced_rate"]["value"],
        "first_position_rate": report["first_position_rate"]["value"],
        "minutes": minutes,
        "wall_minutes": wall_minutes,
        "cache_hit_rate": report["speed"]["cache_hit_rate"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=256, help="reasoning budget per order for both and official")
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--subset-prefix", default="LLMBar/", help="pairs whose subset starts with this")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sample and the official protocol's coin")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    items = sample(args.data, args.subset_prefix, args.pairs, args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        cache = VerdictCache(Path(scratch) / "verdicts.sqlite3")
        judge = Judge(args.model, max_tokens=args.max_tokens, threads=args.threads, cache=cache)
        load_seconds = time.perf_counter() - started
        print(
            f"model {args.model.name} ({load_seconds:.1f} s to load, {args.threads or physical_cores()} threads) · "
            f"{args.pairs} pairs of {args.data.name} (subsets {args.subset_prefix}*, seed {args.seed}) · "
            f"budget {args.max_tokens} tokens per order (verdict-only: 0)",
            flush=True,
        )
        rows = []
        runs: dict[str, list[PairResult]] = {}
        for protocol in ("both", "official", "verdict-only"):
            started = time.perf_counter()
            report_progress = progress_printer(protocol, len(items))
            results, skipped = evaluate(judge, items, protocol=protocol, seed=args.seed, on_item=report_progress)
            wall = (time.perf_counter() - started) / 60
            runs[protocol] = results
            if skipped:
                print(f"{protocol}: {len(skipped)} pairs skipped ({skipped[0].reason})")
            if protocol == "official":
                assert all(o.cached for r in results for o in r.orders), "official should reuse every order of both"
                chosen = {r.id: official_order(r.id, args.seed) for r in results}
                minutes = sum(o.seconds for r in runs["both"] for o in r.orders if o.order == chosen.get(r.id)) / 60
            else:
                minutes = wall
            rows.append(summary(protocol, results, minutes, wall))
            print(f"{protocol} done in {wall:.2f} min", flush=True)

    def percent(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    print()
    header = ("protocol", "accuracy", "95% interval", "flip rate", "ties", "forced", "minutes")
    columns = zip(header, WIDTHS, strict=True)
    print("".join(f"{name:>{width}}" if width > 0 else f"{name:<{-width}}" for name, width in columns))
    for row in rows:
        low, high = row["interval"]
        interval = f"[{percent(low)}, {percent(high)}]"
        print(
            f"{row['protocol']:<14}{percent(row['accuracy']):>10}{interval:>18}{percent(row['flip_rate']):>11}"
            f"{percent(row['tie_rate']):>8}{percent(row['forced_rate']):>8}{row['minutes']:>9.2f}"
        )
    print("official minutes: the time both spent on the orders official picks (official itself ran from the cache)")


if __name__ == "__main__":
    main()
