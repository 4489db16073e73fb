"""Talking to a set of endpoints: one kept HTTP client, retries with backoff, endpoints set aside.

Every request goes through ``Endpoints.request``: it picks the endpoint with the fewest requests in
flight (up to each one's concurrency), and retries what a retry can fix (refused or reset
connections, timeouts, 429, 5xx, a body that is not JSON) with backoff and jitter, on another
endpoint where there is one. An endpoint that fails ``failures_to_set_aside`` times in a row is set
aside for a cooldown, then takes one request at a time until one succeeds (and is described again
first: a server restarted with another model is caught). One set aside ``max_set_asides`` times
without a success in between is given up; when every endpoint is given up, ``NoEndpointError``.

The API key travels only in the client's Authorization header: never in a message, a repr or a log.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from rmjudge.errors import ModelError

T = TypeVar("T")


class ServerAnswerError(ModelError):
    """A server answered, but not with what rmjudge needs (no logprobs, missing fields, another model)."""


class NoEndpointError(ModelError):
    """Every endpoint failed until it was given up; finished work is kept, --resume goes on."""


class RunStopped(Exception):
    """The run this request belonged to was abandoned (an error elsewhere, Ctrl-C): start nothing new."""


class RetriableError(Exception):
    """A failure another try (later, or elsewhere) may not have: connection, timeout, 429, 5xx, garbage."""


@dataclass(frozen=True)
class RetryPolicy:
    connect_timeout: float = 10.0
    read_timeout: float = 900.0  # a long reasoning trace on a busy server takes minutes
    backoff: float = 0.5  # seconds before the first retry; doubles per retry of the same request
    max_backoff: float = 8.0
    failures_to_set_aside: int = 3  # consecutive failures
    cooldown: float = 5.0  # seconds set aside the first time; doubles each time after
    # Set aside this often without a success in between: given up (5: about 75 s of cooldowns, long
    # enough for a server to restart and load a 7B model).
    max_set_asides: int = 5


@dataclass(eq=False)
class Endpoint:
    """One server, as the user named it, with what the pool knows of its health."""

    url: str  # as given (shown in messages and per-endpoint figures)
    base: str  # scheme://host:port[/prefix], without a trailing /v1
    concurrency: int = 1
    in_flight: int = 0
    failures: int = 0  # consecutive
    set_asides: int = 0  # times set aside since the last success
    set_aside_until: float = 0.0
    ready: bool = False  # described (dialect, model, fingerprint) since it was last set aside
    last_error: str = ""
    completed: int = 0  # requests answered
    generated: int = 0  # tokens generated for those requests
    facts: Any = field(default=None, repr=False)  # what describing it found (dialects.ServerFacts)


def base_url(url: str) -> str:
    """``http://h:8000/v1/`` and ``http://h:8000`` name the same server: the OpenAI routes sit under /v1."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return url


