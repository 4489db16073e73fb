"""Judge.judge_many with a scripted engine that finishes jobs out of order: input order, errors in
place, the cache before any tokenizing, a bounded read-ahead, forced verdicts batched, and batch's
promises (Ctrl-C, --resume) with orders in flight. The real-GGUF check is at the end."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from rmjudge.batch import run_batch
from rmjudge.cache import VerdictCache
from rmjudge.errors import ContextTooLongError, ExitCode, InputError, ModelError, RmjudgeError
from rmjudge.judge import JOBS_PER_SLOT, Judge, Judgment, Request, judge_along
from rmjudge.prompts import Pair

from .fake_engine import FakeEngine, Reply

SHOWN_A = re.compile(r"\[The Start of Chatbot A's Response\]\n(.*?)\n\[The End of", re.DOTALL)


def shown_first(prompt: str) -> str:
    found = SHOWN_A.search(prompt)
    assert found is not None
    return found.group(1)


def prefers_good(prompt: str) -> Reply:
    """Prefers the text with "good" in it; "slow N" in the text shown first makes the job take N steps."""
    first = shown_first(prompt)
    choice = "A" if "good" in first else "B"
    slow = re.search(r"slow (\d+)", first)
    text = f"<type>Chat</type>\n<eval>{choice} is good.</eval>\n<answer>[[{choice}]]</answer>"
    return Reply(text, steps=int(slow.group(1)) if slow else None)


def probability_good(prompt: str) -> float:
    return 0.9 if "good" in shown_first(prompt) else 0.2


def pair(n: int, *, slow: int | None = None, good_first: bool = True) -> Pair:
    good, poor = f"good answer {n}" + (f" slow {slow}" if slow else ""), f"poor answer {n}"
    return Pair(a=good, b=poor, question=f"Question {n}?") if good_first else Pair(a=poor, b=good, question=f"Q{n}?")


def engine(**options: Any) -> FakeEngine:
    return FakeEngine(**{"script": prefers_good, "probability_a": probability_good, **options})


def without_seconds(judgment: dict[str, Any]) -> dict[str, Any]:
    return {**judgment, "orders": [{**order, "seconds": None} for order in judgment["orders"]]}


def counting(pairs: list[Pair], pulled: list[int]) -> Iterator[Pair]:
    for p in pairs:
        pulled[0] += 1
        yield p


# -- order and timing of the yields ---------------------------------------------------------------


def test_yields_in_input_order_while_the_engine_finishes_out_of_order() -> None:
    fake = engine(parallel=4)
    # The first pair is slow: its orders finish after every other pair's.
    pairs = [pair(0, slow=400), *(pair(n, good_first=n % 2 == 0) for n in range(1, 6))]
    finished_at_yield = []
    outcomes = []
    for outcome in Judge(fake, template="instruct").judge_many(pairs):
        finished_at_yield.append(fake.finished)
        outcomes.append(outcome)
    assert all(isinstance(o, Judgment) for o in outcomes)
    assert [o.winner for o in outcomes if isinstance(o, Judgment)] == ["A", "B", "A", "B", "A", "B"]
    assert fake.runs == [12] and fake.most_active == 4
    # Nothing could be handed back before the slow pair finished, and it finished last.
    assert finished_at_yield == [12] * 6


def test_each_pair_comes_as_soon_as_it_and_those_before_it_are_done() -> None:
    fake = engine(parallel=2)
    pairs = [pair(0), pair(1, slow=300), pair(2)]
    stream = Judge(fake, template="instruct").judge_many(pairs)
    first = next(stream)
    assert isinstance(first, Judgment) and fake.finished == 2  # pair 1 and 2 are still being decoded
    assert fake.steps < 300
    assert [isinstance(o, Judgment) for o in stream] == [True, True]


def test_a_pair_s_own_error_comes_in_its_place_and_never_reaches_the_engine() -> None:
    fake = engine(parallel=2, context=5000)
    too_long = Pair(a="good " * 1000, b="poor", question="Long?")
    outcomes = list(Judge(fake, template="instruct").judge_many([pair(0), too_long, pair(2)]))
    assert isinstance(outcomes[0], Judgment) and isinstance(outcomes[2], Judgment)
    assert isinstance(outcomes[1], ContextTooLongError) and "more than the model's context" in str(outcomes[1])
    assert len(fake.generate_calls) == 4 and not any("good good" in call for call in fake.generate_calls)


def test_judge_is_judge_many_of_one_pair() -> None:
    one, many = engine(), engine()
    single = Judge(one, template="instruct").judge(pair(3, good_first=False))
    [streamed] = Judge(many, template="instruct").judge_many([pair(3, good_first=False)])
    assert isinstance(streamed, Judgment)
    assert without_seconds(single.to_dict(raw=True)) == without_seconds(streamed.to_dict(raw=True))
    assert one.runs == many.runs == [2]  # both orders in one run
    assert one.abandoned == 0  # judge() reads the stream to its end: the engine's run ends normally
    with pytest.raises(ContextTooLongError):
        Judge(engine(context=5000), template="instruct").judge(Pair(a="x" * 5000, b="y"))


def test_each_request_may_carry_its_own_orders() -> None:
    fake = engine()
    requests: list[Request] = [(pair(0), ("ba",)), pair(1), (pair(2), ["ab"])]
    outcomes = list(Judge(fake, template="instruct").judge_many(requests))
    assert [[o.order for o in j.orders] for j in outcomes if isinstance(j, Judgment)] == [["ba"], ["ab", "ba"], ["ab"]]
    assert fake.runs == [4]


def test_stopping_early_stops_the_engine_run() -> None:
    fake = engine(parallel=2)
    stream = Judge(fake, template="instruct").judge_many([pair(n) for n in range(6)])
    next(stream)
    stream.close()  # a consumer that stops reading (--strict, an error of its own)
    assert fake.abandoned > 0 and fake.finished < 12


def test_an_engine_error_stops_the_run_after_the_pairs_already_done() -> None:
    def failing(fake: FakeEngine) -> BaseException | None:
        return ModelError("the model went away") if fake.finished == 4 else None

    fake = engine(raise_when=failing)
    stream = Judge(fake, template="instruct").judge_many([pair(n) for n in range(4)])
    assert [type(next(stream)), type(next(stream))] == [Judgment, Judgment]
    with pytest.raises(ModelError):
        next(stream)


# -- the cache and the read-ahead -----------------------------------------------------------------


def test_cache_hits_need_neither_tokenizing_nor_the_engine(tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "v.sqlite3")
    pairs = [pair(n, good_first=n % 3 == 0) for n in range(5)]
    first = engine(parallel=2)
    judged = list(Judge(first, template="instruct", cache=cache).judge_many(pairs))
    again = engine(parallel=2)
    hits = list(Judge(again, template="instruct", cache=cache).judge_many(pairs))
    assert again.format_calls == 0 and again.runs == [] and again.identity_calls == 1
    assert all(isinstance(j, Judgment) and all(o.cached for o in j.orders) for j in hits)
    assert [j.to_dict()["winner"] for j in hits if isinstance(j, Judgment)] == [
        j.winner for j in judged if isinstance(j, Judgment)
    ]
    # Another model is another key: nothing served from the first one's verdicts.
    other = engine(parallel=2, model_name="other")
    list(Judge(other, template="instruct", cache=cache).judge_many(pairs[:1]))
    assert other.runs == [2]


def test_a_cache_hit_ahead_of_the_engine_is_handed_back_at_once(tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "v.sqlite3")
    Judge(engine(), template="instruct", cache=cache).judge(pair(0))
    fake = engine()
    stream = Judge(fake, template="instruct", cache=cache).judge_many([pair(0), pair(1), pair(2)])
    hit = next(stream)
    assert isinstance(hit, Judgment) and hit.orders[0].cached and fake.runs == []
    assert len(list(stream)) == 2 and fake.runs == [4]


def test_a_long_lazy_input_is_read_a_window_ahead_only() -> None:
    parallel = 2
    window = parallel * JOBS_PER_SLOT  # jobs: both orders of window / 2 pairs
    fake = engine(parallel=parallel)
    pulled = [0]
    pairs = [pair(n) for n in range(1000)]
    ahead = []
    for done, _ in enumerate(Judge(fake, template="instruct").judge_many(counting(pairs, pulled)), start=1):
        ahead.append(pulled[0] - done)
    assert pulled[0] == 1000 and len(ahead) == 1000
    # At most a window of pairs in hand, and the reading thread's one or two beyond it.
    assert max(ahead) <= window // 2 + 2
    assert ahead[0] <= window // 2 + 1  # the first pair came back before the rest of the input was read
    assert max(fake.runs) == window and sum(fake.runs) == 2000 and fake.most_active == parallel


def test_a_long_stream_of_cache_hits_is_not_read_ahead(tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "v.sqlite3")
    pairs = [pair(n) for n in range(40)]
    list(Judge(engine(parallel=4), template="instruct", cache=cache).judge_many(pairs))
    pulled = [0]
    fake = engine(parallel=4)
    for done, _ in enumerate(Judge(fake, template="instruct", cache=cache).judge_many(counting(pairs, pulled)), 1):
        assert pulled[0] <= done + 2  # the reading thread's one or two ahead
    assert fake.runs == []


# -- a slow input ------------------------------------------------------------------------------------


def input_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "rmjudge-input"]


def test_a_pair_is_judged_while_the_input_waits_for_the_next() -> None:
    """A pipe fed a line at a time: the first pair's judgment comes before the input gives the second."""
    handed_back = threading.Event()

    def slow_input() -> Iterator[Pair]:
        yield pair(0)
        assert handed_back.wait(timeout=60), "the first pair was held back until more input came"
        yield pair(1)

    fake = engine(parallel=4)
    stream = Judge(fake, template="instruct").judge_many(slow_input())
    first = next(stream)
    handed_back.set()
    assert isinstance(first, Judgment) and fake.runs == [2]
    assert [isinstance(o, Judgment) for o in stream] == [True] and fake.runs == [2, 2]
    assert input_threads() == []  # the reading thread ended with the stream


