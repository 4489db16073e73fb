#!/usr/bin/env python3
"""Throughput of judging: rmjudge's llama engine at several --parallel and --speculative settings
against the naive loop (llama-cpp-python's ``create_chat_completion`` per order), in one run.

    python bench/bench_throughput.py            # 16 llmbar pairs, budget 128, the Qwen stand-in (~15 min here)
    python bench/bench_throughput.py --quick    # 2 pairs, budget 16: checks that everything runs

Every configuration runs in its own process (its peak RSS is its own): the model is loaded and warmed
up first (not timed), then both orders of every pair are judged greedily with the RM-R1 prompt.
Prints a table: pairs per minute, the ratio to the naive loop, prompt tokens evaluated per pair (the
sequential path, one order after the other keeping the evaluated prefix, is the baseline), drafts
accepted, agreement with --parallel 1 (identical tokens, identical verdicts), peak RSS against the
model file plus the KV cache plus 300 MB. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QWEN = ROOT / ".models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
DATA = ROOT.parent / "shared" / "data" / "llmbar.jsonl"
RSS_ROOM = 300 * 1024 * 1024
CHOICES = ("A", "B")


def load_pairs(count: int) -> list[Any]:
    from rmjudge.prompts import Pair

    pairs = []
    with DATA.open() as lines:
        for line in lines:
            record = json.loads(line)
            pairs.append(Pair(a=record["chosen"], b=record["rejected"], question=record["prompt"]))
            if len(pairs) == count:
                break
    return pairs


def order_messages(pairs: list[Any], family: str) -> list[list[dict[str, str]]]:
    """Both orders of every pair, rendered with RM-R1's prompt: ab, ba, ab, ba, ..."""
    from rmjudge.prompts import load_template

    template = load_template(family)
    return [
        [{"role": m.role, "content": m.content} for m in template.render(shown)]
        for pair in pairs
        for shown in (pair, pair.swapped())
    ]


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- the workers, one process each ----------------------------------------------------------------