class Endpoints:
    """The endpoints of one engine, shared by every thread that sends requests."""

    def __init__(
        self,
        urls: Iterable[str],
        *,
        api_key: str | None,
        policy: RetryPolicy,
        prepare: Callable[[Endpoint], None],
    ) -> None:
        self.all = [Endpoint(url=url, base=base_url(url)) for url in urls]
        self.policy = policy
        self._prepare = prepare  # describes an endpoint before its first request (and after a set-aside)
        self._condition = threading.Condition()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        self._client = httpx.Client(headers=headers, timeout=timeout, limits=limits)

    def close(self) -> None:
        self._client.close()

    def names(self) -> str:
        return ", ".join(e.url for e in self.all)

    # -- one HTTP exchange ---------------------------------------------------------------------

    def call(self, endpoint: Endpoint, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        """One request to one endpoint: the JSON answer, or RetriableError / ServerAnswerError."""
        url = endpoint.base + path
        try:
            response = self._client.request(
                method, url, json=body, timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT
            )
        except httpx.TimeoutException:
            raise RetriableError(f"{endpoint.url} did not answer {path} in time") from None
        except httpx.TransportError as error:
            raise RetriableError(f"{endpoint.url}: {type(error).__name__} on {path}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise RetriableError(f"{endpoint.url} answered {path} with HTTP {response.status_code}")
        if response.status_code >= 400:
            raise HttpStatusError(endpoint, path, response.status_code, _error_text(response))
        try:
            return response.json()
        except ValueError:
            raise RetriableError(f"{endpoint.url} answered {path} with something that is not JSON") from None

    # -- requests with retries ------------------------------------------------------------------

    def use(
        self,
        operation: Callable[[Endpoint], T],
        *,
        prefer: Endpoint | None = None,
        stopped: Callable[[], bool] = lambda: False,
    ) -> tuple[Endpoint, T]:
        """Run ``operation`` (one or more requests) on the best endpoint, retrying elsewhere with backoff.

        The endpoint is described first where it has not been since it was (re)admitted.
        """
        attempt = 0
        avoid: Endpoint | None = None
        while True:
            endpoint = self.acquire(prefer=prefer, avoid=avoid, stopped=stopped)
            try:
                if not endpoint.ready:
                    self._prepare(endpoint)
                    endpoint.ready = True
                result = operation(endpoint)
            except RetriableError as error:
                self.release(endpoint, error=str(error))
                attempt += 1
                avoid = endpoint
                self._sleep(attempt)
                continue
            except BaseException:
                self.release(endpoint)
                raise
            self.release(endpoint)
            return endpoint, result

    def prepare_all(self) -> None:
        """Describe every endpoint once; one that cannot be reached is set aside (and tried again later)."""
        for endpoint in self.all:
            endpoint.in_flight += 1
            try:
                self._prepare(endpoint)
                endpoint.ready = True
            except RetriableError as error:
                self.release(endpoint, error=str(error), set_aside=True)
                continue
            except BaseException:
                self.release(endpoint)
                raise
            self.release(endpoint)
        if not any(e.ready for e in self.all):
            self.use(lambda endpoint: None)  # waits out the cooldowns; NoEndpointError when all are given up

    def _sleep(self, attempt: int) -> None:
        delay = min(self.policy.max_backoff, self.policy.backoff * 2 ** (attempt - 1))
        time.sleep(delay * random.uniform(0.5, 1.0))  # jitter: retries from many threads do not arrive together

    def acquire(
        self,
        *,
        prefer: Endpoint | None = None,
        avoid: Endpoint | None = None,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Endpoint:
        """An endpoint with room for one more request (fewest in flight first); waits when all are busy."""
        with self._condition:
            while True:
                if stopped():
                    raise RunStopped()
                now = time.monotonic()
                alive = [e for e in self.all if e.set_asides < self.policy.max_set_asides]
                if not alive:
                    raise NoEndpointError(self._gone_message())
                open_ = [e for e in alive if e.set_aside_until <= now and e.in_flight < self._capacity(e)]
                if open_:
                    chosen = min(open_, key=lambda e: (e is avoid, e is not prefer, e.in_flight / e.concurrency))
                    chosen.in_flight += 1
                    return chosen
                waits = [e.set_aside_until - now for e in alive if e.set_aside_until > now]
                self._condition.wait(timeout=min([*waits, 1.0]))  # 1 s: a stopped run is noticed

    def _capacity(self, endpoint: Endpoint) -> int:
        # Back from a set-aside: one request at a time until one succeeds.
        return 1 if endpoint.set_asides else endpoint.concurrency

    def release(self, endpoint: Endpoint, error: str | None = None, set_aside: bool = False) -> None:
        with self._condition:
            endpoint.in_flight -= 1
            if error is None:
                endpoint.failures = 0
                endpoint.set_asides = 0
                endpoint.completed += 1
            else:
                endpoint.last_error = error
                endpoint.failures += 1
                if set_aside or endpoint.failures >= self.policy.failures_to_set_aside or endpoint.set_asides:
                    endpoint.failures = 0
                    endpoint.set_asides += 1
                    endpoint.ready = False
                    endpoint.set_aside_until = time.monotonic() + self.policy.cooldown * 2 ** (endpoint.set_asides - 1)
            self._condition.notify_all()

    def count_generated(self, endpoint: Endpoint, tokens: int) -> None:
        with self._condition:
            endpoint.generated += tokens

    def _gone_message(self) -> str:
        reasons = "; ".join(f"{e.url}: {e.last_error or 'failed'}" for e in self.all)
        return (
            f"no endpoint left ({reasons}): every finished result is kept; "
            "check the servers, then run again (batch: --resume goes on)"
        )


class HttpStatusError(ServerAnswerError):
    """A 4xx other than 429: the request itself was refused. Not retried: another try would be refused too."""

    def __init__(self, endpoint: Endpoint, path: str, status: int, text: str) -> None:
        self.status = status
        self.text = text
        self.endpoint = endpoint
        hint = " (check --api-key or RMJUDGE_API_KEY)" if status in (401, 403) else ""
        super().__init__(f"{endpoint.url} refused {path} with HTTP {status}: {text}{hint}")


def _error_text(response: httpx.Response) -> str:
    """The server's own message, short: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or the text."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
        if data.get("message"):
            return str(data["message"])[:300]
        if data.get("detail"):
            return str(data["detail"])[:300]
    return str(data)[:200]
