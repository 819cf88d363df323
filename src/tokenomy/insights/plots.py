"""PNG charts of a simulation (matplotlib, from the ``insights`` extra).

Figures are drawn on the Agg canvas directly: no pyplot, so no global figure
state and no display needed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .simulate import Simulation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_policy_costs", "plot_spend_over_time"]


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_spend_over_time(sim: Simulation, path: str | Path) -> Path:
    """Spend per day (when the traffic has times) or cumulative spend over the
    requests in order, for the baseline and each policy."""
    fig = _figure(9, 4.8)
    ax = fig.add_subplot()
    curves = sim.curves
    series = []
    labelled = [("baseline", sim.baseline_unpriced)]
    labelled += [(r.name, r.unpriced_after) for r in sim.results]
    for i, (label, unknown) in enumerate(labelled):
        if unknown == sim.requests:
            continue  # no known price at all: nothing honest to draw
        if unknown:
            label += f" ({unknown} unpriced, not counted)"
        series.append((label, i))
    if curves.requests and curves.timed:
        for label, i in series:
            per_day = curves.series[i].daily
            days = sorted(per_day)
            xs = [datetime(d.year, d.month, d.day, tzinfo=UTC) for d in days]
            ax.plot(
                xs,  # type: ignore[arg-type]  # matplotlib plots datetimes; its stubs omit them
                [float(per_day[d]) for d in days],
                marker=".",
                label=label,
                linewidth=2.2 if label == "baseline" else 1.2,
            )
        ax.set_xlabel("day (UTC)")
        ax.set_ylabel("spend per day (USD)")
        fig.autofmt_xdate()
    else:
        for label, i in series:
            points = curves.cumulative(i)
            ax.plot([n for n, _ in points], [float(v) for _, v in points], label=label,
                    linewidth=2.2 if label == "baseline" else 1.2)  # fmt: skip
        ax.set_xlabel("requests replayed, in log order (the log has no times)")
        ax.set_ylabel("cumulative spend (USD)")
    ax.set_title(f"Spend: {sim.source}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out = Path(path)
    fig.savefig(out)
    return out


def plot_policy_costs(sim: Simulation, path: str | Path) -> Path:
    """Cost before and after, per policy (priced requests on both sides)."""
    fig = _figure(9, 0.55 * len(sim.results) + 1.6)
    ax = fig.add_subplot()
    names = [r.name for r in sim.results]
    ys = range(len(names))
    before = [float(r.before) for r in sim.results]
    after = [float(r.after) for r in sim.results]
    ax.barh([y + 0.2 for y in ys], before, height=0.4, label="before", color="#999999")
    ax.barh([y - 0.2 for y in ys], after, height=0.4, label="after", color="#2a7ab9")
    for y, r in zip(ys, sim.results, strict=True):
        note = "price unknown" if r.unpriced_after == r.requests else f"${r.after:.2f}"
        ax.text(float(r.after), y - 0.2, f" {note}", va="center", fontsize=7)
    ax.set_yticks(list(ys), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("cost (USD, today's prices)")
    ax.set_title(f"Cost before and after each policy: {sim.source}", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    out = Path(path)
    fig.savefig(out)
    return out
