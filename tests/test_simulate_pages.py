"""`tokenomy simulate` reads the ledger a page at a time and keeps only sums: its
output is the same whatever the page size, on both engines, and it never holds
the ledger's requests."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tokenomy.cli import cli
from tokenomy.insights import traffic as traffic_module
from tokenomy.insights.simulate import OutputCap, ResponseCache, Selector, simulate
from tokenomy.insights.traffic import Request, from_ledger
from tokenomy.ledger import Store, open_store
from tokenomy.pricing import PriceBook
from tokenomy.records import UsageRecord
from tokenomy.usage import Usage

T0 = 1_740_787_200.0
PRICES = PriceBook()


def fill(store: Store, n: int = 9) -> None:
    """Requests over three days, some at the same instant, one unpriced, one refused."""
    recs = []
    for i in range(n):
        model = ("gpt-4o", "gpt-4o-mini", "mystery-model")[i % 3]
        usage = Usage(1000 + 100 * i, 50 * i)
        cost = PRICES.cost(usage, model=model, provider="openai")
        recs.append(UsageRecord(f"r{i}", ts=T0 + 40_000 * (i // 2), team="ab"[i % 2],
                                served_model=model, provider="openai", usage=usage,
                                cost_usd=cost.total, price_unknown=cost.price_unknown,
                                endpoint="/v1/chat/completions"))  # fmt: skip
    recs.append(UsageRecord("refused", ts=T0 + 1, status=401, requested_model="gpt-4o"))
    store.insert_records(recs)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_output_is_the_same_for_every_page_size(
    store: Store, db_url: str, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(store)
    args = ["simulate", "--db", db_url, "--move", "team=a", "gpt-4o-mini@openai",
            "--cache", "0.3", "--cap", "*", "200", "--format", fmt]  # fmt: skip
    whole = CliRunner().invoke(cli, args)
    assert whole.exit_code == 0, whole.output
    assert "ledger (9 requests)" in whole.output
    for page in (1, 2, 3):
        monkeypatch.setattr(traffic_module, "PAGE", page)
        got = CliRunner().invoke(cli, args)
        assert got.exit_code == 0, got.output
        assert got.output == whole.output


def _live_requests() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is Request)


def test_a_simulation_holds_a_request_at_a_time_not_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted as each record is read: the requests alive then are the one being
    simulated and what its policies made of it, not every one read before."""
    with open_store(str(tmp_path / "l.db")) as store:
        store.migrate()
        fill(store, n=12)
        read = store.iter_records
        held: list[int] = []

        def spying(**kw: Any) -> Iterator[UsageRecord]:
            for rec in read(**kw):
                held.append(_live_requests() - before)
                yield rec

        monkeypatch.setattr(store, "iter_records", spying)
        monkeypatch.setattr(traffic_module, "PAGE", 2)
        before = _live_requests()
        policies = [ResponseCache(Decimal("0.5")), OutputCap(Selector(), 100)]
        sim = simulate(from_ledger(store), policies)
    assert sim.requests == 12 and len(held) == 13  # the refused row is read, not replayed
    assert max(held) <= 3, held
