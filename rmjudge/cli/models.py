"""``rmjudge models``: RM-R1 checkpoints on disk and on the hub; pull, inspect, remove."""

from __future__ import annotations

from typing import Annotated

import typer

from rmjudge.cli.command import command
from rmjudge.cli.options import JsonOption

models_app = typer.Typer(
    help="RM-R1 checkpoints: what is on disk, what the hub has, pull, inspect, remove.", no_args_is_help=True
)

QuantOption = Annotated[
    str | None, typer.Option("--quant", help="Quantization, matched in the GGUF file name (default: Q4_K_M).")
]
RevisionOption = Annotated[str | None, typer.Option("--revision", help="Hub branch, tag or commit to pin.")]
SpecArgument = Annotated[
    str | None,
    typer.Argument(help=r"Alias, hf://owner/repo\[/file.gguf]\[@revision], or a .gguf path. Default: rm-r1-qwen-7b."),
]


@models_app.command("list")
@command
def models_list(json_output: JsonOption = False) -> None:
    """Known RM-R1 checkpoints with their paper scores, and what is on disk (quant, size, path)."""
    from rmjudge import models
    from rmjudge.render import console
    from rmjudge.render.models import print_model_list

    rows = models.list_models()
    if console.wants_json(json_output):
        for row in rows:
            console.print_json(row.to_dict())
    else:
        print_model_list(rows)


@models_app.command("search")
@command
def models_search(
    query: Annotated[str, typer.Argument(help="Text the repository name contains.")] = "RM-R1",
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many repositories.", min=1)] = None,
    json_output: JsonOption = False,
) -> None:
    """GGUF quantizations of RM-R1 models published on the hub right now."""
    from rmjudge import models
    from rmjudge.render import console
    from rmjudge.render.models import print_search

    found = models.search_models(query, limit=limit)
    if console.wants_json(json_output):
        for repo in found:
            console.print_json(repo.to_dict())
    else:
        print_search(found, query)


@models_app.command("pull")
@command
def models_pull(
    spec: SpecArgument = None,
    quant: QuantOption = None,
    revision: RevisionOption = None,
    json_output: JsonOption = False,
) -> None:
    """Download a model into the Hugging Face cache (resumes an interrupted download)."""
    from rmjudge import models
    from rmjudge.render import console
    from rmjudge.render.models import print_pulled
    from rmjudge.render.progress import progress_bar

    resolved = models.pull_model(spec, quant=quant, revision=revision, progress=progress_bar())
    data = resolved.to_dict()
    if console.wants_json(json_output):
        console.print_json(data)
    else:
        print_pulled(resolved, data["size"])
    for message in (resolved.note, models.memory_warning(resolved.path)):
        if message:
            console.warn(message)


@models_app.command("info")
@command
def models_info(
    spec: SpecArgument = None,
    quant: QuantOption = None,
    revision: RevisionOption = None,
    json_output: JsonOption = False,
) -> None:
    """GGUF metadata of a model on disk: architecture, parameters, quant, context, template family."""
    from rmjudge import models
    from rmjudge.render import console
    from rmjudge.render.models import print_info

    info = models.model_info(spec, quant=quant, revision=revision)
    if console.wants_json(json_output):
        console.print_json(info)
    else:
        print_info(info)


@models_app.command("rm")
@command
def models_rm(
    spec: Annotated[str, typer.Argument(help=r"Alias, hf://owner/repo\[/file.gguf], or a path in the cache.")],
    quant: Annotated[str | None, typer.Option("--quant", help="Remove only this quantization.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Delete a pulled model from the Hugging Face cache (every quant unless --quant)."""
    from rmjudge import models
    from rmjudge.render import console

    removed = models.remove_model(spec, quant=quant)
    if console.wants_json(json_output):
        console.print_json({"removed": [str(path) for path in removed]})
        return
    for path in removed:
        console.print_line(f"removed {path}")
    if not removed:
        console.print_line(f"nothing of {spec} on disk: nothing to remove")