def test_an_item_passed_through_is_handed_back_while_the_input_waits() -> None:
    gate = threading.Event()

    def slow_input() -> Iterator[Pair | str]:
        yield "broken line"  # before anything is judged: no judge is built for it
        yield pair(1)
        yield "another broken line"
        assert gate.wait(timeout=60), "the lines read were held back until more input came"
        yield pair(3)

    seen = []
    for item, outcome in judge_along(slow_input(), lambda i: i if isinstance(i, Pair) else None, make_judge):
        seen.append((item if isinstance(item, str) else "pair", type(outcome).__name__))
        if len(seen) == 3:
            gate.set()
    assert seen == [
        ("broken line", "NoneType"),
        ("pair", "Judgment"),
        ("another broken line", "NoneType"),
        ("pair", "Judgment"),
    ]


def test_an_error_request_is_handed_back_while_the_input_waits() -> None:
    """An error the caller already has (main's RmjudgeError request) comes in its place without more input."""
    gate = threading.Event()

    def slow_input() -> Iterator[Request]:
        yield pair(0)
        yield InputError("line 2: not valid JSON")
        assert gate.wait(timeout=60), "the error was held back until more input came"
        yield pair(2)

    stream = Judge(engine(parallel=2), template="instruct").judge_many(slow_input())
    first, second = next(stream), next(stream)
    gate.set()
    assert isinstance(first, Judgment) and isinstance(second, InputError) and "line 2" in str(second)
    assert [type(o) for o in stream] == [Judgment]


