"""Routing with the ledger on the real local PostgreSQL: cascade rows, decisions,
feedback with collected prompts, and the routing lever in the savings rollups."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway_fixtures import GW, Fake
from routing_helpers import chat, outcome_of, route_of, routed_gateway
from tokenomy.reports.query import scan

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_rgw(pg_schema_url: str, fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    routing = {"tiers": ["gpt-4o-mini", "gpt-4o"], "collect_prompts": True}
    yield from routed_gateway(tmp_path, fake, fake_llamacpp, routing, db=pg_schema_url)


def test_cascade_rows_feedback_and_savings_in_postgres(pg_rgw: GW) -> None:
    kept = chat(pg_rgw, "cheap-first", "what is 6 times 7")
    escalated = chat(pg_rgw, "cheap-first", "what is 6 times 7 [[fake:vary]]")
    assert kept.status == escalated.status == 200
    assert kept.record is not None and escalated.record is not None
    draft = pg_rgw.record(escalated.request_id + ".draft")
    assert route_of(draft)["parent"] == escalated.request_id
    assert Decimal(route_of(draft)["saved_usd"]) == -(draft.cost_usd or 0)

    with pg_rgw.http() as client:
        r = client.post(
            "/v1/feedback",
            json={"request_id": kept.request_id, "score": 0.9},
            headers={"authorization": f"Bearer {pg_rgw.key}"},
        )
    assert r.status_code == 200, r.text
    line = outcome_of(pg_rgw, kept.request_id)
    assert line["messages"] == [{"role": "user", "content": "what is 6 times 7"}]
    assert line["models"] == {"gpt-4o-mini": {"score": 0.9}}

    rows = [kept.record, escalated.record, draft]
    expected = sum((Decimal(route_of(x)["saved_usd"]) for x in rows), Decimal(0))
    assert scan(pg_rgw.store, dims=()).total().savings["route"] == expected
