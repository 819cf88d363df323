"""`tokenomy simulate`: replay logged traffic under another policy."""

from __future__ import annotations

import contextlib
import json
import math
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from ..config import load_settings

INSTALL_HINT = "this needs the insights extra: pip install 'tokenomy[insights]'"


def _decimal(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip().rstrip("%"))
    except InvalidOperation:
        raise click.BadParameter(f"{what}: {text!r} is not a number") from None
    if not value.is_finite():  # NaN cannot be compared with a bound: a traceback further on
        raise click.BadParameter(f"{what}: {text!r} is not a finite number")
    return value / 100 if text.strip().endswith("%") else value


def _policies(
    move: tuple[tuple[str, str], ...],
    price_change: tuple[tuple[str, str], ...],
    cache: str | None,
    compress: str | None,
    cap: tuple[tuple[str, str], ...],
    flex: tuple[str, ...],
) -> list[Any]:
    from ..insights.simulate import (
        Compress,
        Flex,
        OutputCap,
        PriceChange,
        Reroute,
        ResponseCache,
        Selector,
    )

    out: list[Any] = []
    try:
        for sel, target in move:
            model, _, provider = target.partition("@")
            out.append(Reroute(Selector.parse(sel), model, provider or None))
        for sel, factors in price_change:
            fin, _, fout = factors.partition(",")
            f_in = _decimal(fin, "--price-change")
            out.append(PriceChange(Selector.parse(sel), f_in, _decimal(fout, "--price-change")
                                   if fout else f_in))  # fmt: skip
        if cache is not None:
            out.append(ResponseCache(_decimal(cache, "--cache")))
        if compress is not None:
            out.append(Compress(_decimal(compress, "--compress")))
        for sel, tokens in cap:
            if not tokens.isdigit():
                raise click.BadParameter(f"--cap: {tokens!r} is not a whole number of tokens")
            out.append(OutputCap(Selector.parse(sel), int(tokens)))
        out.extend(Flex(Selector.parse(sel)) for sel in flex)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return out


def _auto(tiers: str, target: str) -> Any:
    from ..insights.route_policy import LearnedRoute

    names = tuple(t.strip() for t in tiers.split(",") if t.strip())
    if len(names) < 2:
        raise click.BadParameter("--auto: give at least two tiers, cheap first: a,b")
    quality = _decimal(target, "--auto")
    if not 0 <= quality <= 1:
        raise click.BadParameter("--auto: the quality target is between 0 and 1")
    return LearnedRoute(names, float(quality))


@click.command()
@click.option("--db", default=None, envvar="TOKENOMY_DB", help="Ledger to replay (path or URL).")
@click.option("--config", "config_path", default=None,
              help="YAML config file (its price overrides apply).")  # fmt: skip