@pytest.mark.parametrize("given", ["generator", "list"])
def test_an_input_that_fails_is_raised_after_the_pairs_before_it(given: str) -> None:
    def failing_input() -> Iterator[Pair]:
        yield from (pair(n) for n in range(3))
        raise InputError("the input broke off")

    fake = engine(parallel=4)
    pairs: Iterable[Pair] = failing_input()
    if given == "list":  # a sequence is read with no thread: the same promise
        pairs = ListFailingAfter([pair(n) for n in range(3)])
    stream = Judge(fake, template="instruct").judge_many(pairs)
    assert [isinstance(next(stream), Judgment) for _ in range(3)] == [True] * 3
    with pytest.raises(InputError, match="broke off"):
        next(stream)
    assert sum(fake.runs) == 6 and input_threads() == []


class ListFailingAfter(list[Pair]):
    """A sequence whose iteration fails after its items (as a lazily loaded data set might)."""

    def __iter__(self) -> Iterator[Pair]:
        yield from super().__iter__()
        raise InputError("the input broke off")


def test_stopping_early_ends_the_reading_thread_even_while_it_waits_on_the_input() -> None:
    release = threading.Event()

    def endless_input() -> Iterator[Pair]:
        yield pair(0)
        release.wait(timeout=60)  # a pipe with nothing more to say
        yield pair(1)

    stream = Judge(engine(parallel=2), template="instruct").judge_many(endless_input())
    assert isinstance(next(stream), Judgment)
    stream.close()  # the consumer stops (--strict, Ctrl-C): it is not held up by the input
    [reader] = input_threads()
    assert reader.daemon  # never keeps the process from exiting
    release.set()  # the input gives its next item: the stopped thread hands nothing over and ends
    reader.join(timeout=10)
    assert input_threads() == []


