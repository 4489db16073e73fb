"""The HTTP routes: bodies read within a size limit, validated, judged through the batcher, answered as JSON.

Every answer is JSON. A bad request gets a 4xx whose ``error`` says what is wrong and what to do; a
busy or stopping server a 503 with ``Retry-After``; a failing engine a 503 (or 502 for an unexpected
failure inside it). Texts never reach the log unless the server runs with ``--debug``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rmjudge.errors import ContextTooLongError, InputError, RmjudgeError, UsageError
from rmjudge.prompts import Pair
from rmjudge.serve import openrlhf
from rmjudge.serve.batcher import Batcher, EngineFailure, QueuedJudge, QueueFull, Stopping
from rmjudge.serve.schemas import GetRewardBody, PairBody, RankBody, RewardsBody, describe

if TYPE_CHECKING:
    from rmjudge.judgment import Judgment

Body = TypeVar("Body", bound=BaseModel)
Result = TypeVar("Result")
Handler = Callable[["ServeState", Request, Any], Awaitable[Any]]

LOG = logging.getLogger("rmjudge.serve")
DEBUG_TEXT_LIMIT = 2000  # characters of a request body logged with --debug
STOPPING_RETRY_AFTER = 5


@dataclass
class ServeState:
    """What the routes share: the batcher, the judge's description and the server's limits."""

    batcher: Batcher
    meta: dict[str, Any]  # the judge's model, template, sampling and versions (Judge.meta())
    api_key: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_pairs: int = 256  # pairs (candidates, completions, queries) in one request
    threads: int = 16  # ranking and reward requests worked on at once (each in a thread)
    debug: bool = False
    draining: bool = False
    workers: ThreadPoolExecutor = field(init=False)
    thread_jobs: int = 0  # ranking and reward requests admitted: running, or waiting for a thread

    def __post_init__(self) -> None:
        self.workers = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="rmjudge-request")

    @property
    def model_name(self) -> str:
        model = self.meta.get("model", {})
        return str(model.get("file") or model.get("id") or model.get("gguf_name") or "rmjudge")


class Problem(Exception):
    """An answer other than 200: its status, a one-line message, and headers (Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def problem_of(error: BaseException) -> Problem | None:
    """The answer for an error; None for one that is a bug in rmjudge (a 500)."""
    if isinstance(error, Problem):
        return error
    if isinstance(error, QueueFull):
        return Problem(503, str(error), {"Retry-After": str(error.retry_after)})
    if isinstance(error, Stopping):
        message = "the server is shutting down: retry against a running one"
        return Problem(503, message, {"Retry-After": str(STOPPING_RETRY_AFTER), "Connection": "close"})
    if isinstance(error, ContextTooLongError):
        return Problem(413, str(error))
    if isinstance(error, (InputError, UsageError)):
        return Problem(422, str(error))
    if isinstance(error, EngineFailure):
        if isinstance(error.error, RmjudgeError):
            return Problem(503, f"the judge failed: {error}")
        return Problem(502, f"the judge's engine failed ({type(error.error).__name__}): {error}")
    if isinstance(error, RmjudgeError):
        return Problem(503, f"the judge failed: {error}")
    return None


def status_of(error: RmjudgeError) -> int:
    """The status a pair's own error would have as a whole answer (shown beside it in a list)."""
    problem = problem_of(error)
    return problem.status if problem else 500


# -- responses ---------------------------------------------------------------------------------


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content, status, headers, media_type="application/json")


def _error(problem: Problem) -> Response:
    return _json({"error": problem.message}, problem.status, problem.headers)


# -- reading a request -------------------------------------------------------------------------


def _check_key(request: Request, api_key: str | None) -> None:
    """Bearer token (or ``?api_key=``, for clients that send no headers, such as OpenRLHF), compared in
    constant time. Neither is ever logged."""
    if api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else request.query_params.get("api_key")
    challenge = {"WWW-Authenticate": "Bearer"}
    if not given:
        raise Problem(401, "missing API key: send the header 'Authorization: Bearer KEY'", challenge)
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        raise Problem(401, "wrong API key: send the key the server was started with", challenge)


def _too_large(size: str, limit: int) -> Problem:
    return Problem(
        413,
        f"the body is {size} bytes, more than this server's limit of {limit}: send fewer or shorter texts "
        "per request (or start the server with a larger --max-body-bytes)",
        {"Connection": "close"},
    )


