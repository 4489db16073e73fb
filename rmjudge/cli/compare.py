"""``rmjudge compare A B``: which of two texts is better, and why."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from rmjudge.cli.command import command
from rmjudge.cli.options import JsonOption, judge_options, open_judge
from rmjudge.errors import ExitCode, UsageError
from rmjudge.session import JudgeOptions


@command
@judge_options()
def compare(
    a: Annotated[str, typer.Argument(help="File with text A (- for standard input).")],
    b: Annotated[str, typer.Argument(help="File with text B (- for standard input).")],
    question: Annotated[
        str | None,
        typer.Option(
            "--question",
            "-q",
            help="The request both texts answer: text, or a file. Default (also for an empty one): a generic task "
            "statement.",
        ),
    ] = None,
    *,
    judge: JudgeOptions,
    expect: Annotated[
        str | None, typer.Option("--expect", help="A or B: exit 0 when it wins, 1 otherwise (for scripts and CI).")
    ] = None,
    show_prompt: Annotated[
        bool, typer.Option("--show-prompt", help="Print the exact chat messages as JSON; run no model.")
    ] = False,
    json_output: JsonOption = False,
    raw: Annotated[bool, typer.Option("--raw", help="Also output the full completions.")] = False,
) -> int | None:
    """Judge text A against text B: the winner, the confidence, and the model's reasons."""
    from rmjudge import compare as comparing
    from rmjudge.render import console
    from rmjudge.render.judgment import print_judgment

    if expect is not None and expect not in ("A", "B"):
        raise UsageError("--expect takes A or B")
    pair = replace(comparing.read_pair(a, b, question, warn=console.warn), criteria=judge.criteria)
    if show_prompt:
        console.print_json(comparing.show_prompt(pair, model=judge.model, template=judge.template, order=judge.order))
        return None
    judgment = open_judge(judge).judge(pair)
    print_judgment(judgment, console.wants_json(json_output), raw)
    return ExitCode.NEGATIVE if expect is not None and judgment.winner != expect else None
