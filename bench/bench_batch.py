"""Benchmark ``rmjudge batch`` on real pairs from ../shared/data with a real GGUF. Prints plain lines.

1. Cached re-run: 1,000 pairs are judged once with ``--max-tokens 0`` (the verdict from the token
   probabilities, no reasoning: one prefill per order), which fills the real verdict cache; then the
   same batch runs again and every order is served from the cache. Target: the re-run under 2 s
   (model load reported apart). The whole CLI process is timed too.
2. Batch overhead: 20 pairs judged for real (no cache) with ``--max-tokens 64``; the engine's own
   time is the sum of the per-order generation seconds the Judge reports; the overhead is the rest
   of the batch's wall time (reading, rendering, tokenizing, JSON, writing). Target: under 5 %.

    python bench/bench_batch.py                       # both, Gemma 3 270M from .models/
    python bench/bench_batch.py --model .models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --skip-cached
    python bench/bench_batch.py --home /tmp/rmjudge-bench   # keep the filled cache between runs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
GEMMA = ROOT / ".models" / "gemma-3-270m-q4_k_m.gguf"


def shortest_pairs(count: int) -> list[bytes]:
    """The ``count`` shortest lines over every shared data file (fast to prefill), in a fixed order."""
    lines = [line for path in sorted(DATA.glob("*.jsonl")) for line in path.read_bytes().splitlines() if line.strip()]
    return sorted(lines, key=lambda line: (len(line), line))[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(GEMMA), help="GGUF to judge with (default: Gemma 3 270M)")
    parser.add_argument("--pairs", type=int, default=1000, help="pairs in the cached re-run")
    parser.add_argument("--overhead-pairs", type=int, default=20, help="pairs judged for the overhead figure")
    parser.add_argument("--max-tokens", type=int, default=64, help="reasoning budget for the overhead figure")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for llama.cpp")
    parser.add_argument("--home", default=None, help="RMJUDGE_HOME to use (kept: a second run needs no fill)")
    parser.add_argument("--skip-cached", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="rmjudge-bench-"))
    os.environ["RMJUDGE_HOME"] = str(home)  # before rmjudge reads it: the cache lives here
    from rmjudge.batch import run_batch
    from rmjudge.cache import VerdictCache
    from rmjudge.judge import Judge

    work = Path(tempfile.mkdtemp(prefix="rmjudge-bench-io-"))
    print(f"model: {Path(args.model).name}; RMJUDGE_HOME={home}; cores: {os.cpu_count()}")

    def load(max_tokens: int, cache: bool) -> tuple[Judge, float]:
        started = time.perf_counter()
        judge = Judge(args.model, max_tokens=max_tokens, threads=args.threads, cache=VerdictCache() if cache else None)
        return judge, time.perf_counter() - started

    if not args.skip_cached:
        source = work / "pairs.jsonl"
        source.write_bytes(b"\n".join(shortest_pairs(args.pairs)) + b"\n")
        judge, load_seconds = load(0, cache=True)
        print(f"model load: {load_seconds:.2f} s")
        fill = run_batch(str(source), str(work / "fill.jsonl"), lambda: judge, overwrite=True, progress=False)
        print(f"fill ({args.pairs} pairs, --max-tokens 0, both orders): {fill.seconds:.1f} s, "
              f"{fill.cached} pairs already cached, {fill.failed} failed")  # fmt: skip
        # Time the Judge's prompt formatting and tokenization apart: a cache hit should need none.
        tokenizing = [0.0]
        format_prompt = judge.engine.format_prompt

        def timed_format_prompt(messages: Any) -> Any:
            started = time.perf_counter()
            try:
                return format_prompt(messages)
            finally:
                tokenizing[0] += time.perf_counter() - started

        judge.engine.format_prompt = timed_format_prompt  # type: ignore[method-assign]
        rerun = run_batch(str(source), str(work / "rerun.jsonl"), lambda: judge, overwrite=True, progress=False)
        judge.engine.format_prompt = format_prompt  # type: ignore[method-assign]
        served = "every order from the cache" if rerun.cached == rerun.judged else f"only {rerun.cached} fully cached"
        verdict = "met" if rerun.seconds < 2 else "NOT met"
        print(
            f"cached re-run, in process ({rerun.judged} pairs, {served}): {rerun.seconds:.2f} s "
            f"({rerun.judged / rerun.seconds:.0f} pairs/s); target < 2 s: {verdict}"
        )
        print(
            f"  of which tokenizing prompts in the Judge: {tokenizing[0]:.2f} s; everything else "
            f"(reading, rendering, cache lookups, JSON, writing): {rerun.seconds - tokenizing[0]:.2f} s"
        )
        started = time.perf_counter()
        command = [sys.executable, "-m", "rmjudge", "batch", str(source), "-o", str(work / "cli.jsonl"), "--overwrite",
                   "--model", args.model, "--max-tokens", "0", "--quiet"]  # fmt: skip
        subprocess.run(command, check=False, env={**os.environ}, capture_output=True)
        print(f"cached re-run, whole CLI process (interpreter start, imports, model load included): "
              f"{time.perf_counter() - started:.2f} s")  # fmt: skip
        del judge

    if not args.skip_overhead:
        source = work / "real.jsonl"
        lines = (DATA / "llmbar.jsonl").read_bytes().splitlines()[: args.overhead_pairs]
        source.write_bytes(b"\n".join(lines) + b"\n")
        judge, load_seconds = load(args.max_tokens, cache=False)
        print(f"model load: {load_seconds:.2f} s (not part of the overhead)")
        summary = run_batch(str(source), str(work / "real-out.jsonl"), lambda: judge, overwrite=True, progress=False)
        batch_seconds = summary.seconds - summary.load_seconds
        overhead = batch_seconds - summary.engine_seconds
        print(f"{summary.judged} pairs from llmbar.jsonl, --max-tokens {args.max_tokens}, both orders, no cache")
        print(f"engine time (sum of per-order generation seconds): {summary.engine_seconds:.2f} s")
        print(f"batch wall time (model load excluded): {batch_seconds:.2f} s")
        print(f"batch overhead: {overhead:.3f} s = {overhead / summary.engine_seconds:.2%} of the engine time; "
              f"target < 5 %: {'met' if overhead / summary.engine_seconds < 0.05 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
