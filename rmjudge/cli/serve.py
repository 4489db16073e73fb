"""``rmjudge serve``: the judge as a local HTTP service, for training loops and other programs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from rmjudge.cli.command import command
from rmjudge.cli.options import judge_options, open_judge
from rmjudge.session import JudgeOptions

PANEL = "Server options"


def _server(*names: str, help: str, **settings: Any) -> Any:
    return typer.Option(*names, rich_help_panel=PANEL, help=help, **settings)


# Here --api-key is the server's own key: the endpoints' key (the shared --api-key elsewhere) is renamed.
EndpointKeyOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-api-key", envvar="RMJUDGE_ENDPOINT_API_KEY", show_default=False, rich_help_panel="Judge options",
        help="The endpoints' bearer token, with --endpoint; never shown.",
    ),
]  # fmt: skip


@command
@judge_options(endpoint_key=EndpointKeyOption)
def serve(
    *,
    judge: JudgeOptions,
    host: Annotated[
        str, _server("--host", help="Address to listen on. Any other than 127.0.0.1, ::1 or localhost needs --api-key.")
    ] = "127.0.0.1",
    port: Annotated[int, _server("--port", help="Port to listen on (0: any free port).")] = 8765,
    server_key: Annotated[
        str | None,
        _server(
            "--api-key",
            envvar="RMJUDGE_API_KEY",
            show_default=False,
            help="Clients must send 'Authorization: Bearer KEY' (or ?api_key=KEY in the URL); never shown or logged.",
        ),
    ] = None,
    queue_limit: Annotated[
        int,
        _server("--queue-limit", help="Pairs that may wait, and the most in one request; beyond: 503 + Retry-After."),
    ] = 256,
    max_body_bytes: Annotated[int, _server("--max-body-bytes", help="Largest request body; beyond: 413.")] = 8 << 20,
) -> None:
    """Serve the judge over HTTP: POST /v1/judge, /v1/rank, /v1/rewards, OpenRLHF's /get_reward; GET /health.

    Concurrent requests are judged together in batches. Runs until Ctrl-C or SIGTERM; the requests in
    flight are answered first, new ones get 503.
    """
    from rmjudge.serve import require_extra, run_server
    from rmjudge.serve.server import check_bind

    require_extra()
    check_bind(host, server_key)  # before the model loads
    run_server(
        open_judge(judge),
        host,
        port,
        server_key,
        queue_limit=queue_limit,
        max_body_bytes=max_body_bytes,
        debug=judge.engine.debug,
    )
