"""The ``rmjudge`` command line. Thin: parse, call one function, render."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from rmjudge import __version__
from rmjudge.errors import ExitCode, RmjudgeError, UsageError

app = typer.Typer(
    name="rmjudge",
    help="Judge which of two texts is better, and why, with an RM-R1 reward model running locally.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

# -- options shared by every command that runs a model ---------------------------------------
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help=r"An alias (rmjudge models list), hf://owner/repo\[/file.gguf]\[@rev], or a .gguf path; pulled on first "
        "use. Default: rm-r1-qwen-7b. Env: RMJUDGE_MODEL.",
    ),
]
TemplateOption = Annotated[
    str | None,
    typer.Option(
        "--template", help="Prompt family: instruct, reasoning, or a directory of templates. Default: from the GGUF."
    ),
]
MaxTokensOption = Annotated[
    int | None,
    typer.Option(
        "--max-tokens", help="Reasoning budget per order (default: 2048 instruct, 4096 reasoning). 0: verdict only."
    ),
]
OrderOption = Annotated[str, typer.Option("--order", help="both (default), ab or ba.")]
TemperatureOption = Annotated[
    float, typer.Option("--temperature", help="0 (default) decodes greedily, as RM-R1's evaluation.")
]
TopPOption = Annotated[float, typer.Option("--top-p", help="Nucleus sampling, with --temperature above 0.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Sampling seed (recorded in the output).")]
GpuLayersOption = Annotated[
    int | None,
    typer.Option("--gpu-layers", help="Layers to offload to the GPU (default: all when llama.cpp has a GPU backend)."),
]
ThreadsOption = Annotated[int | None, typer.Option("--threads", help="CPU threads (default: physical cores).")]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the verdict cache.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks and llama.cpp's log.")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="One JSON object per line (the default when stdout is not a terminal).")
]


def _fail(message: str, code: int) -> NoReturn:
    from rmjudge.render import stderr

    stderr.print(f"[bold red]rmjudge:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def run(debug: bool, action: Callable[[], T]) -> T:
    """Run a command body: known errors become one line and their exit code; tracebacks only with --debug."""
    debug = debug or os.environ.get("RMJUDGE_DEBUG") == "1"
    try:
        return action()
    except typer.Exit:
        raise
    except RmjudgeError as error:
        if debug:
            raise
        _fail(str(error).replace("[", r"\["), error.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        _fail("interrupted; everything already written is kept", ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader (head, a closed pipe) is gone: end quietly, as shell tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(ExitCode.OK) from None
    except Exception as error:  # the last line of defence: one line, not a traceback
        if debug:
            raise
        message = f"internal error: {type(error).__name__}: {error} (run again with --debug for the traceback)"
        _fail(message.replace("[", r"\["), 70)


def build_judge(
    *,
    model: str | None,
    template: str | None,
    max_tokens: int | None,
    order: str,
    temperature: float,
    top_p: float,
    seed: int,
    gpu_layers: int | None,
    threads: int | None,
    no_cache: bool,
    debug: bool,
) -> Any:
    """The Judge that the options describe, with the shared verdict cache unless --no-cache."""
    from rmjudge.cache import VerdictCache
    from rmjudge.engines import Sampling
    from rmjudge.judge import Judge
    from rmjudge.models import memory_warning, resolve_model
    from rmjudge.render import stderr

    if temperature < 0 or not 0 < top_p <= 1:
        raise UsageError("--temperature must be 0 or more and --top-p in (0, 1]")
    resolved = resolve_model(model)
    warning = memory_warning(resolved.path)
    if warning:
        stderr.print(f"[yellow]rmjudge: {warning}[/]", highlight=False)
    return Judge(
        resolved,
        template=template,
        max_tokens=max_tokens,
        order=order,
        sampling=Sampling(temperature=temperature, top_p=top_p, seed=seed),
        gpu_layers=gpu_layers,
        threads=threads,
        cache=None if no_cache else VerdictCache(),
        debug=debug,
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


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="File with text A (- for standard input).")],
    b: Annotated[str, typer.Argument(help="File with text B (- for standard input).")],
    question: Annotated[
        str | None,
        typer.Option(
            "--question", "-q", help="The request both texts answer: text, or a file. Default: a generic task statement"
        ),
    ] = None,
    model: ModelOption = None,
    template: TemplateOption = None,
    max_tokens: MaxTokensOption = None,
    order: OrderOption = "both",
    temperature: TemperatureOption = 0.0,
    top_p: TopPOption = 1.0,
    seed: SeedOption = 0,
    gpu_layers: GpuLayersOption = None,
    threads: ThreadsOption = None,
    expect: Annotated[
        str | None, typer.Option("--expect", help="A or B: exit 0 when it wins, 1 otherwise (for scripts and CI).")
    ] = None,
    show_prompt: Annotated[
        bool, typer.Option("--show-prompt", help="Print the exact chat messages as JSON; run no model.")
    ] = False,
    json_output: JsonOption = False,
    raw: Annotated[bool, typer.Option("--raw", help="Also output the full completions.")] = False,
    no_cache: NoCacheOption = False,
    debug: DebugOption = False,
) -> None:
    """Judge text A against text B: the winner, the confidence, and the model's reasons."""
    from rmjudge import compare as comparing
    from rmjudge import render

    def body() -> None:
        if expect is not None and expect not in ("A", "B"):
            raise UsageError("--expect takes A or B")
        pair = comparing.read_pair(a, b, question)
        if show_prompt:
            render.print_json(comparing.show_prompt(pair, model=model, template=template, order=order))
            return
        judge = build_judge(
            model=model, template=template, max_tokens=max_tokens, order=order, temperature=temperature,
            top_p=top_p, seed=seed, gpu_layers=gpu_layers, threads=threads, no_cache=no_cache, debug=debug,
        )  # fmt: skip
        judgment = judge.judge(pair)
        render.print_judgment(judgment, render.wants_json(json_output), raw)
        if expect is not None and judgment.winner != expect:
            raise typer.Exit(ExitCode.NEGATIVE)

    run(debug, body)