async def _read_json(request: Request, state: ServeState) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > state.max_body_bytes:
            raise _too_large(declared, state.max_body_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > state.max_body_bytes:
            raise _too_large(f"over {state.max_body_bytes}", state.max_body_bytes)
        chunks.append(chunk)
    body = b"".join(chunks)
    if state.debug:
        request.state.body_text = body[:DEBUG_TEXT_LIMIT].decode("utf-8", "replace")
    if not body.strip():
        raise Problem(400, "the body is empty: send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise Problem(400, f"the body is not valid JSON: {error.msg} at {where}") from None


def _validated(model: type[Body], data: Any) -> Body:
    if not isinstance(data, dict):
        raise Problem(422, f"the body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise Problem(422, describe(error)) from None


def _pairs_of(data: Any) -> tuple[list[Pair], bool]:
    """The pairs of a /v1/judge body and whether it was a single pair (answered as one object)."""
    if isinstance(data, dict):
        return [_validated(PairBody, data).to_pair()], True
    if not isinstance(data, list):
        raise Problem(422, 'the body must be a pair {"question", "a", "b"} or a list of pairs')
    if not data:
        raise Problem(422, "the list of pairs is empty: send one or more pairs")
    pairs = []
    for index, item in enumerate(data):
        try:
            pairs.append(_validated(PairBody, item).to_pair())
        except Problem as problem:
            raise Problem(422, f"[{index}]: {problem.message}") from None
    return pairs, False


# -- judging -----------------------------------------------------------------------------------


def _admit(state: ServeState, request: Request, count: int, what: str) -> None:
    """Let a request of ``count`` pairs (candidates, ...) in, or refuse it: 413 beyond the per-request
    limit, 503 when the queue is full."""
    if count > state.max_pairs:
        limit = state.max_pairs
        raise Problem(413, f"{count} {what} in one request, more than this server's limit of {limit}: split it")
    request.state.pairs = count
    state.batcher.admit(count)


async def _judged(state: ServeState, pairs: Sequence[Pair]) -> list[Judgment | RmjudgeError]:
    return await asyncio.wrap_future(state.batcher.submit(pairs))


async def _in_thread(state: ServeState, function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    """Run a ranking or rewards call in a worker thread; its pairs still go through the batcher."""
    if state.thread_jobs >= state.threads * 2:
        raise QueueFull(
            f"the judge is busy: {state.thread_jobs} ranking and reward requests are in progress; retry later",
            state.batcher.retry_after(state.batcher.stats().queued + state.thread_jobs),
        )
    state.thread_jobs += 1
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(state.workers, partial(function, *args, **kwargs))
    finally:
        state.thread_jobs -= 1


def _judgment_or_error(outcome: Judgment | RmjudgeError) -> dict[str, Any]:
    if isinstance(outcome, RmjudgeError):
        return {"error": str(outcome), "status": status_of(outcome)}
    return outcome.to_dict()


async def judge_route(state: ServeState, request: Request, data: Any) -> Any:
    pairs, single = _pairs_of(data)
    _admit(state, request, len(pairs), "pairs")
    outcomes = await _judged(state, pairs)
    if single:
        if isinstance(outcomes[0], RmjudgeError):
            raise outcomes[0]
        return outcomes[0].to_dict()
    return [_judgment_or_error(outcome) for outcome in outcomes]


async def rank_route(state: ServeState, request: Request, data: Any) -> Any:
    body = _validated(RankBody, data)
    _admit(state, request, len(body.candidates), "candidates")
    question, conversation = body.request()
    from rmjudge.rank import rank

    ranking = await _in_thread(
        state,
        rank,
        QueuedJudge(state.batcher),
        question,
        body.candidates,
        strategy=body.strategy,
        reference=body.reference,
        seed=body.seed,
        names=body.names,
        conversation=conversation,
        max_comparisons=body.max_comparisons,
    )
    request.state.pairs = ranking.cost.comparisons
    return ranking.to_dict()


async def rewards_route(state: ServeState, request: Request, data: Any) -> Any:
    body = _validated(RewardsBody, data)
    _admit(state, request, len(body.completions), "completions")
    question, conversation = body.request()
    from rmjudge.rewards import rewards

    values = await _in_thread(
        state,
        rewards,
        QueuedJudge(state.batcher),
        question,
        body.completions,
        reference=body.reference,
        conversation=conversation,
    )
    return {"rewards": [float(value) for value in values]}


def _openrlhf_rewards(
    judge: QueuedJudge, prompts: list[str], responses: list[str], references: list[str | None]
) -> list[float]:
    """``trl_rewards`` (every group in one stream); a response it could not judge fails the request."""
    from rmjudge.rewards import trl_rewards

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = trl_rewards(judge, prompts, responses, references)
    missing = [index for index, value in enumerate(values) if value is None]
    if missing:
        detail = str(caught[-1].message).removeprefix("rmjudge: ") if caught else "it could not be judged"
        raise Problem(413, f"query[{missing[0]}] has no reward: {detail} (the completions are the queries, in order)")
    return [float(value) for value in values if value is not None]


async def get_reward_route(state: ServeState, request: Request, data: Any) -> Any:
    body = _validated(GetRewardBody, data)
    responses = [
        openrlhf.response_of(query, prompt, i) for i, (query, prompt) in enumerate(zip(body.query, body.prompts))
    ]
    labels = body.labels if body.labels is not None else [None] * len(body.query)
    references = [openrlhf.reference_of(label, index) for index, label in enumerate(labels)]
    openrlhf.check_judgeable(body.prompts, references)
    _admit(state, request, len(body.query), "queries")
    values = await _in_thread(state, _openrlhf_rewards, QueuedJudge(state.batcher), body.prompts, responses, references)
    return openrlhf.answer(body.prompts, references, values)


async def health_route(state: ServeState, request: Request, data: Any) -> Any:
    stats = state.batcher.stats()
    if state.draining:
        raise Problem(503, "the server is shutting down", {"Retry-After": str(STOPPING_RETRY_AFTER)})
    return {
        "status": "ok",
        "model": state.model_name,
        "queued": stats.queued,
        "running": stats.running,
        "batches": stats.batches,
        "judged": stats.judged,
    }


async def models_route(state: ServeState, request: Request, data: Any) -> Any:
    return {
        "object": "list",
        "data": [{"id": state.model_name, "object": "model", "owned_by": "rmjudge", **state.meta}],
    }


# -- wiring ------------------------------------------------------------------------------------


def _endpoint(
    handler: Handler, *, reads_body: bool = True, auth: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        state: ServeState = request.app.state.serve
        try:
            if state.draining and handler is not health_route:
                raise Stopping("the server is shutting down")
            if auth:
                _check_key(request, state.api_key)
            data = await _read_json(request, state) if reads_body else None
            return _json(await handler(state, request, data))
        except Exception as error:
            problem = problem_of(error)
            if problem is None:
                LOG.error(
                    "internal error on %s: %s: %s", request.url.path, type(error).__name__, error, exc_info=state.debug
                )
                return _json({"error": f"internal error in rmjudge ({type(error).__name__}): {error}"}, 500)
            return _error(problem)

    return endpoint


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        message = f"no route {request.url.path}: the routes are {', '.join(ROUTES)}"
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}: use {(error.headers or {}).get('Allow')}"
    else:
        message = str(error.detail)
    return _json({"error": message}, error.status_code, dict(error.headers or {}))


ROUTES = {
    "/v1/judge": (judge_route, "POST"),
    "/v1/rank": (rank_route, "POST"),
    "/v1/rewards": (rewards_route, "POST"),
    "/get_reward": (get_reward_route, "POST"),
    "/health": (health_route, "GET"),
    "/v1/models": (models_route, "GET"),
}


class RequestLog:
    """One line per request on stderr: method, route, status, pairs, seconds (and the body with --debug)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state = scope.setdefault("state", {})

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            line = f"{scope['method']} {scope['path']} {status} pairs={state.get('pairs', 0)} {seconds:.3f}s"
            if "body_text" in state:
                line += f" body={state['body_text']!r}"
            LOG.info(line)


def create_app(state: ServeState) -> Starlette:
    routes = [
        Route(path, _endpoint(handler, reads_body=method == "POST", auth=path != "/health"), methods=[method])
        for path, (handler, method) in ROUTES.items()
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.batcher.start()
        try:
            yield
        finally:  # uvicorn gets here once the requests in flight are answered
            state.draining = True
            await asyncio.to_thread(state.batcher.stop)
            state.workers.shutdown(wait=True)
            LOG.info("rmjudge serve: stopped; the requests in flight were answered")

    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error}, lifespan=lifespan)
    app.state.serve = state
    app.add_middleware(RequestLog)
    return app
