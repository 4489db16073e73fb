"""``rmjudge rank`` on a terminal: the candidates best first, then what the ranking cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from rmjudge.render.console import stdout
from rmjudge.render.formats import number, percent

if TYPE_CHECKING:
    from rmjudge.rank import Ranking

_STOPPED = {
    "complete": "",
    "settled": " · stopped: the top is settled",
    "budget": " · stopped at the budget: the top is not settled (more comparisons, or round-robin, would tell)",
}


def _signed(value: float) -> str:
    return f"{round(value, 2) + 0.0:+.2f}"  # + 0.0: no "-0.00"


def _mean_win(ranking: Ranking, index: int) -> float | None:
    known = [p for p in ranking.win_matrix[index] if p is not None]
    return sum(known) / len(known) if known else None


def ranking_table(ranking: Ranking) -> Table:
    against = ranking.reference_probability
    table = Table(title=f"rmjudge rank · {ranking.strategy}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("candidate", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("95% interval", justify="right")
    table.add_column("P(first)", justify="right")
    table.add_column("P(beats reference)" if against else "P(beats others)", justify="right")
    for place, index in enumerate(ranking.order, start=1):
        low, high = ranking.intervals[index]
        table.add_row(
            str(place),
            escape(ranking.names[index]),
            _signed(ranking.scores[index]),
            f"{_signed(low)} … {_signed(high)}",
            percent(ranking.top_probability[index]),
            percent(against[index] if against else _mean_win(ranking, index)),
            style="bold" if place == 1 else None,
        )
    return table


def cost_line(ranking: Ranking) -> str:
    cost = ranking.cost
    cached = f", {cost.cached} cached" if cost.cached else ""
    return (
        f"{cost.comparisons} of {ranking.possible_comparisons} comparisons ({cost.judgments} judgments{cached}) · "
        f"{number(cost.tokens_in, 0)} tokens in, {number(cost.tokens_out, 0)} out · {cost.wall_seconds:.1f}s · "
        f"scores from {'verdicts' if ranking.outcome == 'verdict' else 'probabilities'}{_STOPPED[ranking.stopped]}"
    )


def print_ranking(ranking: Ranking) -> None:
    stdout.print(ranking_table(ranking))
    stdout.print(f"[dim]{escape(cost_line(ranking))}[/]", highlight=False, soft_wrap=True)
