#!/usr/bin/env python3
"""The HTTP engine against the in-process engine on the same GGUF, and one endpoint against two.

    python bench/bench_http.py [--model .models/gemma-3-270m-q4_k_m.gguf] [--pairs 6] [--max-tokens 32]

1. Seconds per pair (both orders, greedy): in-process, then through one llama-cpp-python server on
   127.0.0.1 with as many threads; the ratio is the cost of HTTP, JSON and the server's own loop.
2. Pairs per minute with one endpoint against two, each server with half the cores (one machine
   stands in for two: each endpoint gets its own core, as each would get its own GPU).

Prints figures (one run, ratios); asserts nothing. Starts and always stops its servers.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rmjudge.engines.base import Job, Sampling  # noqa: E402
from rmjudge.engines.http import HttpEngine  # noqa: E402
from tests.test_http_engine import (  # noqa: E402
    ANSWER,
    POLICY,
    in_process,
    in_process_outputs,
    llama_cpp_server,
    messages,
    real_pairs,
)


def cores() -> int:
    try:
        from rmjudge.system import physical_cores  # type: ignore[import-not-found]
    except ImportError:
        from rmjudge.engine import physical_cores
    return int(physical_cores())


def timed_run(engine: HttpEngine, jobs: list[Job]) -> float:
    started = time.perf_counter()
    for _ in engine.run(jobs):
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / ".models/gemma-3-270m-q4_k_m.gguf")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    threads = cores()
    pairs = real_pairs(args.pairs)
    chats = [messages(order) for pair in pairs for order in (pair, pair.swapped())]

    local = in_process(args.model)
    local_jobs = (
        [
            Job(prompt=local.format_prompt(chat), max_tokens=args.max_tokens, sampling=Sampling(), answer=ANSWER)
            for chat in chats
        ]
        if hasattr(local, "format_prompt")
        else None
    )

    with ExitStack() as stack:
        first, _ = stack.enter_context(llama_cpp_server(args.model, threads=threads))
        one = HttpEngine([first], policy=POLICY)
        jobs = [
            Job(prompt=one.format_prompt(chat), max_tokens=args.max_tokens, sampling=Sampling(), answer=ANSWER)
            for chat in chats
        ]
        in_process_outputs(local, local_jobs or jobs)  # warm: weights read, pages in memory
        started = time.perf_counter()
        in_process_outputs(local, local_jobs or jobs)
        local_seconds = time.perf_counter() - started
        timed_run(one, jobs[:2])  # warm
        http_seconds = timed_run(one, jobs)
        print(f"{args.model.name}, {len(pairs)} pairs x 2 orders, budget {args.max_tokens}, {threads} threads")
        print(f"  in-process          {local_seconds / len(pairs):6.2f} s/pair")
        print(
            f"  one server (HTTP)   {http_seconds / len(pairs):6.2f} s/pair   ratio {http_seconds / local_seconds:.2f}x"
        )

    half = max(1, threads // 2)
    with ExitStack() as stack:
        urls = [stack.enter_context(llama_cpp_server(args.model, threads=half))[0] for _ in range(2)]
        single = HttpEngine(urls[:1], policy=POLICY)
        double = HttpEngine(urls, policy=POLICY)
        timed_run(double, jobs[:4])  # warm both
        one_seconds = timed_run(single, jobs)
        two_seconds = timed_run(double, jobs)
        per_minute = [60 * len(pairs) / s for s in (one_seconds, two_seconds)]
        print(
            f"  {half} thread(s) per server: one endpoint {per_minute[0]:.1f} pairs/min, two endpoints "
            f"{per_minute[1]:.1f} pairs/min, ratio {per_minute[1] / per_minute[0]:.2f}x"
        )


if __name__ == "__main__":
    main()
