"""``rmjudge serve``: the judge as a local HTTP service (the ``serve`` extra: starlette, uvicorn, pydantic).

Routes: ``POST /v1/judge``, ``/v1/rank``, ``/v1/rewards``, OpenRLHF's ``POST /get_reward``, ``GET
/health`` and ``/v1/models``. Concurrent requests are judged together in ``judge_many`` batches by one
worker thread (``batcher``); ``app`` holds the routes and validation, ``server`` runs them in uvicorn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rmjudge.errors import UsageError

if TYPE_CHECKING:
    from rmjudge.serve.batcher import BatchJudge

MISSING_EXTRA = "rmjudge serve needs the serve extra: pip install 'rmjudge[serve]'"


def require_extra() -> None:
    """UsageError (exit 2) with the install command when starlette, uvicorn or pydantic is missing."""
    try:
        import pydantic  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError(MISSING_EXTRA) from None


def run_server(
    judge: BatchJudge,
    host: str = "127.0.0.1",
    port: int = 8765,
    api_key: str | None = None,
    *,
    queue_limit: int = 256,
    max_body_bytes: int = 8 * 1024 * 1024,
    debug: bool = False,
    announce: Callable[[str], None] | None = None,
    **settings: Any,
) -> None:
    """Serve ``judge`` over HTTP until SIGINT/SIGTERM (see ``rmjudge.serve.server.serve``)."""
    require_extra()
    from rmjudge.serve.server import serve

    serve(
        judge,
        host=host,
        port=port,
        api_key=api_key,
        queue_limit=queue_limit,
        max_body_bytes=max_body_bytes,
        debug=debug,
        announce=announce,
        **settings,
    )
