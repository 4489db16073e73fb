"""Benchmark ``rmjudge serve``: requests per second and latency at 1, 4 and 16 concurrent clients, against
the same pairs judged by sequential ``rmjudge compare`` calls (one process, one model load each).

The server runs as its own process (``rmjudge serve --no-cache``), as users run it; clients are threads
posting one pair per request to ``/v1/judge``. Every level judges its own pairs (the shortest of
../shared/data, none repeated), verdict-only (``--max-tokens 0``) and with a budget of 64 tokens, in one
order per pair by default (``--order ab``: half the time; both orders cost each side alike). Prints
plain lines.

    python bench/bench_serve.py                 # Gemma 3 270M from .models/, about 10 minutes on 2 cores
    python bench/bench_serve.py --quick         # 1 and 16 clients, verdict-only, 2 compare calls
    python bench/bench_serve.py --order both --requests 16
    python bench/bench_serve.py --model .models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
GEMMA = ROOT / ".models" / "gemma-3-270m-q4_k_m.gguf"


def shortest_pairs(count: int) -> list[dict[str, str]]:
    """The ``count`` shortest pairs of the shared data files ({prompt, chosen, rejected}), as {question, a, b}."""
    records = [orjson.loads(line) for path in sorted(DATA.glob("*.jsonl")) for line in path.read_bytes().splitlines()]
    found = [{"question": r["prompt"], "a": r["chosen"], "b": r["rejected"]} for r in records]
    unique = {orjson.dumps(p): p for p in found}
    return sorted(unique.values(), key=lambda p: (len(p["question"] + p["a"] + p["b"]), p["question"]))[:count]


def post(port: int, pair: dict[str, str]) -> float:
    """One /v1/judge request; its latency in seconds."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    try:
        connection.request("POST", "/v1/judge", body=orjson.dumps(pair), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"/v1/judge answered {response.status}: {body[:300]!r}")
    finally:
        connection.close()
    return time.perf_counter() - started


@contextmanager
def server(model: str, max_tokens: int, order: str, threads: int | None) -> Iterator[int]:
    """``rmjudge serve`` on a free port; the port once it listens. Stopped with SIGTERM afterwards."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "rmjudge", "serve", "--model", model, "--max-tokens", str(max_tokens),
               "--order", order, "--port", str(port), "--no-cache",
               *(["--threads", str(threads)] if threads else [])]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "rmjudge serve:" in line and " on http" in line:
                break
        else:
            raise RuntimeError(f"the server did not start (exit {process.wait()})")
        yield port
    finally:
        process.terminate()
        process.wait(60)


def level(port: int, pairs: Sequence[dict[str, str]], clients: int) -> tuple[float, list[float]]:
    """Every pair posted by ``clients`` threads at once; (wall seconds, latencies)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda pair: post(port, pair), pairs))
    return time.perf_counter() - started, latencies


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def compare_calls(
    model: str, pairs: Sequence[dict[str, str]], max_tokens: int, order: str, threads: int | None
) -> list[float]:
    """Seconds of each sequential ``rmjudge compare`` process (model load included) on ``pairs``."""
    work = Path(tempfile.mkdtemp(prefix="rmjudge-bench-serve-"))
    seconds = []
    for index, pair in enumerate(pairs):
        a, b = work / f"{index}.a.txt", work / f"{index}.b.txt"
        a.write_text(pair["a"])
        b.write_text(pair["b"])
        command = [sys.executable, "-m", "rmjudge", "compare", str(a), str(b), "-q", pair["question"], "--model",
                   model, "--max-tokens", str(max_tokens), "--order", order, "--no-cache", "--json",
                   *(["--threads", str(threads)] if threads else [])]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(GEMMA), help="GGUF to judge with (default: Gemma 3 270M)")
    parser.add_argument("--requests", type=int, default=8, help="requests per level (at least the clients)")
    parser.add_argument("--order", default="ab", help="orders per pair: ab (default) or both")
    parser.add_argument("--compare-calls", type=int, default=3, help="sequential rmjudge compare calls per budget")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for llama.cpp")
    parser.add_argument("--quick", action="store_true", help="1 and 16 clients, verdict-only, 2 compare calls")
    args = parser.parse_args()
    os.environ["RMJUDGE_HOME"] = tempfile.mkdtemp(prefix="rmjudge-bench-home-")

    levels = (1, 16) if args.quick else (1, 4, 16)
    budgets = (0,) if args.quick else (0, 64)
    calls = 2 if args.quick else args.compare_calls
    sizes = [max(args.requests, clients) for clients in levels]
    starts = [sum(sizes[:number]) for number in range(len(levels))]
    pairs = shortest_pairs(sum(sizes) + calls + 1)
    print(f"model: {Path(args.model).name}; cores: {os.cpu_count()}; requests per level: at least {args.requests}, "
          f"one pair each; --order {args.order}; no verdict cache")  # fmt: skip
    for budget in budgets:
        print(f"\n--max-tokens {budget}")
        with server(args.model, budget, args.order, args.threads) as port:
            post(port, pairs[-1])  # warm up: the first request pays for lazy set-up
            for number, clients in enumerate(levels):
                chosen = pairs[starts[number] : starts[number] + sizes[number]]
                wall, latencies = level(port, chosen, clients)
                print(f"  serve, {clients:2d} clients: {len(chosen) / wall:6.2f} requests/s, "
                      f"p50 {statistics.median(latencies):6.2f} s, p95 {percentile(latencies, 0.95):6.2f} s, "
                      f"{wall:6.1f} s for {len(chosen)} pairs")  # fmt: skip
        seconds = compare_calls(args.model, pairs[-calls - 1 : -1], budget, args.order, args.threads)
        mean = statistics.mean(seconds)
        print(f"  sequential rmjudge compare: {1 / mean:6.2f} requests/s, {mean:6.2f} s per call "
              f"(model load included; {calls} calls)")  # fmt: skip


if __name__ == "__main__":
    main()
