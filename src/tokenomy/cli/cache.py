"""`tokenomy cache ...`: the response cache's commands."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table


@click.group()
def cache() -> None:
    """The response cache (exact and semantic)."""


@cache.command("eval")
@click.option("--pairs", "pairs_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSONL of {"text_a", "text_b", "label"} pairs (label 1 = same question).')  # fmt: skip
@click.option("--target", "targets", type=click.FloatRange(0.0, 1.0, min_open=True),
              multiple=True, default=[0.02], show_default=True,
              help="Target wrong-hit rate (share of served hits that are wrong); repeatable.")  # fmt: skip
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the pairs' embeddings here and reuse them on the next run.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def eval_(
    pairs_path: Path, targets: tuple[float, ...], cache_dir: Path | None, as_json: bool
) -> None:
    """Check the shipped semantic-cache verifier on your own labelled pairs.

    Each pair is served as a lookup (text_a stored, text_b asked). Prints, per
    target, the verifier's recall and wrong-hit rate next to a cosine-threshold
    baseline calibrated on the same dev data, and the baseline's best recall at
    the verifier's wrong-hit rate on these pairs."""
    try:
        from ..cache.semantic import shipped_verifier
        from ..cache.semantic.evaluate import evaluate, score
        from ..cache.semantic.pairs import embed_pairs
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise click.ClickException(
            f"needs the semantic extra: pip install 'tokenomy[semantic]' ({exc})"
        ) from exc
    try:
        pairs = embed_pairs(pairs_path, cache_dir=cache_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    verifier = shipped_verifier()
    scored = score(pairs, verifier)
    results = {t: evaluate(scored, verifier, t) for t in targets}
    if as_json:
        out = {
            "pairs": len(pairs),
            "duplicates": int(pairs.labels.sum()),
            "targets": {
                str(t): {k: s.as_dict() for k, s in rows.items()} for t, rows in results.items()
            },
        }
        click.echo(json.dumps(out, indent=2))
        return
    table = Table(box=box.SIMPLE, title=f"{pairs_path.name}: {len(pairs)} pairs, "
                  f"{int(pairs.labels.sum())} duplicates")  # fmt: skip
    for col in ("target", "rule", "threshold", "served", "wrong", "recall", "wrong-hit rate"):
        table.add_column(col, justify="left" if col == "rule" else "right", no_wrap=True)
    for target, rows in results.items():
        for s in rows.values():
            table.add_row(
                f"{target:.1%}",
                s.rule,
                f"{s.threshold:.4f}",
                str(s.hits),
                str(s.wrong),
                f"{s.recall:.1%}",
                f"{s.wrong_hit_rate:.2%}",
            )
    Console().print(table)