# -- models ------------------------------------------------------------------------------------------
models_app = typer.Typer(
    help="RM-R1 checkpoints: what is on disk, what the hub has, pull, inspect, remove.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

QuantOption = Annotated[
    str | None, typer.Option("--quant", help="Quantization, matched in the GGUF file name (default: Q4_K_M).")
]
RevisionOption = Annotated[str | None, typer.Option("--revision", help="Hub branch, tag or commit to pin.")]
SpecArgument = Annotated[
    str | None,
    typer.Argument(help=r"Alias, hf://owner/repo\[/file.gguf]\[@revision], or a .gguf path. Default: rm-r1-qwen-7b."),
]


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


@models_app.command("list")
def models_list(json_output: JsonOption = False, debug: DebugOption = False) -> None:
    """Known RM-R1 checkpoints with their paper scores, and what is on disk (quant, size, path)."""
    from rich.table import Table

    from rmjudge import models, render

    def body() -> None:
        rows = models.list_models()
        if render.wants_json(json_output):
            for row in rows:
                render.print_json(row.to_dict())
            return
        # Fits 80 columns: the three scores share one column, and only the path may wrap (folded, so
        # it stays whole to be copied); names and numbers never break.
        table = Table(box=None)
        for column in ("alias", "family", "scores", "quant", "size", "path"):
            table.add_column(
                column, justify="right" if column == "size" else "left", no_wrap=column != "path", overflow="fold"
            )
        for row in rows:
            name = row.alias or row.spec
            scores = "/".join(_score(row.scores.get(key)) or "-" for key in ("rewardbench", "rm_bench", "rmb"))
            table.add_row(
                f"[bold]{name}[/] *" if row.default else name,
                row.family or "",
                scores if row.scores else "",
                row.quant or "",
                models.human_size(row.size),
                str(row.path) if row.path else "[dim]not pulled[/]",
            )
        render.stdout.print(table)
        render.stdout.print(
            "[dim]* the default · scores: RewardBench / RM-Bench / RMB accuracy % in the RM-R1 paper "
            "(arXiv 2505.02387), full-precision weights[/]",
            highlight=False,
        )

    run(debug, body)


@models_app.command("search")
def models_search(
    query: Annotated[str, typer.Argument(help="Text the repository name contains.")] = "RM-R1",
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many repositories.")] = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """GGUF quantizations of RM-R1 models published on the hub right now."""
    from rich.table import Table

    from rmjudge import models, render

    def body() -> None:
        found = models.search_models(query, limit=limit)
        if render.wants_json(json_output):
            for repo in found:
                render.print_json(repo.to_dict())
            return
        table = Table("repository", "alias", "quants", "downloads", "updated", box=None)
        for repo in found:
            alias = repo.alias or ""
            if repo.alias and not repo.in_registry:
                alias += " [dim](not in the registry: use hf://)[/]"
            table.add_row(
                repo.repo, alias, " ".join(repo.quants), str(repo.downloads or 0), (repo.last_modified or "")[:10]
            )
        render.stdout.print(table if found else f"no GGUF repository on the hub matches {query!r}", highlight=False)

    run(debug, body)


def _resolved_dict(resolved: Any) -> dict[str, Any]:
    return {
        "alias": resolved.alias,
        "repo": resolved.repo,
        "filename": resolved.filename,
        "revision": resolved.revision,
        "quant": resolved.quant,
        "path": str(resolved.path),
        "size": resolved.path.stat().st_size,
        "sha256": resolved.sha256,
    }


@models_app.command("pull")
def models_pull(
    spec: SpecArgument = None,
    quant: QuantOption = None,
    revision: RevisionOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Download a model into the Hugging Face cache (resumes an interrupted download)."""
    from rmjudge import models, render

    def body() -> None:
        resolved = models.pull_model(spec, quant=quant, revision=revision, progress=True)
        data = _resolved_dict(resolved)
        if render.wants_json(json_output):
            render.print_json(data)
        else:
            source = f"{resolved.repo}@{(resolved.revision or '')[:12]}" if resolved.repo else "local file"
            line = f"{resolved.path}  ({models.human_size(data['size'])}, {resolved.quant or '?'}, {source})"
            render.stdout.print(line, highlight=False, soft_wrap=True)
        if warning := models.memory_warning(resolved.path):
            render.stderr.print(warning, highlight=False)

    run(debug, body)


@models_app.command("info")
def models_info(
    spec: SpecArgument = None,
    quant: QuantOption = None,
    revision: RevisionOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """GGUF metadata of a model on disk: architecture, parameters, quant, context, template family."""
    from rich.table import Table

    from rmjudge import models, render

    def body() -> None:
        info = models.model_info(spec, quant=quant, revision=revision)
        if render.wants_json(json_output):
            render.print_json(info)
            return
        table = Table(show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in info.items():
            if value is None:
                continue
            if key == "size":
                value = models.human_size(value)
            elif key == "scores":
                value = ", ".join(f"{name} {score}" for name, score in value.items())
            table.add_row(key, str(value))
        render.stdout.print(table)

    run(debug, body)


@models_app.command("rm")
def models_rm(
    spec: Annotated[str, typer.Argument(help=r"Alias, hf://owner/repo\[/file.gguf], or a path in the cache.")],
    quant: Annotated[str | None, typer.Option("--quant", help="Remove only this quantization.")] = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Delete a pulled model from the Hugging Face cache (every quant unless --quant)."""
    from rmjudge import models, render

    def body() -> None:
        removed = models.remove_model(spec, quant=quant)
        if render.wants_json(json_output):
            render.print_json({"removed": [str(path) for path in removed]})
        elif not removed:
            render.stdout.print(f"nothing of {spec} on disk: nothing to remove", highlight=False, soft_wrap=True)
        else:
            for path in removed:
                render.stdout.print(f"removed {path}", highlight=False, soft_wrap=True)

    run(debug, body)



# -- batch ------------------------------------------------------------------------------------------
@app.command()
def batch(
    source: Annotated[str, typer.Argument(help="JSONL file of pairs (- or nothing: standard input).")] = "-",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write the JSONL here instead of standard output.")
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="ROLE=FIELD: which input field is the question, conversation, a, b, label or id "
            "(repeatable; e.g. --map question=instruction). An empty FIELD ignores that role.",
        ),
    ] = None,
    flat: Annotated[
        bool, typer.Option("--flat", help="Judgment as top-level rmjudge_* fields, not under rmjudge.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue -o FILE: skip the lines already in it, append the rest.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing -o FILE.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first line that cannot be judged.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar, warnings or summary on stderr.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Also output the full completions.")] = False,
    model: ModelOption = None,
    template: TemplateOption = None,
    max_tokens: MaxTokensOption = None,
    order: OrderOption = "both",
    temperature: TemperatureOption = 0.0,
    top_p: TopPOption = 1.0,
    seed: SeedOption = 0,
    gpu_layers: GpuLayersOption = None,
    threads: ThreadsOption = None,
    no_cache: NoCacheOption = False,
    debug: DebugOption = False,
) -> None:
    """Judge every pair in a JSONL file: one output line per input line, in order, with the judgment under rmjudge.

    Recognises prompt/chosen/rejected, instruction/output_1/output_2, question/answer_a/answer_b,
    prompt/response_a/response_b, conversation_a/conversation_b and messages/a/b; --map names other fields.
    Exit 1 when any line failed (its output line holds the error), 130 on Ctrl-C (all judged lines kept).
    """
    from rich.markup import escape

    from rmjudge import batch as batching
    from rmjudge import records, render

    def warn(message: str) -> None:
        render.stderr.print(f"[yellow]rmjudge:[/] {escape(message)}", highlight=False, soft_wrap=True)

    def body() -> int:
        def load() -> Any:
            return build_judge(
                model=model, template=template, max_tokens=max_tokens, order=order, temperature=temperature,
                top_p=top_p, seed=seed, gpu_layers=gpu_layers, threads=threads, no_cache=no_cache, debug=debug,
            )  # fmt: skip

        summary = batching.run_batch(
            source, output, load, maps=records.parse_maps(maps or []), flat=flat, raw=raw, strict=strict,
            resume=resume, overwrite=overwrite, progress=not quiet, warn=None if quiet else warn,
        )  # fmt: skip
        if summary.torn_line_removed and not quiet:
            warn(f"removed a torn last line from {output} (a write was interrupted); it is judged again")
        if summary.interrupted:
            where = f" to {output}" if output else ""
            again = "; add --resume to continue" if output else ""
            render.stderr.print(
                f"[bold red]rmjudge:[/] interrupted: {summary.written} lines written{where}{again}",
                highlight=False, soft_wrap=True,
            )  # fmt: skip
        elif not quiet:
            render.stderr.print(f"rmjudge: {escape(summary.line())}", highlight=False, soft_wrap=True)
        return summary.exit_code

    code = run(debug, body)
    if code:
        raise typer.Exit(code)


cache_app = typer.Typer(
    help="The verdict cache: every order judged is stored, so the same pair is never judged twice.",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


def _cache_stats_dict(stats: Any) -> dict[str, Any]:
    return {"path": str(stats.path), "entries": stats.entries, "bytes": stats.bytes}


@cache_app.command("stats")
def cache_stats(json_output: JsonOption = False, debug: DebugOption = False) -> None:
    """Where the verdict cache is, how many judged orders it holds, and its size on disk."""
    from rmjudge import render
    from rmjudge.cache import VerdictCache
    from rmjudge.models import human_size

    def body() -> None:
        stats = VerdictCache().stats()
        if render.wants_json(json_output):
            render.print_json(_cache_stats_dict(stats))
            return
        entries = f"{stats.entries} (one per judged order)"
        rows = [("path", stats.path), ("entries", entries), ("size", human_size(stats.bytes))]
        render.stdout.print(render.key_value_table(rows, title="verdict cache"))

    run(debug, body)


@cache_app.command("clear")
def cache_clear(json_output: JsonOption = False, debug: DebugOption = False) -> None:
    """Delete every stored verdict (the next judgment of any pair runs the model again)."""
    from rmjudge import render
    from rmjudge.cache import VerdictCache

    def body() -> None:
        cache = VerdictCache()
        removed = cache.clear()
        stats = cache.stats()
        if render.wants_json(json_output):
            render.print_json({"removed": removed, **_cache_stats_dict(stats)})
        else:
            render.stdout.print(f"removed {removed} entries from {stats.path}", highlight=False, soft_wrap=True)

    run(debug, body)



# -- check ------------------------------------------------------------------------------------------
@app.command()
def check(
    files: Annotated[
        list[str] | None, typer.Argument(help="Files to check (a pre-commit hook passes the staged ones).")
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            help="Git revision holding the baselines: each file's path there, renames followed. Default: HEAD.",
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference", help="A fixed baseline instead of git: a file, or a directory mirroring the files' paths."
        ),
    ] = None,
    staged: Annotated[
        bool | None,
        typer.Option(
            "--staged/--worktree",
            help="Judge the index's content (what is being committed) or the working tree's. "
            "Default: the index inside a pre-commit run (PRE_COMMIT=1), else the working tree.",
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="Fail when the baseline wins with at least this confidence, 0 to 1. Default: the config's, else 0.6.",
        ),
    ] = None,
    question: Annotated[
        str | None,
        typer.Option(
            "--question", "-q",
            help="What 'better' means (text, or a file). Default: the config's, else a generic task statement.",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="Settings file. Default: the nearest .rmjudge.toml, or pyproject.toml's tool.rmjudge table.",
        ),
    ] = None,
    model: ModelOption = None,
    template: TemplateOption = None,
    max_tokens: MaxTokensOption = None,
    order: OrderOption = "both",
    temperature: TemperatureOption = 0.0,
    top_p: TopPOption = 1.0,
    seed: SeedOption = 0,
    gpu_layers: GpuLayersOption = None,
    threads: ThreadsOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per file, for CI (default: one line per file).")
    ] = False,
    raw: Annotated[bool, typer.Option("--raw", help="With --json: also output the full completions.")] = False,
    no_cache: NoCacheOption = False,
    debug: DebugOption = False,
) -> None:
    """Fail (exit 1) when a file got worse than its baseline: its version at HEAD, or --reference.

    Exit codes: 0 passed, 1 a file got worse, 2 usage, 3 unreadable input, 4 model, 5 context.
    """
    from rich.text import Text

    from rmjudge import check as checking
    from rmjudge import render
    from rmjudge.config import Settings, load_config
    from rmjudge.judge import ORDERS
    from rmjudge.textio import text_or_file

    def body() -> None:
        if threshold is not None and not 0 <= threshold <= 1:
            raise UsageError(f"--threshold {threshold}: give a confidence from 0 to 1")
        if order not in ORDERS:
            raise UsageError(f"--order {order!r}: use both, ab or ba")
        overrides = Settings(
            model=model, template=template, question=text_or_file(question), threshold=threshold, max_tokens=max_tokens
        )
        items = checking.plan_check(
            files or [], against=against, reference=reference, config=load_config(config), overrides=overrides,
            source="auto" if staged is None else "staged" if staged else "worktree",
        )  # fmt: skip

        def load(settings: checking.JudgeSettings) -> Any:
            return build_judge(
                model=settings.model, template=settings.template, max_tokens=settings.max_tokens, order=order,
                temperature=temperature, top_p=top_p, seed=seed, gpu_layers=gpu_layers, threads=threads,
                no_cache=no_cache, debug=debug,
            )  # fmt: skip

        results = []
        for result in checking.run_check(items, checking.JudgePool(load)):
            results.append(result)
            if json_output:
                render.print_json(result.to_dict(raw=raw))
            else:
                style = "dim" if result.judgment is None else "green" if result.passed else "bold red"
                render.stdout.print(Text(checking.report_line(result), style=style), soft_wrap=True)
        if not json_output:
            render.stdout.print(checking.summary(results), soft_wrap=True, highlight=False, markup=False)
        code = checking.exit_code(results)
        if code != ExitCode.OK:
            raise typer.Exit(code)

    run(debug, body)



# -- eval ------------------------------------------------------------------------------------------
@app.command("eval")
def eval_command(
    data: Annotated[
        str | None, typer.Argument(help="Labelled pairs, JSON Lines (- for standard input): the formats batch reads.")
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="both (default): both orders, a tie when they disagree. official: RM-R1's, one order per pair "
            "by a coin seeded with --seed. verdict-only: both orders, no reasoning (budget 0).",
        ),
    ] = "both",
    limit: Annotated[int | None, typer.Option("--limit", help="Judge only the first N labelled pairs.")] = None,
    maps: Annotated[
        list[str] | None, typer.Option("--map", help="ROLE=FIELD: read a role (question, a, b, label, id) from FIELD.")
    ] = None,
    full_rm_bench: Annotated[
        bool,
        typer.Option(
            "--rm-bench-matrix",
            help="From RM-Bench's style-matched pairs (ids ending c0r0, c1r1, c2r2) judge all 9 chosen/rejected "
            "style pairs per prompt, for its easy and hard accuracies (3x the work).",
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write per-pair results as JSONL, to recompute the report with --from.")
    ] = None,
    from_results: Annotated[
        Path | None, typer.Option("--from", help="Recompute the report from results written by --out; judge nothing.")
    ] = None,
    compare_files: Annotated[
        tuple[Path, Path] | None,
        typer.Option("--compare", help="Two reports written with --json: each metric side by side, with b - a."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write a figure (.png, .svg, .pdf): accuracy per subset, calibration curve."),
    ] = None,
    model: ModelOption = None,
    template: TemplateOption = None,
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = 0.0,
    top_p: TopPOption = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the official protocol's coin and the sampling.")] = 0,
    gpu_layers: GpuLayersOption = None,
    threads: ThreadsOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="The report as one JSON object (the default when stdout is not a terminal).")
    ] = False,
    no_cache: NoCacheOption = False,
    debug: DebugOption = False,
) -> None:
    """Accuracy of the judge on labelled pairs, with intervals, biases and cost.

    Exit codes: 0 done, 2 usage, 3 unreadable input, 4 model.
    """
    from rmjudge import evaluate as evaluating
    from rmjudge import metrics, render
    from rmjudge.records import parse_maps

    def body() -> None:
        if sum(x is not None for x in (data, from_results, compare_files)) != 1:
            raise UsageError("give one of: DATA to judge, --from RESULTS to recompute a report, --compare A B")
        as_json = render.wants_json(json_output)
        if compare_files is not None:
            if plot is not None or out is not None or limit is not None or maps or full_rm_bench:
                raise UsageError("--compare reads two reports and takes none of --plot, --out, --limit, --map")
            reports = [evaluating.read_report(path) for path in compare_files]
            rows = metrics.compare_reports(*reports)
            if as_json:
                render.print_json({"a": str(compare_files[0]), "b": str(compare_files[1]), "metrics": rows})
            else:
                render.stdout.print(evaluating.render_comparison(rows, str(compare_files[0]), str(compare_files[1])))
            return
        if plot is not None:
            from rmjudge.plot import check_plot_path

            check_plot_path(plot)
        if from_results is not None:
            if limit is not None or out is not None or maps or full_rm_bench:
                raise UsageError("--limit, --out, --map and --rm-bench-matrix apply when judging DATA, not with --from")
            stored = evaluating.read_results(from_results)
            report = metrics.build_report(stored.results, stored.skipped, stored.run)
        else:
            assert data is not None
            evaluating.check_protocol(protocol, max_tokens)
            if limit is not None and limit < 1:
                raise UsageError(f"--limit {limit}: give a number of pairs, 1 or more")
            if out is not None and data != "-" and out.resolve() == Path(data).resolve():
                raise UsageError(f"--out {out} is the input file: write the results elsewhere")
            items = evaluating.load_pairs(data, maps=parse_maps(maps or []), limit=limit, full_rm_bench=full_rm_bench)
            judge = build_judge(
                model=model, template=template, max_tokens=0 if protocol == "verdict-only" else max_tokens,
                order="both", temperature=temperature, top_p=top_p, seed=seed, gpu_layers=gpu_layers,
                threads=threads, no_cache=no_cache, debug=debug,
            )  # fmt: skip
            info = evaluating.run_info(judge, data=data, protocol=protocol, seed=seed, limit=limit)
            results, skipped = evaluating.run_eval(
                judge, items, protocol=protocol, seed=seed, run=info, out=out, console=render.stderr
            )
            report = metrics.build_report(results, skipped, info)
        if as_json:
            render.print_json(report)
        else:
            render.stdout.print(evaluating.render_report(report))
        if plot is not None:
            from rmjudge.plot import plot_report

            plot_report(report, plot)
            render.stderr.print(f"wrote {plot}", highlight=False, markup=False)

    run(debug, body)




def main() -> None:
    app()


if __name__ == "__main__":
    main()
