"""``rmjudge batch``: a JSONL file of pairs in, one judged line per input line out."""

from __future__ import annotations

from typing import Annotated

import typer

from rmjudge.cli.command import command
from rmjudge.cli.options import MapOption, judge_options, open_judge
from rmjudge.session import JudgeOptions


@command
@judge_options()
def batch(
    source: Annotated[str, typer.Argument(help="JSONL file of pairs (- or nothing: standard input).")] = "-",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write the JSONL here instead of standard output.")
    ] = None,
    maps: MapOption = None,
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
    *,
    judge: JudgeOptions,
) -> int:
    """Judge every pair in a JSONL file: one output line per input line, in order, with the judgment under rmjudge.

    Recognises prompt/chosen/rejected, instruction/output_1/output_2, question/answer_a/answer_b,
    prompt/response_a/response_b, conversation_a/conversation_b and messages/a/b; --map names other fields.
    Exit 1 when any line failed (its output line holds the error), 6 when the output cannot be written,
    130 on Ctrl-C and 143 on SIGTERM (all judged lines kept).
    """
    from rmjudge import batch as batching
    from rmjudge import records
    from rmjudge.render import console
    from rmjudge.render.progress import progress_bar

    warn = None if quiet else console.warn
    summary = batching.run_batch(
        source, output, lambda: open_judge(judge, quiet=quiet), maps=records.parse_maps(maps or []), flat=flat,
        raw=raw, strict=strict, resume=resume, overwrite=overwrite, progress=progress_bar(not quiet), warn=warn,
    )  # fmt: skip
    if summary.torn_line_removed and warn is not None:
        warn(f"removed a torn last line from {output} (a write was interrupted); it is judged again")
    if summary.interrupted:
        where = f" to {output}" if output else ""
        again = "; add --resume to continue" if output else ""
        console.error(f"interrupted: {summary.written} lines written{where}{again}")
    elif not quiet:
        console.print_line(f"rmjudge: {summary.line()}", console=console.stderr)
    return summary.exit_code
