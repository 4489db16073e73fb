"""rmjudge serve over real HTTP on 127.0.0.1: batching, OpenRLHF's shape, bad bodies, auth, backpressure,
graceful shutdown. Orchestration tests use a fake judge (no model); everything that judges also runs the
Gemma GGUF through the real engine."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from rmjudge.errors import ContextTooLongError, RmjudgeError, UsageError
from rmjudge.judge import Judge, Judgment, OrderJudgment
from rmjudge.prompts import Pair
from rmjudge.serve import openrlhf
from rmjudge.serve.server import build_server, check_bind
from rmjudge.verdict import Rationale

from .conftest import invoke_cli

# -- a client ----------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Client:
    url: str
    server: Any = None  # the uvicorn server, when it runs in this process

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        try:
            data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
            connection.request(method, path, body=data, headers=headers or {})
            response = connection.getresponse()
            content = response.read()
            headers = {name.lower(): value for name, value in response.getheaders()}
            return Answer(response.status, orjson.loads(content) if content else None, headers)
        finally:
            connection.close()

    def post(self, path: str, body: Any = None, **settings: Any) -> Answer:
        return self.request("POST", path, body, **settings)

    def get(self, path: str, **settings: Any) -> Answer:
        return self.request("GET", path, **settings)


@contextmanager
def running(judge: Any, **settings: Any) -> Iterator[Client]:
    """The server in a thread on a free port; always stopped (as on SIGTERM) and joined."""
    urls: list[str] = []
    server, sock = build_server(judge, port=0, announce=urls.append, **settings)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not urls and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert urls, "the server did not start"
        yield Client(urls[0].split(" on ")[1].split(" ")[0], server)
    finally:
        server.handle_exit(signal.SIGTERM, None)
        thread.join(60)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


# -- a fake judge for orchestration ------------------------------------------------------------


def fake_judgment(pair: Pair) -> Judgment:
    """A real Judgment whose probability says which pair it is for: len(a) / (len(a) + len(b))."""
    p = len(pair.a) / (len(pair.a) + len(pair.b))
    verdict = "A" if p >= 0.5 else "B"
    order = OrderJudgment(
        order="ab", sample=0, verdict=verdict, position_verdict=verdict, probability=max(p, 1 - p), probability_a=p,
        forced=True, rationale=Rationale(), tokens_in=len(pair.a) + len(pair.b), tokens_out=0, seconds=0.0,
        stopped_by="none", cached=False, completion="",
    )  # fmt: skip
    return Judgment(verdict, max(p, 1 - p), True, p, [order], {"model": {"file": "fake.gguf"}})


class FakeJudge:
    """``judge_many`` costs ``batch_seconds`` per call whatever its size (a batching engine, idealised);
    ``hold`` (an Event) keeps every call waiting until it is set; ``fail`` raises inside the engine."""

    order = "ab"

    def __init__(self, batch_seconds: float = 0.0, hold: threading.Event | None = None, fail: Exception | None = None):
        self.batch_seconds = batch_seconds
        self.hold = hold
        self.fail = fail
        self.batches: list[int] = []
        self.started = threading.Event()

    def meta(self) -> dict[str, Any]:
        return {"model": {"file": "fake.gguf"}}

    def check_fits(self, pair: Pair) -> None:
        if len(pair.a) + len(pair.b) > 10_000:
            raise ContextTooLongError("the pair is too long for the fake context", needed=1, available=0)

    def judge_many(self, pairs: Iterable[Pair]) -> Iterator[Judgment | RmjudgeError]:
        batch = list(pairs)
        self.batches.append(len(batch))
        self.started.set()
        if self.hold is not None:
            self.hold.wait(30)
        time.sleep(self.batch_seconds)
        if self.fail is not None:
            raise self.fail
        for pair in batch:
            try:
                self.check_fits(pair)
            except ContextTooLongError as error:
                yield error
                continue
            yield fake_judgment(pair)


def pair_body(i: int) -> dict[str, str]:
    return {"question": f"Question {i}?", "a": "a" * (i + 1), "b": "b" * (20 - i)}


def concurrently(count: int, call: Any) -> list[Any]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


# -- orchestration (fake judge) ----------------------------------------------------------------


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer() -> None:
    judge = FakeJudge(batch_seconds=0.5)
    with running(judge) as client:
        started = time.perf_counter()
        answers = concurrently(8, lambda i: client.post("/v1/judge", pair_body(i)))
        elapsed = time.perf_counter() - started
    assert [a.status for a in answers] == [200] * 8
    for i, answer in enumerate(answers):
        assert answer.body["probability_a"] == pytest.approx((i + 1) / 21)  # this request's own pair
    # Eight clients cost about one batch of eight, not eight batches.
    assert len(judge.batches) <= 3 and sum(judge.batches) == 8
    assert elapsed < 3 * 0.5


def test_a_list_of_pairs_answers_each_in_order_with_its_own_error() -> None:
    with running(FakeJudge()) as client:
        pairs = [pair_body(1), {"question": "q", "a": "x" * 6000, "b": "y" * 6000}, pair_body(5)]
        answer = client.post("/v1/judge", pairs)
    assert answer.status == 200
    first, too_long, last = answer.body
    assert first["probability_a"] == pytest.approx(2 / 21) and last["probability_a"] == pytest.approx(6 / 21)
    assert too_long == {"error": "the pair is too long for the fake context", "status": 413}


def test_beyond_the_queue_limit_503_with_retry_after() -> None:
    hold = threading.Event()
    judge = FakeJudge(hold=hold)
    with running(judge, queue_limit=2) as client, ThreadPoolExecutor(4) as pool:
        running_one = pool.submit(client.post, "/v1/judge", pair_body(0))
        assert judge.started.wait(10)  # the worker holds pair 0: the queue is empty again
        queued = pool.submit(client.post, "/v1/judge", [pair_body(1), pair_body(2)])
        deadline = time.monotonic() + 10
        while client.get("/health").body["queued"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = client.post("/v1/judge", pair_body(3))
        hold.set()
        assert running_one.result().status == 200 and queued.result().status == 200
    assert refused.status == 503
    assert "queue limit 2" in refused.body["error"]
    assert int(refused.headers["retry-after"]) >= 1


def test_engine_failure_is_a_503_or_502_with_the_reason() -> None:
    with running(FakeJudge(fail=RuntimeError("CUDA out of memory"))) as client:
        unexpected = client.post("/v1/judge", pair_body(1))
    with running(FakeJudge(fail=UsageError("no endpoint answered"))) as client:
        known = client.post("/v1/judge", pair_body(1))
        after = client.get("/health")  # the server keeps serving
    assert unexpected.status == 502 and "CUDA out of memory" in unexpected.body["error"]
    assert known.status == 503 and "no endpoint answered" in known.body["error"]
    assert after.status == 200


def test_graceful_stop_finishes_the_request_in_flight_and_refuses_new_ones() -> None:
    hold = threading.Event()
    judge = FakeJudge(hold=hold)
    with running(judge) as client, ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(client.post, "/v1/judge", pair_body(3))
        assert judge.started.wait(10)
        client.server.handle_exit(signal.SIGTERM, None)  # what SIGTERM does
        time.sleep(0.3)
        with pytest.raises(OSError):  # the listening socket is closed
            client.post("/v1/judge", pair_body(4))
        hold.set()
        answer = in_flight.result(30)
    assert answer.status == 200 and answer.body["probability_a"] == pytest.approx(4 / 21)


# -- bodies, auth (the real Gemma judge) -------------------------------------------------------


@pytest.fixture(scope="module")
def gemma_judge(gemma_path: Path) -> Judge:
    return Judge(model=gemma_path, max_tokens=0, order="ab")


@pytest.fixture
def gemma_server(gemma_judge: Judge) -> Iterator[Client]:
    with running(gemma_judge, max_body_bytes=256 * 1024, queue_limit=32) as client:
        yield client


@pytest.mark.model
@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/judge", b"{not json", 400, "not valid JSON"),
        ("/v1/judge", b"", 400, "the body is empty"),
        ("/v1/judge", b'"a string"', 422, "a pair"),
        ("/v1/judge", b'{"question": "q", "a": "x"}', 422, "b: Field required"),
        ("/v1/judge", b'{"question": "q", "a": 1, "b": "y"}', 422, "a: Input should be a valid string"),
        ("/v1/judge", b'{"q": "q", "a": "x", "b": "y"}', 422, "q: Extra inputs are not permitted"),
        ("/v1/judge", b'[{"a": "x", "b": "y"}, {"a": "x"}]', 422, "[1]: b: Field required"),
        ("/v1/judge", b"[]", 422, "the list of pairs is empty"),
        (
            "/v1/judge",
            b'{"conversation": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],'
            b' "a": "x", "b": "y"}',
            422,
            "must end with a user turn",
        ),
        (
            "/v1/judge",
            b'{"question": "q", "conversation": [{"role": "user", "content": "hi"}], "a": "x", "b": "y"}',
            422,
            "a question or a conversation, not both",
        ),
        ("/get_reward", b'{"query": ["p r"], "prompts": ["p", "q"]}', 422, "prompts has 2 entries for 1 queries"),
        (
            "/get_reward",
            b'{"query": ["hello"], "prompts": ["other"], "labels": ["ref"]}',
            422,
            "query[0] does not start with prompts[0]",
        ),
        ("/get_reward", b'{"query": ["p r"], "prompts": ["p"]}', 422, "no reference and is the only response"),
        ("/v1/rank", b'{"question": "q", "candidates": ["one"]}', 422, "candidates: List should have at least 2"),
    ],
)
def test_bad_bodies_get_a_4xx_that_says_what_is_wrong(
    gemma_server: Client, path: str, body: bytes, status: int, message: str
) -> None:
    answer = gemma_server.post(path, raw=body)
    assert answer.status == status, answer.body
    assert message in answer.body["error"]


@pytest.mark.model
def test_oversized_bodies_and_prompts_are_413(gemma_server: Client) -> None:
    big = gemma_server.post("/v1/judge", {"question": "q", "a": "x" * 300_000, "b": "y"})
    many = gemma_server.post("/v1/judge", [pair_body(1)] * 33)
    too_long = gemma_server.post("/v1/judge", {"question": "q", "a": "word " * 40_000, "b": "y"})  # Gemma: 32k
    assert big.status == 413 and "more than this server's limit of 262144" in big.body["error"]
    assert many.status == 413 and "33 pairs" in many.body["error"]
    assert too_long.status == 413 and "more than the model's context" in too_long.body["error"]


@pytest.mark.model
def test_unknown_routes_and_methods_answer_json(gemma_server: Client) -> None:
    missing = gemma_server.post("/v1/nothing", {})
    wrong_method = gemma_server.get("/v1/judge")
    assert missing.status == 404 and "/get_reward" in missing.body["error"]
    assert wrong_method.status == 405 and "POST" in wrong_method.body["error"]


@pytest.mark.model
def test_api_key_checked_and_never_logged(gemma_judge: Judge, caplog: pytest.LogCaptureFixture) -> None:
    key = "s3cret-key-for-the-test"
    with running(gemma_judge, api_key=key) as client:
        missing = client.get("/v1/models")
        wrong = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        right = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        in_query = client.post(f"/get_reward?api_key={key}", {"query": ["x"], "prompts": ["y"]})
        health = client.get("/health")
    assert missing.status == 401 and "missing API key" in missing.body["error"]
    assert wrong.status == 401 and "wrong API key" in wrong.body["error"]
    assert right.status == 200 and right.body["data"][0]["id"] == "gemma-3-270m-q4_k_m.gguf"
    assert in_query.status == 422  # past the key check: the body is what is wrong
    assert health.status == 200
    assert key not in caplog.text


def test_binding_beyond_loopback_needs_a_key() -> None:
    with pytest.raises(UsageError, match="--api-key"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "key")
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)


# -- judging (the real Gemma judge) ------------------------------------------------------------


def _prompt_tokens(judge: Judge, pair: Pair) -> int:
    return len(judge.engine.format_prompt(judge.prompt_messages(pair)).tokens)


@pytest.mark.model
def test_sixteen_concurrent_requests_each_get_their_own_judgment(
    gemma_judge: Judge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="rmjudge.serve")
    pairs = [Pair(a="yes " * (i + 1), b="no " * (16 - i), question=f"Is {i} even?") for i in range(16)]
    with running(gemma_judge) as client:
        answers = concurrently(
            16, lambda i: client.post("/v1/judge", {"question": pairs[i].question, "a": pairs[i].a, "b": pairs[i].b})
        )
        health = client.get("/health").body
    assert [a.status for a in answers] == [200] * 16
    for pair, answer in zip(pairs, answers):
        assert answer.body["orders"][0]["tokens_in"] == _prompt_tokens(gemma_judge, pair)  # this pair's prompt
    assert health["judged"] == 16 and health["batches"] < 16  # requests shared batches
    direct = gemma_judge.judge(pairs[5])
    assert answers[5].body["probability_a"] == pytest.approx(direct.probability_a, abs=0.02)
    assert answers[5].body["winner"] == direct.winner
    lines = [r.getMessage() for r in caplog.records if "/v1/judge" in r.getMessage()]
    assert len(lines) == 16 and all(" 200 pairs=1 " in line for line in lines)
    assert not any("yes yes" in line for line in lines)  # no texts in the log without --debug


@pytest.mark.model
def test_openrlhf_get_reward_with_and_without_reference(gemma_server: Client) -> None:
    prompt = "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
    responses = ["Paris.", "The capital of France is Paris.", ""]
    gold = "Paris is the capital of France."
    body = {
        "query": [prompt + r + "<end_of_turn>" for r in responses]
        + ["<bos>" + prompt + "Lyon<eos>", prompt + "Marseille"],
        "prompts": [prompt] * 5,
        "labels": [gold, orjson.dumps({"reference": gold}).decode(), "Paris", None, ""],
    }
    answer = gemma_server.post("/get_reward", body)
    assert answer.status == 200, answer.body
    rewards = answer.body["rewards"]
    assert len(rewards) == 5 and answer.body["scores"] == rewards
    assert all(0.0 <= r <= 1.0 for r in rewards)
    assert rewards[3] == pytest.approx(1.0 - rewards[4])  # the two without a reference, judged against each other
    logs = answer.body["extra_logs"]
    assert logs["rmjudge_with_reference"] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert logs["rmjudge_group_size"] == [2.0, 2.0, 1.0, 2.0, 2.0]
    # A response the judge cannot take (longer than Gemma's 32k context) fails the request, named.
    too_long = gemma_server.post(
        "/get_reward",
        {"query": [prompt + "Paris.", prompt + "word " * 40_000], "prompts": [prompt] * 2, "labels": [gold] * 2},
    )
    assert too_long.status == 413 and "query[1]" in too_long.body["error"], too_long.body
    assert "context" in too_long.body["error"]


@pytest.mark.model
def test_rank_and_rewards_routes(gemma_server: Client) -> None:
    ranked = gemma_server.post(
        "/v1/rank",
        {"question": "Say hi.", "candidates": ["Hi!", "Go away.", "Hello there."], "strategy": "round-robin"},
    )
    rewarded = gemma_server.post(
        "/v1/rewards", {"question": "Say hi.", "completions": ["Hi!", "Go away."], "reference": "Hello!"}
    )
    assert ranked.status == 200, ranked.body
    assert sorted(ranked.body["order"]) == [0, 1, 2] and len(ranked.body["comparisons"]) == 3
    assert rewarded.status == 200, rewarded.body
    assert len(rewarded.body["rewards"]) == 2 and all(0.0 <= r <= 1.0 for r in rewarded.body["rewards"])


# -- the OpenRLHF adapter, without a server ----------------------------------------------------


def test_openrlhf_responses_are_split_off_their_prompt() -> None:
    assert openrlhf.response_of("PROMPT answer<|im_end|>\n", "PROMPT ", 0) == "answer"
    assert openrlhf.response_of("<bos>PROMPT answer <eos><eos>", "PROMPT", 0) == "answer"
    with pytest.raises(RmjudgeError, match=r"query\[3\] does not start with prompts\[3\]"):
        openrlhf.response_of("something else", "PROMPT", 3)


def test_openrlhf_labels_carry_references() -> None:
    assert openrlhf.reference_of("Paris", 0) == "Paris"
    assert openrlhf.reference_of('{"reference": "Paris"}', 0) == "Paris"
    assert openrlhf.reference_of({"reference": "Paris"}, 0) == "Paris"
    assert openrlhf.reference_of(42, 0) == "42"
    assert openrlhf.reference_of("", 0) is None and openrlhf.reference_of(None, 0) is None
    assert openrlhf.reference_of("{not json", 0) == "{not json"
    with pytest.raises(RmjudgeError, match=r"labels\[1\] is an object without"):
        openrlhf.reference_of({"answer": "x"}, 1)


def test_openrlhf_lone_responses_without_reference_are_refused() -> None:
    openrlhf.check_judgeable(["p", "p", "q"], [None, None, "ref"])
    with pytest.raises(RmjudgeError, match=r"query\[2\] has no reference and is the only response"):
        openrlhf.check_judgeable(["p", "p", "q"], [None, None, None])


def test_openrlhf_answer_shape() -> None:
    answer = openrlhf.answer(["p", "p", "q"], [None, None, "ref"], [0.75, 0.25, 0.5])
    assert answer == {
        "rewards": [0.75, 0.25, 0.5],
        "scores": [0.75, 0.25, 0.5],
        "extra_logs": {"rmjudge_with_reference": [0.0, 0.0, 1.0], "rmjudge_group_size": [2.0, 2.0, 1.0]},
    }


# -- the command ------------------------------------------------------------------------------


def test_serve_without_the_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    result = invoke_cli("serve", "--model", "missing.gguf")
    assert result.returncode == 2
    assert "pip install 'rmjudge[serve]'" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_serve_beyond_loopback_without_a_key_is_refused_before_the_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RMJUDGE_API_KEY", raising=False)
    result = invoke_cli("serve", "--host", "0.0.0.0", "--model", "missing.gguf")
    assert result.returncode == 2
    assert "--host 0.0.0.0 listens beyond this machine: give --api-key" in result.stderr


def _listening(process: subprocess.Popen[str]) -> str:
    """The URL the server announces on stderr (the model loads first)."""
    assert process.stderr is not None
    for line in process.stderr:
        if "rmjudge serve:" in line and " on http" in line:
            return line.split(" on ")[1].split(" ")[0]
    raise AssertionError(f"the server ended without listening (exit {process.wait()})")


@pytest.mark.model
def test_sigterm_answers_the_request_in_flight_and_refuses_new_ones(gemma_path: Path) -> None:
    command = [sys.executable, "-m", "rmjudge", "serve", "--model", str(gemma_path), "--max-tokens", "0",
               "--order", "ab", "--no-cache", "--port", "0"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        client = Client(_listening(process))
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(client.post, "/v1/judge", [pair_body(1), pair_body(2), pair_body(3)])
            deadline = time.monotonic() + 120
            while client.get("/health").body["running"] == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            try:
                late: Answer | None = client.post("/v1/judge", pair_body(4))
            except OSError:  # refused: the listening socket is closed
                late = None
            answer = in_flight.result(300)
        assert late is None or late.status == 503
        assert answer.status == 200 and len(answer.body) == 3 and all("winner" in j for j in answer.body)
        assert process.wait(60) == 143  # the CLI's code for SIGTERM, after the requests in flight
        assert process.stderr is not None
        log = process.stderr.read()
        assert "POST /v1/judge 200 pairs=3" in log and "stopped" in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
