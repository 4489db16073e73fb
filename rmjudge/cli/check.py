"""``rmjudge check FILES``: fail when a file got worse than its baseline (pre-commit, CI)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

import typer

from rmjudge.cli.command import command
from rmjudge.cli.options import judge_options, open_judge
from rmjudge.session import JudgeOptions

if TYPE_CHECKING:
    from rmjudge.check import JudgeSettings
    from rmjudge.judge import Judge


@command
@judge_options()
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
            "--question",
            "-q",
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
    *,
    judge: JudgeOptions,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per file, for CI (default: one line per file).")
    ] = False,
    raw: Annotated[bool, typer.Option("--raw", help="With --json: also output the full completions.")] = False,
) -> int:
    """Fail (exit 1) when a file got worse than its baseline: its version at HEAD, or --reference.

    Exit codes: 0 passed, 1 a file got worse, 2 usage, 3 unreadable input, 4 model, 5 context.
    """
    from rmjudge import check as checking
    from rmjudge.config import Settings, load_config
    from rmjudge.render import console
    from rmjudge.render.check import print_result, print_summary
    from rmjudge.textio import read_question

    settings = load_config(config)
    overrides = Settings(
        model=judge.model, template=judge.template, question=read_question(question, console.warn),
        criteria=judge.criteria, threshold=threshold, max_tokens=judge.max_tokens,
    )  # fmt: skip
    items = checking.plan_check(
        files or [], against=against, reference=reference, config=settings, overrides=overrides,
        source="auto" if staged is None else "staged" if staged else "worktree",
    )  # fmt: skip
    options = judge.over(settings.defaults)

    def load(chosen: JudgeSettings) -> Judge:
        per_file = replace(options, model=chosen.model, template=chosen.template, max_tokens=chosen.max_tokens)
        return open_judge(per_file)

    results = []
    for result in checking.run_check(items, checking.JudgePool(load)):
        results.append(result)
        if json_output:
            console.print_json(result.to_dict(raw=raw))
        else:
            print_result(result)
    if not json_output:
        print_summary(results)
    return checking.exit_code(results)
