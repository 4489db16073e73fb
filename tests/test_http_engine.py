"""The HTTP engine against real servers on 127.0.0.1: llama-cpp-python's server running the Gemma GGUF,
compared with the in-process engine on the same file (the same prompts, byte for byte; the same greedy
outputs), two instances sharing the work, one killed mid-run. The fault paths are in test_http_faults.py."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from rmjudge.engines.base import AnswerFormat, Job, Output, Prompt, Sampling
from rmjudge.engines.http import HttpEngine, RetryPolicy
from rmjudge.prompts import Pair, load_template
from tests.conftest import SHARED
from tests.fakeserver import FakeServer

pytestmark = pytest.mark.model

# llama-cpp-python's server keeps the logits of every position (n_ctx x 262k floats for Gemma 3) and turns
# all of them into log-probabilities for each request that asks for some, in Python: its requests cost in
# proportion to prompt length x vocabulary. The tests that generate use a compact judging prompt.
SERVER_CONTEXT = 1536
POLICY = RetryPolicy(read_timeout=120.0, backoff=0.05, max_backoff=0.2, cooldown=0.5, max_set_asides=2)


def _not_in_open_quote(text: str) -> bool:
    return text.count("<quote_") <= text.count("</quote_")


def _appendix(text: str, read: bool) -> str | None:
    return None if read else ("\n\n" if text.strip() else "") + "<answer>[["


ANSWER = AnswerFormat(
    stop="</answer>", probe="<answer>[[", choices=("A", "B"), accept_stop=_not_in_open_quote, appendix=_appendix
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def llama_cpp_server(
    model: Path, context: int = SERVER_CONTEXT, threads: int = 2
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m llama_cpp.server`` on a free port of 127.0.0.1, until the block ends (always stopped)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model.resolve()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(context),
        "--n_threads",
        str(threads),
        "--verbose",
        "false",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"llama_cpp.server exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start in 180 s")
            time.sleep(0.3)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def gemma_server(gemma_path: Path) -> Iterator[str]:
    with llama_cpp_server(gemma_path) as (url, _):
        yield url


def real_pairs(count: int) -> list[Pair]:
    """Short labelled pairs from the shared data (the judge's RM-R1 prompt around real texts)."""
    path = SHARED / "data" / "llmbar.jsonl"
    if not path.exists():
        pytest.skip("../shared/data is missing")
    pairs = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if len(row["prompt"]) + len(row["chosen"]) + len(row["rejected"]) < 700:
            pairs.append(Pair(a=row["chosen"], b=row["rejected"], question=row["prompt"]))
        if len(pairs) == count:
            return pairs
    raise AssertionError("not enough short pairs")


def messages(pair: Pair, template: str = "instruct") -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in load_template(template).render(pair)]


COMPACT = {
    "system.j2": "You compare two answers to a question and say which is better.",
    "single_turn.j2": "Question: {{ question }}\n[A] {{ answer_a }}\n[B] {{ answer_b }}\n"
    "Think briefly, then write <answer>[[A]]</answer> or <answer>[[B]]</answer>.",
    "multi_turn.j2": "{{ conversation_1 }}\n{{ conversation_2 }}",
}