def make_judge() -> Judge:
    return Judge(engine(parallel=2), template="instruct")


# -- forced verdicts ------------------------------------------------------------------------------


def test_forced_verdicts_are_read_by_the_engine_in_the_same_run() -> None:
    def rambles_on_odd(prompt: str) -> str:
        if "answer 1" in prompt or "answer 3" in prompt:
            return "<type>Chat</type>\n<eval>" + "and so on " * 30
        return prefers_good(prompt).text

    fake = engine(script=rambles_on_odd, parallel=4)
    outcomes = list(Judge(fake, template="instruct", max_tokens=100).judge_many([pair(n) for n in range(4)]))
    judgments = [o for o in outcomes if isinstance(o, Judgment)]
    assert [j.forced for j in judgments] == [False, True, False, True]
    assert fake.runs == [8]  # one run: the forced readings came with the rest
    assert len(fake.probability_calls) == 4 and all(c.endswith("\n\n<answer>[[") for c in fake.probability_calls)
    forced = judgments[1].orders[0]
    assert forced.stopped_by == "length" and forced.tokens_out == 100
    assert forced.completion.endswith("\n\n<answer>[[A]]</answer>") and forced.verdict == "A"


def test_budget_zero_reads_every_verdict_in_one_run() -> None:
    fake = engine(parallel=3)
    outcomes = list(Judge(fake, template="reasoning", max_tokens=0).judge_many([pair(n) for n in range(3)]))
    assert fake.generate_calls == [] and fake.runs == [6]
    assert len(fake.probability_calls) == 6 and all(
        c.endswith("\n</think>\n\n<answer>[[") for c in fake.probability_calls
    )
    assert all(isinstance(o, Judgment) and o.winner == "A" and o.forced for o in outcomes)


# -- judge_along: items that are not judged pass through in place ---------------------------------


def test_judge_along_keeps_passed_through_items_in_place_and_loads_no_judge_for_none() -> None:
    loads = []

    def load() -> Judge:
        loads.append(1)
        return Judge(engine(parallel=2), template="instruct")

    items: list[Pair | str] = ["skip 0", pair(1), "skip 2", "skip 3", pair(4), "skip 5"]
    seen = list(judge_along(items, lambda item: item if isinstance(item, Pair) else None, load))
    assert [item for item, _ in seen] == items
    assert [type(outcome).__name__ for _, outcome in seen] == ["NoneType", "Judgment", "NoneType"] * 2
    assert loads == [1]
    assert list(judge_along(["a", "b"], lambda _: None, load)) == [("a", None), ("b", None)] and loads == [1]


# -- batch with orders in flight ------------------------------------------------------------------