@click.option("--jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay an OpenAI-format JSONL log instead of the ledger.")  # fmt: skip
@click.option("--alpaca-eval", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay an AlpacaEval outputs parquet file instead of the ledger.")  # fmt: skip
@click.option("--generator", default="gpt4_1106_preview", show_default=True,
              help="With --alpaca-eval: whose answers are the traffic.")  # fmt: skip
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Only the ledger's last N days.")  # fmt: skip
@click.option("--move", nargs=2, multiple=True, metavar="SELECTOR MODEL[@PROVIDER]",
              help="Send matching requests to another model, e.g. --move team=search gpt-4o-mini.")  # fmt: skip
@click.option("--price-change", nargs=2, multiple=True, metavar="SELECTOR FACTOR[,OUT]",
              help="Multiply matching prices, e.g. --price-change provider=anthropic 0.8.")  # fmt: skip
@click.option("--cache", default=None, metavar="H",
              help="A response cache with hit rate H (0.3 or 30%).")  # fmt: skip
@click.option("--compress", default=None, metavar="R",
              help="Shrink uncached input tokens R times (2 sends half).")  # fmt: skip
@click.option("--cap", nargs=2, multiple=True, metavar="SELECTOR TOKENS",
              help="Cap output tokens, e.g. --cap route=/v1/chat/completions 512.")  # fmt: skip
@click.option("--flex", multiple=True, metavar="SELECTOR",
              help="Serve matching requests at OpenAI's flex tier, e.g. --flex team=evals.")  # fmt: skip
@click.option("--auto", nargs=2, default=None, metavar="TIERS TARGET",
              help="Route requests with a prompt by the learned router over TIERS "
                   "(cheap,...,strong) at a quality TARGET, e.g. --auto gpt-4o-mini,gpt-4o 0.95.")  # fmt: skip
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write spend-over-time and before/after PNG charts to this folder.")  # fmt: skip
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)  # fmt: skip
def simulate(
    db: str | None,
    config_path: str | None,
    jsonl: Path | None,
    alpaca_eval: Path | None,
    generator: str,
    days: float | None,
    move: tuple[tuple[str, str], ...],
    price_change: tuple[tuple[str, str], ...],
    cache: str | None,
    compress: str | None,
    cap: tuple[tuple[str, str], ...],
    flex: tuple[str, ...],
    auto: tuple[str, str] | None,
    plots: Path | None,
    output_format: str,
) -> None:
    """Replay logged traffic under other policies and print what they would cost.

    Traffic comes from the ledger (default), an OpenAI-format JSONL log (--jsonl)
    or AlpacaEval outputs (--alpaca-eval). Each policy is priced alone, then all
    together, at today's prices. SELECTOR is *, team=X, route=X, model=X,
    provider=X or tag:NAME=X. Quality effects are shown only where the traffic
    holds evidence; otherwise they are "unknown".
    """
    from ..insights.simulate import render_table
    from ..insights.simulate import simulate as run
    from ..insights.traffic import Traffic, from_alpaca_eval, from_jsonl, from_ledger
    from ..ledger import open_store
    from ..pipeline.meter import overrides_from
    from ..pricing import PriceBook

    if days is not None and not math.isfinite(days):
        raise click.BadParameter(f"{days}: not a number of days", param_hint="--days")
    if jsonl is not None and alpaca_eval is not None:
        raise click.UsageError("give --jsonl or --alpaca-eval, not both")
    policies = _policies(move, price_change, cache, compress, cap, flex)
    if auto is not None:
        policies.append(_auto(*auto))
    if not policies:
        raise click.UsageError("give at least one policy: --move, --price-change, --cache, "
                               "--compress, --cap, --flex or --auto")  # fmt: skip
    settings = load_settings(config_path, db=db)
    traffic: Traffic
    with contextlib.ExitStack() as opened:
        try:
            if jsonl is not None:
                traffic = from_jsonl(jsonl)
            elif alpaca_eval is not None:
                traffic = from_alpaca_eval(alpaca_eval, generator=generator)
            else:
                store = opened.enter_context(open_store(settings.db))
                store.migrate()
                since = time.time() - days * 86400 if days else None
                traffic = from_ledger(store, since=since)
        except ImportError as exc:
            raise click.ClickException(f"{INSTALL_HINT} ({exc})") from exc
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        # the ledger is read as the simulation goes, a page at a time
        sim = run(traffic, policies, prices=PriceBook(overrides_from(settings.deployments)))
    if not sim.requests:
        raise click.ClickException(f"no traffic to replay in {sim.source}")

    written: list[Path] = []
    if plots is not None:
        try:
            from ..insights.plots import plot_policy_costs, plot_spend_over_time
        except ImportError as exc:
            raise click.ClickException(f"{INSTALL_HINT} ({exc})") from exc
        plots.mkdir(parents=True, exist_ok=True)
        written = [
            plot_spend_over_time(sim, plots / "spend_over_time.png"),
            plot_policy_costs(sim, plots / "cost_by_policy.png"),
        ]
    if output_format == "json":
        click.echo(json.dumps(_json(sim, written), indent=2))
        return
    click.echo(render_table(sim))
    for path in written:
        click.echo(f"wrote {path}")


def _json(sim: Any, plots: list[Path]) -> dict[str, Any]:
    def money(d: Decimal | None) -> str | None:
        return None if d is None else format(d, "f")

    return {
        "source": sim.source,
        "requests": sim.requests,
        "baseline_usd": money(sim.baseline_total),
        "baseline_unpriced": sim.baseline_unpriced,
        "logged_usd": money(sim.logged_total),
        "policies": [
            {
                "policy": r.name,
                "changed": r.changed,
                "before_usd": money(r.before),
                "after_usd": money(r.after),
                "saving_usd": money(r.saving),
                "unpriced_before": r.unpriced_before,
                "unpriced_after": r.unpriced_after,
                "input_tokens": [r.tokens_before.input_tokens, r.tokens_after.input_tokens],
                "output_tokens": [r.tokens_before.output_tokens, r.tokens_after.output_tokens],
                "quality": r.quality,
            }
            for r in sim.results
        ],
        "plots": [str(p) for p in plots],
    }