class RecordingEngine:
    """An engine that hands everything to the real one and keeps each job's Output, for the figures
    the judgments do not carry (prompt tokens evaluated, drafts)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.info = engine.info
        self.outputs: list[tuple[Any, Any]] = []  # (job, output), in the order the jobs finished

    def identity(self) -> dict[str, Any]:
        return dict(self.engine.identity())

    def format_prompt(self, messages: Any) -> Any:
        return self.engine.format_prompt(messages)

    def run(self, jobs: Any) -> Iterator[tuple[int, Any]]:
        for index, output in self.engine.run(jobs):
            self.outputs.append((jobs[index], output))
            yield index, output


def run_engine(model: Path, pairs: int, max_tokens: int, parallel: int, speculative: int) -> dict[str, Any]:
    from rmjudge.engines.base import AnswerFormat, Job, Sampling
    from rmjudge.engines.llama import LlamaEngine
    from rmjudge.judge import Judge

    started = time.perf_counter()
    engine = RecordingEngine(LlamaEngine(model, parallel=parallel, speculative=speculative))
    judge = Judge(engine, max_tokens=max_tokens, sampling=Sampling(), cache=None)
    # Warm-up, not timed: the weights load on the first evaluation. A prompt without RM-R1's system
    # prompt, so that the timed run evaluates it once like any other batch.
    warm_up = engine.format_prompt([{"role": "user", "content": "Hello."}])
    answer = AnswerFormat("</answer>", "<answer>[[", ("A", "B"), lambda text: True, lambda text, read: "")
    list(engine.run([Job(warm_up, 0, Sampling(), answer)]))
    load_seconds = time.perf_counter() - started
    engine.outputs.clear()
    started = time.perf_counter()
    judgments = list(judge.judge_many(load_pairs(pairs)))
    seconds = time.perf_counter() - started
    by_prompt = {job.prompt.tokens: (job, output) for job, output in engine.outputs}
    orders = []
    for pair, judgment in zip(load_pairs(pairs), judgments):
        assert not isinstance(judgment, Exception), judgment
        for order in judgment.orders:
            prompt = engine.format_prompt(judge.prompt_messages(pair, order.order))
            job, output = by_prompt[prompt.tokens]
            orders.append(
                {
                    "text": output.text,
                    "verdict": order.verdict,
                    "tokens": list(output.tokens),
                    "prompt_tokens": output.prompt_tokens,
                    "evaluated": output.evaluated_prompt_tokens,
                    "drafted": output.extra.get("drafted", 0),
                    "accepted": output.extra.get("accepted", 0),
                    "prompt": list(job.prompt.tokens),
                }
            )
    return {
        "seconds": seconds,
        "load_seconds": load_seconds,
        "n_ctx": engine.engine.n_ctx,
        "kv_cache_bytes": engine.engine.n_ctx * (engine.engine._kv_bytes_per_token or 0),
        "rss": peak_rss(),
        "orders": orders,
    }


def run_naive(model: Path, pairs: int, max_tokens: int) -> dict[str, Any]:
    """What a user writes in twenty lines: Llama(...) once, create_chat_completion per order, greedy."""
    import llama_cpp

    from rmjudge.prompts import detect_family
    from rmjudge.system import physical_cores

    started = time.perf_counter()
    # The same threads as rmjudge (llama-cpp-python's default is half the logical cores), a context
    # that holds the longest prompt plus the budget; everything else as it comes.
    llm = llama_cpp.Llama(str(model), n_ctx=4096, n_threads=physical_cores(), verbose=False)
    family = detect_family(llm.metadata)
    llm.create_chat_completion([{"role": "user", "content": "Hello."}], max_tokens=1, temperature=0.0)
    load_seconds = time.perf_counter() - started
    orders = []
    started = time.perf_counter()
    for messages in order_messages(load_pairs(pairs), family):
        reply = llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0.0)  # type: ignore[arg-type]
        orders.append({"text": reply["choices"][0]["message"]["content"] or ""})  # type: ignore[index]
    return {"seconds": time.perf_counter() - started, "load_seconds": load_seconds, "rss": peak_rss(), "orders": orders}


# -- the parent: run every configuration, print the table ------------------------------------------


def worker(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", json.dumps(config), "--pairs", str(args.pairs)]
    command += ["--max-tokens", str(args.max_tokens), "--model", str(args.model)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"worker {config} failed:\n{result.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def naive_verdict(text: str) -> str | None:
    """The naive loop's verdict: RM-R1's answer markup in its completion, if it wrote one."""
    from rmjudge.verdict import parse_verdict

    return parse_verdict(text, reasoning=False).verdict


def sequential_evaluated(orders: list[dict[str, Any]]) -> int:
    """Prompt tokens rmjudge 0.1 evaluated: one order after the other, keeping the longest common prefix
    with what the previous order left in the context (its prompt, completion and appendix)."""
    from rmjudge.engines.llama.scheduler import common_prefix

    total, previous = 0, []
    for order in orders:
        prompt = order["prompt"]
        total += len(prompt) - min(common_prefix(previous, prompt), len(prompt) - 1)
        previous = prompt + order["tokens"]
    return total


def configurations(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    for parallel in args.parallel:
        for speculative in args.speculative:
            yield {"kind": "engine", "parallel": parallel, "speculative": speculative}


def report(args: argparse.Namespace, results: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    naive = next((r for c, r in results if c["kind"] == "naive"), None)
    base = next(r for c, r in results if c["kind"] == "engine" and c["parallel"] == 1 and c["speculative"] == 0)
    base_orders = base["orders"]
    model_size = args.model.stat().st_size
    print(f"model {args.model.name} ({model_size / 2**20:.0f} MiB), {args.pairs} llmbar pairs, both orders, "
          f"budget {args.max_tokens}, greedy; one process per row; load and warm-up not timed")  # fmt: skip
    print(f"sequential path (rmjudge 0.1): {sequential_evaluated(base_orders) / args.pairs:.0f} prompt tokens "
          f"evaluated per pair, of {sum(o['prompt_tokens'] for o in base_orders) / args.pairs:.0f}")  # fmt: skip
    header = f"{'configuration':<26}{'s':>8}{'pairs/min':>11}{'x naive':>9}{'prompt tok/pair':>17}"
    header += f"{'drafts ok':>11}{'same tokens':>13}{'same verdict':>14}{'peak RSS MiB':>14}{'RSS bound':>11}"
    print(header)
    for config, result in results:
        rate = args.pairs / result["seconds"] * 60
        ratio = f"{rate / (args.pairs / naive['seconds'] * 60):.2f}" if naive else "-"
        rss = f"{result['rss'] / 2**20:.0f}"
        if config["kind"] == "naive":
            print(f"{'naive create_chat_completion':<26}{result['seconds']:>8.1f}{rate:>11.2f}{ratio:>9}{'-':>17}"
                  f"{'-':>11}{'-':>13}{'-':>14}{rss:>14}{'-':>11}")  # fmt: skip
            continue
        orders = result["orders"]
        evaluated = sum(o["evaluated"] for o in orders) / args.pairs
        drafted, accepted = sum(o["drafted"] for o in orders), sum(o["accepted"] for o in orders)
        drafts = f"{accepted}/{drafted}" if drafted else "-"
        same_tokens = sum(o["tokens"] == b["tokens"] for o, b in zip(orders, base_orders))
        same_verdict = sum(o["verdict"] == b["verdict"] for o, b in zip(orders, base_orders))
        bound = model_size + result["kv_cache_bytes"] + RSS_ROOM
        name = f"rmjudge --parallel {config['parallel']}" + (
            f" --spec {config['speculative']}" if config["speculative"] else ""
        )
        print(f"{name:<26}{result['seconds']:>8.1f}{rate:>11.2f}{ratio:>9}{evaluated:>17.0f}{drafts:>11}"
              f"{f'{same_tokens}/{len(orders)}':>13}{f'{same_verdict}/{len(orders)}':>14}{rss:>14}"
              f"{'ok' if result['rss'] <= bound else 'OVER':>11}")  # fmt: skip
    if naive:
        generated = sum(n["text"] == b["text"] for n, b in zip(naive["orders"], base_orders))
        verdicts = [(naive_verdict(n["text"]), b["verdict"]) for n, b in zip(naive["orders"], base_orders)]
        written = [(n, b) for n, b in verdicts if n is not None]
        print(
            f"naive loop vs rmjudge --parallel 1: {generated}/{len(base_orders)} identical generated texts; "
            f"the naive loop wrote a verdict in {len(written)}/{len(base_orders)} orders "
            f"(rmjudge forces the rest), {sum(n == b for n, b in written)} of them rmjudge's"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=QWEN)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--parallel", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--speculative", type=lambda s: [int(x) for x in s.split(",")], default=[0, 4])
    parser.add_argument("--no-naive", action="store_true", help="skip the naive loop")
    parser.add_argument("--quick", action="store_true", help="2 pairs, budget 16, parallel 1 and 2")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        config = json.loads(args.worker)
        if config["kind"] == "naive":
            result = run_naive(args.model, args.pairs, args.max_tokens)
        else:
            result = run_engine(args.model, args.pairs, args.max_tokens, config["parallel"], config["speculative"])
        print(json.dumps(result))
        return
    if args.quick:
        args.pairs, args.max_tokens, args.parallel = 2, 16, [1, 2]
    configs = list(configurations(args))
    if not args.no_naive:
        configs.append({"kind": "naive"})
    results = []
    for config in configs:
        print(f"running {config} ...", file=sys.stderr, flush=True)
        results.append((config, worker(args, config)))
    report(args, results)


if __name__ == "__main__":
    main()
