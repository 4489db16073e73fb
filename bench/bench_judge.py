#!/usr/bin/env python3
"""Time one judgment (both orders at once) of the example pair: load, prompt evaluation, decoding.

    python bench/bench_judge.py [--model .models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf] [--max-tokens 256]
                                [--parallel 2] [--speculative 0]

Prints figures; asserts nothing. Runs the llama engine through the judge (no verdict cache).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rmjudge.engines.base import Sampling
from rmjudge.engines.llama import LlamaEngine
from rmjudge.judge import Judge
from rmjudge.prompts import Pair

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_throughput import RecordingEngine  # a sibling script, not a package

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / ".models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--parallel", type=int, default=2, help="sequences at once (2: both orders together)")
    parser.add_argument("--speculative", type=int, default=0, help="prompt-lookup draft length (0: off)")
    args = parser.parse_args()

    started = time.perf_counter()
    llama = LlamaEngine(args.model, parallel=args.parallel, speculative=args.speculative)
    engine = RecordingEngine(llama)
    load_seconds = time.perf_counter() - started
    judge = Judge(engine, max_tokens=args.max_tokens, sampling=Sampling())
    pair = Pair(
        a=(EXAMPLES / "a.txt").read_text(),
        b=(EXAMPLES / "b.txt").read_text(),
        question=(EXAMPLES / "question.txt").read_text(),
    )
    print(
        f"model {args.model.name}: vocabulary loaded in {load_seconds:.2f} s (the weights load on the first "
        f"evaluation, counted in the first prompt's time); threads {llama.threads}, gpu layers {llama.gpu_layers}, "
        f"parallel {args.parallel}, speculative {args.speculative}"
    )
    started = time.perf_counter()
    judgment = judge.judge(pair)
    total = time.perf_counter() - started
    for _, output in engine.outputs:
        evaluated = output.evaluated_prompt_tokens
        decode_seconds = output.seconds - output.prompt_seconds
        prefill_rate = evaluated / output.prompt_seconds if output.prompt_seconds else 0.0
        decode_rate = len(output.tokens) / decode_seconds if decode_seconds else 0.0
        drafts = f", drafts {output.extra['accepted']}/{output.extra['drafted']} kept" if args.speculative else ""
        print(
            f"slot {output.extra['slot']}: prompt {output.prompt_tokens} tokens, {evaluated} evaluated, ready after "
            f"{output.prompt_seconds:.2f} s ({prefill_rate:.1f} tok/s); generated {len(output.tokens)} tokens in "
            f"{decode_seconds:.2f} s ({decode_rate:.1f} tok/s, sharing each step){drafts}; stopped by "
            f"{output.stopped_by}; appendix {output.appendix!r}"
        )
    for order in judgment.orders:
        print(f"order {order.order}: verdict {order.verdict} p={order.probability:.3f} forced={order.forced}")
    print(f"judgment: winner {judgment.winner}, confidence {judgment.confidence:.3f}, {total:.2f} s for both orders")


if __name__ == "__main__":
    main()
