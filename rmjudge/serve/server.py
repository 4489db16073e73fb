"""uvicorn around the app: the listening socket, the worker thread's life, and a graceful SIGTERM."""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from rmjudge.errors import UsageError
from rmjudge.serve.app import LOG, ServeState, create_app
from rmjudge.serve.batcher import Batcher, parallel_of

if TYPE_CHECKING:
    from rmjudge.serve.batcher import BatchJudge

DEFAULT_PORT = 8765
DEFAULT_QUEUE_LIMIT = 256
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, api_key: str | None) -> None:
    """Listening beyond this machine needs a key: anyone who reaches the port could use the judge."""
    if not is_loopback(host) and not api_key:
        raise UsageError(
            f"--host {host} listens beyond this machine: give --api-key KEY (or set RMJUDGE_API_KEY) so that "
            "only your clients can use the judge, or keep the default 127.0.0.1"
        )


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, or a one-line error (port taken, unknown host) before anything else starts."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host.strip("[]"), port), family=family, backlog=2048)
    except OSError as error:
        raise UsageError(
            f"cannot listen on {host}:{port}: {error.strerror or error}: choose another --port or --host"
        ) from None


class _Server(uvicorn.Server):
    """uvicorn's server, which also tells the app that it is stopping (new requests then get 503) and
    says where it listens once it does."""

    def __init__(self, config: uvicorn.Config, state: ServeState, announce: Callable[[str], None]) -> None:
        super().__init__(config)
        self.state = state
        self.announce = announce

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.state.draining = True
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                self.announce(f"http://{host if ':' not in host else f'[{host}]'}:{port}")


def _setup_logging(debug: bool) -> None:
    if not LOG.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
        LOG.addHandler(handler)
        LOG.propagate = False
    LOG.setLevel(logging.INFO)


def build_server(
    judge: BatchJudge,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    api_key: str | None = None,
    queue_limit: int = DEFAULT_QUEUE_LIMIT,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    debug: bool = False,
    announce: Callable[[str], None] | None = None,
) -> tuple[uvicorn.Server, socket.socket]:
    """The server for ``judge`` and its listening socket: ``server.run(sockets=[sock])`` serves until
    SIGINT/SIGTERM (or ``should_exit``); requests in flight then finish and new ones get 503."""
    check_bind(host, api_key)
    if queue_limit < 1 or max_body_bytes < 1:
        raise UsageError("--queue-limit and --max-body-bytes must be 1 or more")
    sock = listen(host, port)
    _setup_logging(debug)
    meta = judge.meta() if hasattr(judge, "meta") else {}  # hashes the model once, before any request
    state = ServeState(
        Batcher(judge, queue_limit=queue_limit),
        meta,
        api_key=api_key or None,
        max_body_bytes=max_body_bytes,
        max_pairs=queue_limit,
        debug=debug,
    )
    config = uvicorn.Config(
        create_app(state),
        log_level="info" if debug else "warning",
        access_log=False,  # the app logs one line per request, without texts
        server_header=False,
        lifespan="on",
    )

    def said(url: str) -> None:
        settings = f"parallel {parallel_of(judge)}, queue limit {queue_limit}"
        (announce or LOG.info)(f"rmjudge serve: {state.model_name} on {url} ({settings})")

    return _Server(config, state, said), sock


def serve(judge: BatchJudge, **settings: Any) -> None:
    """Serve ``judge`` until SIGINT or SIGTERM (``settings`` as for ``build_server``)."""
    server, sock = build_server(judge, **settings)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
