"""``rmjudge rank``: order N candidates best first, from pairwise judgments."""

from __future__ import annotations

from typing import Annotated

import typer

from rmjudge.cli.command import command
from rmjudge.cli.options import JsonOption, judge_options, open_judge
from rmjudge.errors import UsageError
from rmjudge.session import JudgeOptions


@command
@judge_options()
def rank(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Two or more candidate files (- for standard input), or one JSONL file of "
            '{"prompt": ..., "responses": [...]} lines (- alone: JSONL on standard input).',
            show_default=False,
        ),
    ],
    question: Annotated[
        str | None,
        typer.Option(
            "--question",
            "-q",
            help="The request the candidate files answer: text, or a file. Default: a generic task statement.",
        ),
    ] = None,
    *,
    judge: JudgeOptions,
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="auto (default: reference with --reference, round-robin up to 6 candidates, else adaptive), "
            "round-robin, reference, adaptive or knockout.",
        ),
    ] = "auto",
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            metavar="FILE",
            help="Judge each candidate against this text (--strategy reference); a JSONL line's own reference "
            "field comes first.",
        ),
    ] = None,
    outcome: Annotated[
        str,
        typer.Option(
            "--outcome",
            help="What a comparison counts for in the scores: verdict (1, or 0.5 for a tie), probability, or auto "
            "(default: probability with --max-tokens 0, else verdict).",
        ),
    ] = "auto",
    max_comparisons: Annotated[
        int | None,
        typer.Option("--max-comparisons", help="adaptive: at most this many pairs (default: about N log2 N)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="JSONL: no warnings or summary on stderr.")] = False,
    json_output: JsonOption = False,
    raw: Annotated[bool, typer.Option("--raw", help="Also output every judgment in full.")] = False,
) -> int | None:
    """Rank candidates best first: Bradley-Terry scores from pairwise judgments, with intervals.

    Each pair is judged in both orders (unless --order says otherwise). Strategies: round-robin (all
    pairs), reference (each against --reference), adaptive (about N log2 N pairs, stops once the top is
    settled), knockout (the best only, N-1 pairs). Exit 2 for fewer than two candidates, 3 for an empty or
    repeated one, 5 for one too long for the model. JSONL: exit 1 when any line failed (its output line
    holds the error).
    """
    from rmjudge import rank_io
    from rmjudge.rank import check_options
    from rmjudge.render import console
    from rmjudge.textio import read_text

    check_options(strategy, outcome, max_comparisons)
    options = {
        "strategy": strategy,
        "seed": judge.sampling.seed,
        "outcome": outcome,
        "max_comparisons": max_comparisons,
    }
    if rank_io.is_jsonl(sources):
        if question is not None:
            raise UsageError("-q is for candidate files: each JSONL line has its own prompt")
        summary = rank_io.rank_lines(
            rank_io.read_rank_lines(sources[0], None if reference is None else read_text(reference)),
            lambda: open_judge(judge, quiet=quiet),
            console.print_json,
            warn=None if quiet else console.warn,
            raw=raw,
            **options,
        )
        if summary.interrupted:
            console.error(f"interrupted: {summary.ranked + summary.failed} lines written")
        elif not quiet:
            console.print_line(f"rmjudge: {summary.line()}", console=console.stderr)
        return summary.exit_code
    request = rank_io.read_candidate_files(sources, question, reference, warn=console.warn)
    rank_io.check_request(request, strategy)  # before a model loads
    result = rank_io.rank_request(open_judge(judge), request, **options)
    if console.wants_json(json_output):
        console.print_json(result.to_dict(raw=raw))
    else:
        from rmjudge.render.ranking import print_ranking

        print_ranking(result)
    return None
