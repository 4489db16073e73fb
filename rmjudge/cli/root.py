"""The root command, ``rmjudge``: the typer app and its commands, one module per command or group."""

from __future__ import annotations

from typing import Annotated

import typer

from rmjudge import __version__
from rmjudge.cli import batch, cache, check, compare, models, rank, serve
from rmjudge.cli import eval as evaluate
from rmjudge.cli.command import RmjudgeGroup

app = typer.Typer(
    name="rmjudge",
    cls=RmjudgeGroup,
    help="Judge which of two texts is better, and why, with an RM-R1 reward model running locally.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rmjudge {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Judge which of two texts is better, and why, with an RM-R1 reward model running locally."""


app.command()(compare.compare)
app.command()(batch.batch)
app.command()(check.check)
app.command("eval")(evaluate.eval_command)
app.command()(rank.rank)
app.command()(serve.serve)
app.add_typer(models.models_app, name="models")
app.add_typer(cache.cache_app, name="cache")
