"""Judge orchestration with a scripted engine: orders, forcing, confidence, cache, context, how the
engine is built. Many pairs at once: tests/test_judge_many.py."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from rmjudge.cache import VerdictCache
from rmjudge.engines import EngineOptions
from rmjudge.errors import ContextTooLongError, UsageError
from rmjudge.judge import Judge
from rmjudge.models import ResolvedModel
from rmjudge.prompts import Pair

from .fake_engine import FakeEngine

EngineFactory = Callable[..., FakeEngine]
PAIR = Pair(a="Paris.", b="Lyon.", question="Capital of France?")


def prefers(text: str) -> Callable[[str], str]:
    """A scripted model that always prefers the response containing ``text``, wherever it is shown."""

    def script(prompt: str) -> str:
        a_part = prompt.split("[The Start of Chatbot A's Response]")[1].split("[The End of Chatbot A's Response]")[0]
        choice = "A" if text in a_part else "B"
        return f"<type>Chat</type>\n<eval>{choice} is right.</eval>\n<answer>[[{choice}]]</answer>"

    return script


def position_probability(text: str, p: float) -> Callable[[str], float]:
    """P(position A) = p when ``text`` is shown first, else 1 - p."""

    def probability(prompt: str) -> float:
        a_part = prompt.split("[The Start of Chatbot A's Response]")[1].split("[The End of Chatbot A's Response]")[0]
        return p if text in a_part else 1 - p

    return probability


def test_both_orders_agree_and_map_back(fake_engine_factory: EngineFactory) -> None:
    engine = fake_engine_factory(script=prefers("Paris"), probability_a=position_probability("Paris", 0.9))
    judgment = Judge(engine=engine, template="instruct").judge(PAIR)
    assert judgment.winner == "A" and judgment.consistent
    ab, ba = judgment.orders
    assert (ab.order, ab.position_verdict, ab.verdict) == ("ab", "A", "A")
    assert (ba.order, ba.position_verdict, ba.verdict) == ("ba", "B", "A")  # shown second, still the user's A
    assert ab.probability_a == pytest.approx(0.9) and ba.probability_a == pytest.approx(0.9)
    assert judgment.confidence == pytest.approx(0.9)
    assert not judgment.forced
    assert len(engine.generate_calls) == 2
    assert engine.generate_calls[1].index("Lyon") < engine.generate_calls[1].index("Paris")


def test_position_bias_gives_a_tie(fake_engine_factory: EngineFactory) -> None:
    always_first = "<eval>The first one.</eval><answer>[[A]]</answer>"
    engine = fake_engine_factory(script=lambda _: always_first, probability_a=0.7)
    judgment = Judge(engine=engine, template="instruct").judge(PAIR)
    assert judgment.winner == "tie" and not judgment.consistent
    assert [o.verdict for o in judgment.orders] == ["A", "B"]
    assert judgment.probability_a == pytest.approx(0.5)


def test_single_order(fake_engine_factory: EngineFactory) -> None:
    engine = fake_engine_factory(script=prefers("Lyon"), probability_a=0.8)
    judgment = Judge(engine=engine, template="instruct", order="ba").judge(PAIR)
    assert [o.order for o in judgment.orders] == ["ba"]
    # Lyon is the user's B, shown as Chatbot A in the ba order: the model answers A, the user reads B.
    assert (judgment.orders[0].position_verdict, judgment.winner) == ("A", "B")
    assert judgment.confidence == pytest.approx(0.8)


def test_no_answer_within_budget_is_forced(fake_engine_factory: EngineFactory) -> None:
    rambling = "<type>Chat</type>\n<eval>" + "and so on " * 100
    engine = fake_engine_factory(script=lambda _: rambling, probability_a=0.3)
    judgment = Judge(engine=engine, template="instruct", max_tokens=50, order="ab").judge(PAIR)
    order = judgment.orders[0]
    assert order.forced and order.stopped_by == "length" and order.tokens_out == 50
    assert order.verdict == "B" and order.probability == pytest.approx(0.7)
    # The verdict was read right after an appended "<answer>[[" at the end of the generated text.
    assert engine.probability_calls[0].endswith(rambling[:50] + "\n\n<answer>[[")
    assert order.completion.endswith("<answer>[[B]]</answer>")


def test_reasoning_family_forcing_closes_the_thinking(fake_engine_factory: EngineFactory) -> None:
    engine = fake_engine_factory(script=lambda _: "Let me think about A and B", probability_a=0.8)
    judgment = Judge(engine=engine, template="reasoning", order="ab").judge(PAIR)
    assert judgment.orders[0].forced and judgment.winner == "A"
    assert engine.probability_calls[0].endswith("Let me think about A and B\n</think>\n\n<answer>[[")
    assert judgment.orders[0].rationale.thinking == "Let me think about A and B"


def test_budget_zero_reads_the_verdict_without_reasoning(fake_engine_factory: EngineFactory) -> None:
    engine = fake_engine_factory(probability_a=0.6)
    judgment = Judge(engine=engine, template="instruct", max_tokens=0, order="ab").judge(PAIR)
    assert engine.generate_calls == []
    assert engine.probability_calls[0].endswith("<assistant><answer>[[")
    assert judgment.orders[0].forced and judgment.orders[0].stopped_by == "none"


def test_verdict_without_a_probability_reading_is_asked_again(fake_engine_factory: EngineFactory) -> None:
    engine = fake_engine_factory(script=lambda _: "<eval>B.</eval> Final: [[B]]", probability_a=0.1)
    judgment = Judge(engine=engine, template="instruct", order="ab").judge(PAIR)
    order = judgment.orders[0]
    assert not order.forced and order.verdict == "B" and order.probability == pytest.approx(0.9)


def test_cache_serves_repeats_and_swapped_pairs(fake_engine_factory: EngineFactory, tmp_path: Path) -> None:
    engine = fake_engine_factory(script=prefers("Paris"))
    # The scripted verdicts agree while the fixed P(Chatbot A) of 0.75 cancels out over the orders: agreement decides.
    judge = Judge(engine=engine, template="instruct", cache=VerdictCache(tmp_path / "v.sqlite3"), decide="agreement")
    first = judge.judge(PAIR)
    again = judge.judge(PAIR)
    assert len(engine.generate_calls) == 2
    assert all(o.cached for o in again.orders) and again.winner == first.winner
    swapped = judge.judge(PAIR.swapped())  # the same two prompts, in the other order
    assert len(engine.generate_calls) == 2 and swapped.winner == "B"
    assert (
        Judge(engine=engine, template="instruct", max_tokens=100, cache=judge.cache).judge(PAIR).orders[0].cached
        is False
    )


def test_too_long_prompt_says_by_how_much(fake_engine_factory: EngineFactory) -> None:
    engine = fake_engine_factory(context=3000)
    judge = Judge(engine=engine, template="instruct")
    with pytest.raises(ContextTooLongError) as error:
        judge.judge(Pair(a="x" * 2000, b="y", question="q"))
    assert error.value.excess > 0 and f"{error.value.excess} more than" in str(error.value)
    assert engine.generate_calls == []


def test_long_prompt_shrinks_the_budget_to_fit(fake_engine_factory: EngineFactory) -> None:
    rambling = "word " * 2000
    engine = fake_engine_factory(context=6000, script=lambda _: rambling)
    order = Judge(engine=engine, template="instruct", max_tokens=4096, order="ab").judge(PAIR).orders[0]
    assert order.forced and order.tokens_in + order.tokens_out + 32 == 6000


def test_metadata_records_what_reproduces_the_judgment(fake_engine_factory: EngineFactory) -> None:
    engine = fake_engine_factory(chat_format="gguf")
    data = Judge(engine=engine, template="instruct", max_tokens=77).judge(PAIR).to_dict()
    assert data["model"] == engine.identity() and data["model"]["file"] == "fake.gguf"
    assert data["template"]["id"] == "rm-r1-instruct" and len(data["template"]["sha256"]) == 64
    assert data["template"]["chat_format"] == "gguf"  # as the engine formats prompts
    assert data["sampling"] == {"temperature": 0.0, "top_p": 1.0, "seed": 0, "max_tokens": 77}
    assert set(data["versions"]) == {"rmjudge", "fake_engine"}
    assert "completion" not in data["orders"][0]
    assert "completion" in Judge(engine=engine, template="instruct").judge(PAIR).to_dict(raw=True)["orders"][0]


def test_the_model_identity_is_asked_once_and_only_when_needed(fake_engine_factory: EngineFactory) -> None:
    engine = fake_engine_factory()
    judge = Judge(engine=engine, template="instruct")
    assert engine.identity_calls == 0  # building a judge hashes nothing
    judge.judge(PAIR)
    judge.judge(PAIR.swapped())
    assert engine.identity_calls == 1


def test_without_an_engine_the_llama_engine_is_built_on_the_model(
    fake_engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    built: list[tuple[EngineOptions, str | None]] = []

    def build(options: EngineOptions, name: str | None = None) -> FakeEngine:
        built.append((options, name))
        return fake_engine_factory()

    monkeypatch.setattr("rmjudge.judge.build_engine", build)
    model = tmp_path / "judge.gguf"
    model.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0))  # a header with no tensors and no metadata
    Judge(model=str(model), parallel=3, threads=2, template="instruct")
    Judge(ResolvedModel(model, sha256="0" * 64), template="instruct")  # rmjudge 0.1's positional model
    [(options, name), (positional, _)] = built
    assert name is None and options.model is not None and options.model.path == model  # the default: llama
    assert (options.parallel, options.threads) == (3, 2)
    assert positional.model == ResolvedModel(model, sha256="0" * 64)
    with pytest.raises(UsageError):
        Judge(str(model), model=str(model))
    judge = Judge.from_options(EngineOptions(model=ResolvedModel(model)), "llama", template="instruct", order="ab")
    assert judge.order == "ab" and built[-1][1] == "llama"


def test_bad_options(fake_engine_factory: EngineFactory) -> None:
    with pytest.raises(UsageError):
        Judge(engine=fake_engine_factory(), order="abba")
    with pytest.raises(UsageError):
        Judge(engine=fake_engine_factory(), max_tokens=-1)


def test_family_is_detected_from_the_model(fake_engine_factory: EngineFactory) -> None:
    engine = fake_engine_factory(metadata={"general.name": "RM-R1-DeepSeek-Distilled-Qwen-7B"})
    judge = Judge(engine=engine)
    assert judge.template.family == "reasoning" and judge.max_tokens == 4096


def test_an_answer_end_inside_a_quote_does_not_stop_generation(fake_engine_factory: EngineFactory) -> None:
    quoting = "<eval>A wrote <quote_A>it ends with </answer> here</quote_A>.</eval>\n<answer>[[B]]</answer>"
    engine = fake_engine_factory(script=lambda _: quoting, probability_a=0.2)
    order = Judge(engine=engine, template="instruct", order="ab").judge(PAIR).orders[0]
    assert order.completion == quoting and order.stopped_by == "stop"
    assert order.verdict == "B" and not order.forced and engine.probability_calls == []


def test_a_bad_template_is_refused_before_the_engine_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(options: EngineOptions, name: str | None = None) -> FakeEngine:
        raise AssertionError("no engine may be built for a judge with a bad template")

    monkeypatch.setattr("rmjudge.judge.build_engine", build)
    with pytest.raises(UsageError, match="no-such-template"):
        Judge(model="any.gguf", template="no-such-template")
