"""`tokenomy router`: train the learned router on outcome data, and evaluate routers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..routing.config import DEFAULT_QUALITY_TARGET
from ..routing.learned.features import DEFAULT_HASH_DIM
from ..routing.learned.train import DEFAULT_HOLDOUT, DEFAULT_L2
from .common import config_option, db_option


@click.group()
def router() -> None:
    """The learned router: train it on outcome data, evaluate it (docs/router.md)."""


@router.command()
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Outcome JSONL file (repeatable); format in docs/router.md.",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="Weights file to write (.npz)."
)
@click.option(
    "--head",
    "heads",
    multiple=True,
    help="A head: NAME=MODEL[,MODEL...], least capable first (repeatable). "
    "Default: the cheapest model, then the dearest.",
)
@click.option(
    "--holdout",
    default=DEFAULT_HOLDOUT,
    show_default=True,
    help="Share of prompts held out to calibrate the knob.",
)
@click.option(
    "--l2", default=DEFAULT_L2, show_default=True, help="L2 regularisation of the logistic heads."
)
@click.option(
    "--hash-dim",
    default=DEFAULT_HASH_DIM,
    show_default=True,
    help="Buckets for hashed words (0: none).",
)
@click.option(
    "--embed/--no-embed",
    default=False,
    show_default=True,
    help="Add the MiniLM embedding (semantic extra; about 20 ms more per decision).",
)
def train(
    data: tuple[str, ...],
    out: str,
    heads: tuple[str, ...],
    holdout: float,
    l2: float,
    hash_dim: int,
    embed: bool,
) -> None:
    """Build a router from outcome files (prompts with per-model scores)."""
    from ..routing.learned.features import Spec
    from ..routing.learned.outcomes import read_all
    from ..routing.learned.train import Head
    from ..routing.learned.train import train as fit

    try:
        outcomes = read_all(data)
        if not outcomes:
            raise click.ClickException("the outcome files hold no prompt")
        spec = Spec(hash_dim=hash_dim, embed=embed)
        parsed = [Head.parse(h) for h in heads] or None
        trained = fit(outcomes, parsed, spec=spec, holdout=holdout, l2=l2)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    trained.router.save(out)
    rep = trained.report
    click.echo(
        f"trained on {rep['train']} of {rep['prompts']} prompts, calibrated on "
        f"{rep['calibration_prompts']}; heads: "
        + "; ".join(f"{k}={','.join(v)}" for k, v in rep["heads"].items())
    )
    click.echo(f"wrote {out} ({Path(out).stat().st_size} bytes)")


@router.command(name="eval")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Outcome JSONL file to evaluate on.",
)
@click.option(
    "--router",
    "router_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Weights file (default: the shipped router).",
)
@click.option("--weak", help="Weak model (default: the cheapest, else the lowest-scoring).")
@click.option("--strong", help="Strong model (default: the dearest, else the highest-scoring).")
@click.option(
    "--quality",
    default=DEFAULT_QUALITY_TARGET,
    show_default=True,
    help="Quality target, as a share of the strong model's.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def eval_(
    data: str,
    router_path: str | None,
    weak: str | None,
    strong: str | None,
    quality: float,
    as_json: bool,
) -> None:
    """APGR, CPT(50%), CPT(80%) and the cost saved at a quality target, against the random
    and length baselines."""
    from dataclasses import asdict

    from ..routing.learned import Router
    from ..routing.learned.evaluate import compare, pick_pair, table
    from ..routing.learned.outcomes import read_all

    try:
        outcomes = read_all([data])
        if not outcomes:
            raise click.ClickException("the outcome file holds no prompt")
        pair = pick_pair(outcomes, weak, strong)
        model = Router.load(router_path)
        win = model.win_scores(model.predict([o.prompt for o in outcomes]))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = compare(outcomes, [-float(p) for p in win], pair, quality)
    if as_json:
        click.echo(
            json.dumps(
                {"weak": pair.weak, "strong": pair.strong, "rows": [asdict(r) for r in rows]},
                indent=2,
            )
        )
    else:
        click.echo(table(rows, pair, quality, title=Path(data).name))


@router.command(name="export-feedback")
@db_option
@config_option
@click.option("--since", default=None, help="Only feedback from then on (date or 7d / 24h).")
@click.option(
    "--out", default="-", type=click.Path(dir_okay=False, allow_dash=True),
    help="Outcome JSONL file to write ('-': stdout).",
)  # fmt: skip
def export_feedback(db: str | None, config_path: str | None, since: str | None, out: str) -> None:
    """Write scored requests as outcome JSONL for `tokenomy router train`.

    Needs `routing.collect_prompts: true` while the traffic was served: only
    requests whose prompt was kept, and that got feedback, are exported.
    """
    import orjson

    from ..config import load_settings
    from ..ledger import open_store
    from ..routing.feedback import FeedbackStore
    from .report import parse_when

    settings = load_settings(config_path, db=db)
    lo = parse_when(since, option="--since") if since else None
    count = 0
    try:
        target = click.open_file(out, "wb")
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from exc
    with open_store(settings.db) as store, target as fh:
        store.migrate()
        for line in FeedbackStore(store).outcomes(since=lo):
            fh.write(orjson.dumps(line) + b"\n")
            count += 1
    click.echo(f"exported {count} scored prompts", err=True)