def batch_rows(count: int) -> list[dict[str, Any]]:
    """Pairs whose orders take very different times: a real engine's finishing order is as mixed."""
    rows = []
    for n in range(1, count + 1):
        good = f"good answer {n}" + (f" slow {40 + 13 * (n % 5)}" if n % 3 == 0 else "")
        chosen, rejected = (good, f"poor answer {n}") if n % 2 else (f"poor answer {n}", good)
        rows.append({"id": f"p{n}", "prompt": f"Question {n}?", "chosen": chosen, "rejected": rejected})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "a torn last line"
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("interrupt_after", [3, 11, 20])
def test_ctrl_c_and_resume_with_orders_in_flight_lose_and_duplicate_nothing(
    tmp_path: Path, interrupt_after: int
) -> None:
    rows = batch_rows(14)
    source, out = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    cache = VerdictCache(tmp_path / "v.sqlite3")

    def ctrl_c(fake: FakeEngine) -> BaseException | None:
        return KeyboardInterrupt() if fake.finished >= interrupt_after else None

    first_engine = engine(parallel=4, raise_when=ctrl_c)
    judge = Judge(first_engine, template="instruct", cache=cache)
    first = run_batch(str(source), str(out), lambda: judge, progress=False)
    assert first.interrupted and first.exit_code == ExitCode.INTERRUPTED
    written = read_lines(out)
    assert [row["id"] for row in written] == [row["id"] for row in rows[: len(written)]]
    assert first.judged == len(written) < len(rows)
    assert first_engine.abandoned > 0  # orders were in flight when Ctrl-C came

    second_engine = engine(parallel=4)
    second = run_batch(
        str(source),
        str(out),
        lambda: Judge(second_engine, template="instruct", cache=cache),
        resume=True,
        progress=False,
    )
    assert (second.resumed, second.judged, second.exit_code) == (len(written), len(rows) - len(written), ExitCode.OK)
    final = read_lines(out)
    assert [row["id"] for row in final] == [row["id"] for row in rows]  # every line once, in input order
    assert final[: len(written)] == written
    assert [row["rmjudge"]["winner"] for row in final] == ["A" if n % 2 else "B" for n in range(1, 15)]
    # Orders finished before Ctrl-C but not yet written were kept in the cache, not judged again.
    judged_again = second_engine.finished
    resumed_orders = 2 * (len(rows) - len(written))
    assert judged_again == resumed_orders - (first_engine.finished - 2 * len(written))


def test_batch_writes_a_line_as_soon_as_it_and_those_before_it_are_done(tmp_path: Path) -> None:
    rows = batch_rows(6)
    rows[3]["chosen"] += " slow 500"  # p4 holds up p5 and p6
    source, out = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    lines_at_finish: dict[int, int] = {}

    def watch(fake: FakeEngine) -> None:
        lines_at_finish.setdefault(fake.finished, len(out.read_bytes().splitlines()) if out.exists() else 0)
        return None

    fake = engine(parallel=4, raise_when=watch)
    summary = run_batch(str(source), str(out), lambda: Judge(fake, template="instruct"), progress=False)
    assert summary.judged == 6 and [row["id"] for row in read_lines(out)] == [f"p{n}" for n in range(1, 7)]
    # When 7 orders were done (p1-p3 and one more), p1-p3 were on disk, flushed, while p4 still decoded.
    assert lines_at_finish[7] == 3


def test_batch_error_lines_keep_their_place_among_orders_in_flight(tmp_path: Path) -> None:
    rows: list[Any] = batch_rows(5)
    rows[2] = {"id": "long", "prompt": "Long?", "chosen": "good " * 2000, "rejected": "poor"}
    source, out = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    fake = engine(parallel=4, context=4000)
    summary = run_batch(str(source), str(out), lambda: Judge(fake, template="instruct"), progress=False)
    written = read_lines(out)
    assert [row["id"] for row in written] == ["p1", "p2", "long", "p4", "p5"]
    assert written[2]["rmjudge"]["exit_code"] == ExitCode.CONTEXT and (summary.judged, summary.failed) == (4, 1)


# -- a real GGUF --------------------------------------------------------------------------------------

REAL_PAIRS = [
    Pair(question="What is the capital of France?", a="Paris.", b="Lyon."),
    Pair(question="Name a prime number larger than ten.", a="Nine.", b="Eleven."),
    Pair(question="How many legs does a spider have?", a="Eight.", b="Six."),
    Pair(question="What colour is a clear daytime sky?", a="Green.", b="Blue."),
    Pair(question="What is 7 times 6?", a="42.", b="36."),
    Pair(question="Which planet is closest to the sun?", a="Venus.", b="Mercury."),
    Pair(question="What is the boiling point of water at sea level in Celsius?", a="100 degrees.", b="90 degrees."),
    Pair(question="Who wrote Hamlet?", a="Charles Dickens.", b="William Shakespeare."),
]
REAL_BUDGET = 16