@pytest.fixture(scope="module")
def compact(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A short judging prompt (a --template directory): RM-R1's is ~900 tokens, too slow on this server."""
    directory = tmp_path_factory.mktemp("compact-template")
    for name, text in COMPACT.items():
        (directory / name).write_text(text)
    return str(directory)


# -- the in-process engine on the same file ---------------------------------------------------------


def in_process(path: Path) -> Any:
    """The in-process engine: rmjudge.engines.llama once the throughput work lands, else rmjudge.engine."""
    try:
        from rmjudge.engines.llama import LlamaEngine  # type: ignore[import-not-found]

        return LlamaEngine(path, parallel=1)
    except ImportError:
        from rmjudge.engine import LlamaEngine as OldEngine

        return OldEngine(path)


def in_process_prompt(engine: Any, chat: list[dict[str, str]]) -> Prompt:
    if hasattr(engine, "format_prompt"):
        prompt: Prompt = engine.format_prompt(chat)
        return prompt
    tokens = engine.chat_tokens(chat)
    text = (
        engine._formatter(messages=chat).prompt
        if engine._formatter
        else "\n\n".join(m["content"] for m in chat) + "\n\n"
    )
    return Prompt(text=text, tokens=tuple(tokens))


def in_process_outputs(engine: Any, jobs: Sequence[Job]) -> list[Output]:
    if hasattr(engine, "run"):
        return [output for _, output in sorted(engine.run(jobs), key=lambda item: item[0])]
    outputs = []
    for job in jobs:  # rmjudge.engine's API: generate, then the verdict after the appendix
        generation = engine.generate(
            list(job.prompt.tokens),
            max_tokens=job.max_tokens,
            sampling=job.sampling,
            stop=job.answer.stop,
            probe=job.answer.probe,
            choices=job.answer.choices,
        )
        probabilities = generation.choice_probabilities
        appendix = job.answer.appendix(generation.text, probabilities is not None)
        if appendix is not None:
            tokens = [*job.prompt.tokens, *generation.tokens, *engine.tokenize(appendix)]
            probabilities = engine.choice_probabilities(tokens, job.answer.choices)
        outputs.append(
            Output(
                text=generation.text,
                tokens=tuple(generation.tokens),
                stopped_by=generation.stopped_by,
                appendix=appendix,
                choice_probabilities=probabilities or {},
                prompt_tokens=generation.prompt_tokens,
                evaluated_prompt_tokens=generation.evaluated_prompt_tokens,
                seconds=generation.seconds,
            )
        )
    return outputs


# -- (a) the same prompts, the same outputs --------------------------------------------------------


def test_prompts_are_the_in_process_ones_byte_for_byte(gemma_server: str, gemma_path: Path) -> None:
    http = HttpEngine([gemma_server], policy=POLICY)
    local = in_process(gemma_path)
    local_format = local.info.chat_format if hasattr(local.info, "chat_format") else local.chat_format
    assert http.info.chat_format == local_format == "plain"  # Gemma 270M has no chat template
    for pair in real_pairs(8):
        for order in (pair, pair.swapped()):
            chat = messages(order)
            ours, theirs = http.format_prompt(chat), in_process_prompt(local, chat)
            assert ours.text.encode() == theirs.text.encode()
            assert ours.tokens == theirs.tokens


def test_greedy_outputs_are_the_in_process_ones(gemma_server: str, gemma_path: Path, compact: str) -> None:
    http = HttpEngine([gemma_server], policy=POLICY)
    local = in_process(gemma_path)
    jobs = [
        Job(prompt=http.format_prompt(messages(pair, compact)), max_tokens=12, sampling=Sampling(), answer=ANSWER)
        for pair in real_pairs(8)
    ]
    ours = dict(http.run(jobs))
    theirs = in_process_outputs(local, jobs)
    same = 0
    for index, expected in enumerate(theirs):
        got = ours[index]
        assert got.extra["endpoint"] == gemma_server
        if got.tokens != expected.tokens:
            # Greedy decoding may only part where two tokens tie within float noise: the server evaluates
            # in other batch sizes (its own n_batch, the prefix it kept from the previous request).
            assert logit_gap_where_they_part(gemma_path, jobs[index].prompt, got.tokens, expected.tokens) < 0.05
            continue
        same += 1
        assert (got.text, got.stopped_by, got.appendix) == (expected.text, expected.stopped_by, expected.appendix)
        # The verdict's probability within 0.01, for the same reason.
        assert got.choice_probabilities == pytest.approx(expected.choice_probabilities, abs=1e-2)
    assert same >= 6  # near-ties are rare: most outputs are the same token for token


def logit_gap_where_they_part(path: Path, prompt: Prompt, ours: Sequence[int], theirs: Sequence[int]) -> float:
    """How far apart the two tokens chosen where the outputs first differ are, in the in-process logits."""
    from llama_cpp import Llama

    part = next(i for i, (a, b) in enumerate(zip([*ours, -1], [*theirs, -2])) if a != b)
    model = Llama(model_path=str(path), n_ctx=2048, verbose=False)
    model.eval([*prompt.tokens, *theirs[:part]])
    logits = model.scores[model.n_tokens - 1]
    end = model.token_eos()  # an output that ends there chose the end token
    first, second = (ours[part] if part < len(ours) else end), (theirs[part] if part < len(theirs) else end)
    return float(abs(logits[first] - logits[second]))


def test_text_only_server_warns_once_per_run(gemma_server: str, compact: str) -> None:
    warnings: list[str] = []
    http = HttpEngine([gemma_server], policy=POLICY, warn=warnings.append)
    chat = messages(real_pairs(1)[0], compact)
    job = Job(prompt=http.format_prompt(chat), max_tokens=0, sampling=Sampling(), answer=ANSWER)
    list(http.run([job]))
    list(http.run([job]))
    assert len(warnings) == 1 and "text only" in warnings[0] and gemma_server in warnings[0]


def test_a_template_from_llama_server_props_renders_and_tokenizes_as_in_process(qwen_path: Path) -> None:
    """llama-server's path on a ChatML model: /props gives the GGUF's template, rendered here; /tokenize
    (backed by the GGUF's real vocabulary) gives the ids. Both equal the in-process engine's."""
    server = FakeServer(dialect="llama-server", vocab=qwen_path)
    try:
        http = HttpEngine([server.url], policy=POLICY)
        local = in_process(qwen_path)
        assert http.info.chat_format == "gguf"
        for pair in real_pairs(4):
            chat = messages(pair)
            ours, theirs = http.format_prompt(chat), in_process_prompt(local, chat)
            assert ours.text.encode() == theirs.text.encode() and ours.tokens == theirs.tokens
    finally:
        server.stop()


# -- (b) two instances ------------------------------------------------------------------------------


def test_two_instances_share_the_work_and_one_killed_mid_run_loses_nothing(
    gemma_server: str, gemma_path: Path, compact: str
) -> None:
    with llama_cpp_server(gemma_path) as (second, process):
        http = HttpEngine([gemma_server, second], concurrency=1, policy=POLICY)
        assert http.info.parallel == 2
        jobs = [
            Job(prompt=http.format_prompt(messages(order, compact)), max_tokens=4, sampling=Sampling(), answer=ANSWER)
            for pair in real_pairs(5)
            for order in (pair, pair.swapped())
        ]
        seen: dict[int, Output] = {}
        order: list[str] = []
        for index, output in http.run(jobs):
            assert index not in seen  # nothing twice
            seen[index] = output
            order.append(output.extra["endpoint"])
            if len(seen) == 4:
                assert set(order) == {gemma_server, second}  # both took work
                threading.Thread(target=process.kill).start()  # killed mid-run, with a request in flight
        assert sorted(seen) == list(range(len(jobs)))  # nothing lost
        assert all(o.choice_probabilities and o.stopped_by in ("stop", "eos", "length") for o in seen.values())
        assert order[5:].count(second) <= 1  # after the kill: the survivor (one answer may have been on its way)


# -- end to end: the judge and batch through HTTP --------------------------------------------------

needs_judge_many = pytest.mark.skipif(
    not hasattr(__import__("rmjudge.judge", fromlist=["Judge"]).Judge, "judge_many"),
    reason="Judge.judge_many and Judge(engine=...) come with the throughput work",
)


@needs_judge_many
def test_verdicts_through_http_are_the_in_process_verdicts(gemma_server: str, gemma_path: Path, compact: str) -> None:
    from rmjudge.judge import Judge

    pairs = real_pairs(8)
    settings: dict[str, Any] = {"template": compact, "max_tokens": 12, "order": "both", "sampling": Sampling()}
    remote = list(Judge(HttpEngine([gemma_server], policy=POLICY), **settings).judge_many(pairs))
    local = list(Judge(in_process(gemma_path), **settings).judge_many(pairs))
    same = 0
    for ours, theirs in zip(remote, local):
        assert not isinstance(ours, Exception) and not isinstance(theirs, Exception)
        if [o.completion for o in ours.orders] != [o.completion for o in theirs.orders]:
            continue  # parted at a float near-tie (see test_greedy_outputs_are_the_in_process_ones)
        same += 1
        assert ours.probability_a == pytest.approx(theirs.probability_a, abs=1e-2)
        if abs(theirs.probability_a - 0.5) > 0.05:  # a decision this close to even may fall either way
            assert ours.winner == theirs.winner and ours.consistent == theirs.consistent
        assert ours.meta["model"]["id"].startswith("llama-cpp-python:")  # the server's identity, not a file hash
    assert same >= 6


@needs_judge_many
def test_batch_over_two_endpoints_with_one_killed_loses_and_duplicates_no_line(
    gemma_server: str, gemma_path: Path, compact: str, tmp_path: Path
) -> None:
    from rmjudge.batch import run_batch
    from rmjudge.judge import Judge

    source = tmp_path / "pairs.jsonl"
    rows = [{"id": f"p{i}", "prompt": p.question, "chosen": p.a, "rejected": p.b} for i, p in enumerate(real_pairs(8))]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "verdicts.jsonl"
    with llama_cpp_server(gemma_path) as (second, process):
        engine = HttpEngine([gemma_server, second], concurrency=1, policy=POLICY)

        def kill_after_two_lines() -> None:
            while not output.exists() or output.read_text().count("\n") < 2:
                time.sleep(0.1)
            process.kill()

        threading.Thread(target=kill_after_two_lines, daemon=True).start()
        summary = run_batch(
            str(source), str(output), lambda: Judge(engine, template=compact, max_tokens=4), progress=False
        )
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["id"] for line in lines] == [row["id"] for row in rows]  # every line once, in input order
    assert all(line["rmjudge"]["winner"] in ("A", "B", "tie") for line in lines) and summary.failed == 0
    survivor = next(f for f in summary.endpoints if f.endpoint == gemma_server)  # per-endpoint figures
    assert survivor.requests > 0 and survivor.tokens > 0 and f"per endpoint: {gemma_server} " in summary.line()
