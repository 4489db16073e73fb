"""``--samples K``: K reasoning traces per order, seeds seed + i, batched as separate jobs, decided from
all of them, each cached under its own seed."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from rmjudge.batch import run_batch
from rmjudge.cache import VerdictCache
from rmjudge.engines import Job, Output, Prompt, Sampling
from rmjudge.errors import UsageError
from rmjudge.judge import Judge, Judgment
from rmjudge.prompts import Pair

from .conftest import FakeEngine, invoke_cli
from .fake_engine import Reply

EngineFactory = Callable[..., FakeEngine]
PAIR = Pair(a="Paris.", b="Lyon.", question="Capital of France?")
WARM = Sampling(temperature=0.7, seed=10)


class SeedShowingEngine:
    """A scripted engine whose "model" sees each job's seed (as ``<seed N>`` after the prompt), so that
    traces can differ by seed as sampled ones do; it records every job it is given."""

    def __init__(self, inner: FakeEngine) -> None:
        self.inner, self.info, self.jobs = inner, inner.info, []  # type: list[Job]

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    def format_prompt(self, messages: Sequence[Mapping[str, str]]) -> Prompt:
        return self.inner.format_prompt(messages)

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Output]]:
        self.jobs.extend(jobs)
        shown = []
        for job in jobs:
            text = f"{job.prompt.text}<seed {job.sampling.seed}>"
            shown.append(replace(job, prompt=Prompt(text, tuple(ord(c) for c in text))))
        return self.inner.run(shown)


def paris_mostly(prompt: str) -> Reply:
    """Prefers Paris wherever it is shown, except with seed 12 in order ab (Paris first), where it
    prefers Lyon; P(the chosen position) 0.8."""
    first = prompt.split("[The Start of Chatbot A's Response]")[1].split("[The End of Chatbot A's Response]")[0]
    seed = int(re.findall(r"<seed (\d+)>", prompt)[-1])
    paris_first = "Paris" in first
    choice = ("A" if paris_first else "B") if seed != 12 or not paris_first else "B"
    probability_a = 0.8 if choice == "A" else 0.2
    return Reply(f"<eval>seed {seed}</eval>\n<answer>[[{choice}]]</answer>", probability_a=probability_a)


@pytest.fixture
def engine(fake_engine_factory: EngineFactory, tmp_path: Path) -> SeedShowingEngine:
    return SeedShowingEngine(fake_engine_factory(path=tmp_path / "model.gguf", script=paris_mostly))


def judge_with(engine: SeedShowingEngine, samples: int, cache: VerdictCache | None = None, **settings: Any) -> Judge:
    return Judge(engine, template="instruct", sampling=WARM, samples=samples, cache=cache, **settings)  # type: ignore[arg-type]


def test_k_jobs_per_order_with_seed_plus_i_decided_from_all(engine: SeedShowingEngine) -> None:
    judgment = judge_with(engine, 3).judge(PAIR)
    assert engine.inner.runs == [6]  # every trace of the pair batched in one engine run
    assert sorted(job.sampling.seed for job in engine.jobs) == [10, 10, 11, 11, 12, 12]
    assert {job.sampling.temperature for job in engine.jobs} == {0.7}
    assert [(o.order, o.sample, o.verdict) for o in judgment.orders] == [
        ("ab", 0, "A"), ("ab", 1, "A"), ("ab", 2, "B"), ("ba", 0, "A"), ("ba", 1, "A"), ("ba", 2, "A"),
    ]  # fmt: skip
    assert judgment.votes == {"A": 5, "B": 1} and not judgment.consistent
    assert judgment.winner == "A"  # the mean: (0.8 * 2 + 0.2 + 0.8 * 3) / 6
    assert judgment.probability_a == pytest.approx(4.2 / 6)
    # Under agreement, each order's majority: ab 2 to 1 for A, ba 3 to 0 for A.
    assert judge_with(engine, 3, decide="agreement").judge(PAIR).winner == "A"
    data = judgment.to_dict()
    assert [(o["order"], o["sample"], o["verdict"]) for o in data["orders"]][2] == ("ab", 2, "B")
    assert data["decision"] == {"rule": "probability", "tie_margin": 0.0, "samples": 3}
    assert data["sampling"]["seed"] == 10


def test_repeats_come_from_the_cache_under_each_seed(engine: SeedShowingEngine, tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "v.sqlite3")
    first = judge_with(engine, 3, cache).judge(PAIR)
    again = judge_with(engine, 3, cache).judge(PAIR)
    assert len(engine.jobs) == 6 and all(o.cached for o in again.orders)
    assert [o.completion for o in again.orders] == [o.completion for o in first.orders]
    more = judge_with(engine, 4, cache).judge(PAIR)  # only seed 13 is new, in each order
    assert len(engine.jobs) == 8 and [o.cached for o in more.orders] == [True, True, True, False] * 2
    one = judge_with(engine, 1, cache).judge(PAIR)  # sample 0 is the 1-sample trace
    assert len(engine.jobs) == 8 and [o.completion for o in one.orders] == [first.orders[0].completion,
                                                                           first.orders[3].completion]  # fmt: skip


def test_several_pairs_are_batched_together(engine: SeedShowingEngine) -> None:
    pairs = [PAIR, Pair(a="Lyon.", b="Paris.", question="Capital of France?")]
    outcomes = list(judge_with(engine, 2).judge_many(pairs))
    assert engine.inner.runs == [8]
    assert [o.winner for o in outcomes if isinstance(o, Judgment)] == ["A", "B"]


def test_samples_above_one_need_a_temperature(fake_engine_factory: EngineFactory, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--samples 2 needs --temperature above 0"):
        Judge(fake_engine_factory(), template="instruct", samples=2)
    (tmp_path / "a.txt").write_text("x")
    result = invoke_cli("compare", str(tmp_path / "a.txt"), str(tmp_path / "a.txt"), "--samples", "3")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "rmjudge: --samples 3 needs --temperature above 0 (greedy decoding gives the same trace every time): "
        "add e.g. --temperature 0.7"
    ]


def test_batch_records_each_sample_and_resumes_with_them(engine: SeedShowingEngine, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    rows = [{"id": n, "prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."} for n in range(3)]
    source.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows[:2]))
    for flat in (False, True):
        out = tmp_path / f"out-{flat}.jsonl"
        assert run_batch(str(source), str(out), lambda: judge_with(engine, 2), flat=flat).judged == 2
        line = orjson.loads(out.read_bytes().splitlines()[0])
        if flat:
            assert [name for name in line if name.endswith("_verdict")] == [
                "rmjudge_ab_verdict", "rmjudge_ab_1_verdict", "rmjudge_ba_verdict", "rmjudge_ba_1_verdict",
            ]  # fmt: skip
            assert line["rmjudge_decision_samples"] == 2 and line["rmjudge_seed"] == 10
        else:
            assert [(o["order"], o["sample"]) for o in line["rmjudge"]["orders"]] == [
                ("ab", 0), ("ab", 1), ("ba", 0), ("ba", 1),
            ]  # fmt: skip
            assert line["rmjudge"]["votes"] == {"A": 4, "B": 0}
        # One more line: resuming with the same samples continues; with others, it is refused.
        source.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        with pytest.raises(UsageError, match="judged with"):
            run_batch(str(source), str(out), lambda: judge_with(engine, 3), flat=flat, resume=True)
        assert run_batch(str(source), str(out), lambda: judge_with(engine, 2), flat=flat, resume=True).judged == 1
        source.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows[:2]))


# -- the real engine ------------------------------------------------------------------------------


@pytest.mark.model
def test_real_samples_are_separate_seeded_traces(gemma_path: Path, tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "v.sqlite3")
    settings: dict[str, Any] = {"template": "instruct", "max_tokens": 6, "cache": cache}
    # A hot temperature: this tiny model is otherwise sure enough of its next words to repeat them.
    hot = Sampling(temperature=2.5, seed=3)
    sampled = Judge(model=str(gemma_path), parallel=2, sampling=hot, samples=3, **settings)
    first = sampled.judge(PAIR)
    assert [(o.order, o.sample) for o in first.orders] == [(order, i) for order in ("ab", "ba") for i in range(3)]
    assert not any(o.cached for o in first.orders) and all(0 < o.tokens_out <= 6 for o in first.orders)
    assert sum(first.votes.values()) == 6
    assert first.winner == ("A" if first.probability_a > 0.5 else "B")
    completions = [o.completion for o in first.orders]
    assert len(set(completions)) > 1  # each trace drew with its own seed
    again = sampled.judge(PAIR)
    assert all(o.cached for o in again.orders) and [o.completion for o in again.orders] == completions
    one = Judge(sampled.engine, sampling=hot, samples=1, **settings).judge(PAIR)
    assert all(o.cached for o in one.orders)  # sample 0 is the trace a 1-sample run draws
    assert [o.completion for o in one.orders] == [completions[0], completions[3]]