class InterruptingEngine:
    """A real engine whose run raises KeyboardInterrupt after ``after`` outputs, as a Ctrl-C landing in
    the decode loop would, with the other orders in flight."""

    def __init__(self, engine: Any, after: int) -> None:
        self.engine, self.info, self.after, self.outputs = engine, engine.info, after, 0

    def identity(self) -> dict[str, Any]:
        return dict(self.engine.identity())

    def format_prompt(self, messages: Any) -> Any:
        return self.engine.format_prompt(messages)

    def run(self, jobs: Any) -> Iterator[Any]:
        outputs = self.engine.run(jobs)
        try:
            for output in outputs:
                if self.outputs == self.after:
                    raise KeyboardInterrupt
                self.outputs += 1
                yield output
        finally:
            outputs.close()


def judgments(outcomes: Iterable[Judgment | RmjudgeError]) -> list[Judgment]:
    found = list(outcomes)
    assert all(isinstance(o, Judgment) for o in found), found
    return [o for o in found if isinstance(o, Judgment)]


def verdicts(outcomes: list[Judgment]) -> list[list[str]]:
    return [[order.position_verdict for order in o.orders] for o in outcomes]


@pytest.mark.model
def test_real_parallel_4_gives_the_verdicts_of_parallel_1(gemma_path: Path) -> None:
    options: dict[str, Any] = {"template": "instruct", "max_tokens": REAL_BUDGET}
    one = judgments(Judge(model=str(gemma_path), parallel=1, **options).judge_many(REAL_PAIRS))
    four_judge = Judge(model=str(gemma_path), parallel=4, **options)
    assert four_judge.engine.info.parallel == 4
    four = judgments(four_judge.judge_many(REAL_PAIRS))
    assert verdicts(four) == verdicts(one)
    # Batched arithmetic moves the readings a little (measured: at most 0.047 over these 16 orders, and 2 of
    # the 16 completions differ in a token); the prompts are the same tokens.
    for sequential, batched in zip(one, four):
        for a, b in zip(sequential.orders, batched.orders):
            assert b.probability_a == pytest.approx(a.probability_a, abs=0.1)
            assert b.tokens_in == a.tokens_in


@pytest.mark.model
def test_real_interrupt_inside_the_engine_and_resume_lose_and_duplicate_nothing(
    gemma_path: Path, tmp_path: Path
) -> None:
    from rmjudge.judge import load_engine

    real = load_engine(gemma_path, parallel=4)
    rows = [{"id": f"r{n}", "prompt": p.question, "chosen": p.a, "rejected": p.b} for n, p in enumerate(REAL_PAIRS, 1)]
    rows = rows[:4]
    source, out = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    cache = VerdictCache(tmp_path / "v.sqlite3")
    options: dict[str, Any] = {"template": "instruct", "max_tokens": 8, "cache": cache}

    interrupting = InterruptingEngine(real, after=3)
    first = run_batch(str(source), str(out), lambda: Judge(interrupting, **options), progress=False)
    assert first.interrupted and interrupting.outputs == 3
    written = read_lines(out) if out.read_bytes() else []
    assert [row["id"] for row in written] == [row["id"] for row in rows[: len(written)]] and len(written) <= 1

    second = run_batch(str(source), str(out), lambda: Judge(real, **options), resume=True, progress=False)
    assert (second.resumed, second.judged, second.exit_code) == (len(written), 4 - len(written), ExitCode.OK)
    final = read_lines(out)
    assert [row["id"] for row in final] == [row["id"] for row in rows] and final[: len(written)] == written
    # The orders finished before the interrupt but not yet written came back from the cache.
    cached = sum(order["cached"] for row in final[len(written) :] for order in row["rmjudge"]["orders"])
    assert cached == 3 - 2 * len(written)
    orders = [order for row in final for order in row["rmjudge"]["orders"]]
    assert len(orders) == 8 and all(order["stopped_by"] != "none" and order["tokens_out"] > 0 for order in orders)
