#!/usr/bin/env python3
"""Prefill rate: the llama engine's prompt evaluation against a bare low-level loop, interleaved.

    python bench/bench_prefill.py [--model .models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf] [--tokens 768]

Three ways to evaluate the same prompts (distinct, so nothing is shared), taking turns so that a
machine shared with other work slows each alike:
- bare: llama-cpp-python's low-level API, the model and context made once, 512-token batches;
- engine: ``LlamaEngine.run`` on verdict-only jobs (budget 0), one at a time, the model loaded once;
- load included: the engine built anew for each prompt, its weights loading on the first evaluation
  (what the first order's "prefill" of rmjudge 0.1 counted).
Prints tokens per second for each. Asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QWEN = ROOT / ".models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def prompts(engine: Any, count: int, length: int) -> list[list[int]]:
    """``count`` distinct token sequences of ``length`` from the README (no two share a prefix)."""
    tokens = engine.tokenize((ROOT / "README.md").read_text(), special=False)
    step = max(1, (len(tokens) - length) // count)
    return [tokens[i * step : i * step + length] for i in range(count)]


def bare(model_path: Path, threads: int, sequences: list[list[int]]) -> list[float]:
    import llama_cpp
    from llama_cpp import _internals

    model_params = llama_cpp.llama_model_default_params()
    model = _internals.LlamaModel(path_model=str(model_path), params=model_params, verbose=False)
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = 2048, 512, 512
    params.n_threads = params.n_threads_batch = threads
    context = _internals.LlamaContext(model=model, params=params, verbose=False)
    batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
    seconds = []
    for tokens in sequences:
        llama_cpp.llama_memory_clear(context.memory, True)
        started = time.perf_counter()
        for start in range(0, len(tokens), 512):
            batch.set_batch(batch=tokens[start : start + 512], n_past=start, logits_all=False)
            context.decode(batch)
        seconds.append(time.perf_counter() - started)
    return seconds


def verdict_only(sequence: list[int]) -> Any:
    from rmjudge.engines.base import AnswerFormat, Job, Prompt, Sampling

    answer = AnswerFormat("</answer>", "<answer>[[", ("A", "B"), lambda text: True, lambda text, read: "")
    return Job(Prompt("", tuple(sequence)), 0, Sampling(), answer)


def engine_runs(engine: Any, sequences: list[list[int]]) -> list[float]:
    seconds = []
    for sequence in sequences:
        started = time.perf_counter()
        list(engine.run([verdict_only(sequence)]))
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=QWEN)
    parser.add_argument("--tokens", type=int, default=768, help="prompt length")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL + 1)
    from rmjudge.engines.llama import LlamaEngine

    engine = LlamaEngine(args.model, parallel=1)
    sequences = prompts(engine, 3 * args.rounds, args.tokens)
    engine_runs(engine, sequences[:1])  # the weights load, not timed
    rates: dict[str, list[float]] = {"bare": [], "engine": [], "engine, load included": []}
    for round_ in range(args.rounds):
        bare_seq, engine_seq, fresh_seq = (sequences[3 * round_ + i] for i in range(3))
        rates["bare"] += [args.tokens / s for s in bare(args.model, engine.threads, [bare_seq])]
        rates["engine"] += [args.tokens / s for s in engine_runs(engine, [engine_seq])]
        fresh = LlamaEngine(args.model, parallel=1)
        started = time.perf_counter()
        list(fresh.run([verdict_only(fresh_seq)]))
        rates["engine, load included"].append(args.tokens / (time.perf_counter() - started))
        print(f"round {round_ + 1}: " + ", ".join(f"{name} {values[-1]:.1f}" for name, values in rates.items()))
    print(f"{args.model.name}, {args.tokens}-token prompts, {engine.threads} threads, tok/s (median of {args.rounds}):")
    for name, values in rates.items():
        print(f"  {name:<24}{sorted(values)[len(values) // 2]:>8.1f}")


if __name__ == "__main__":
    main()
