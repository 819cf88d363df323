"""/metrics stays bounded whatever model names clients send (label cardinality)."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx2 as httpx
import openai
import pytest

from gateway_fixtures import GW
from tokenomy import metrics as metrics_module
from tokenomy.metrics import MAX_MODEL_CHARS, MAX_MODELS, OTHER_MODEL, Metrics
from tokenomy.records import UsageRecord

MSG = [{"role": "user", "content": "hi"}]


def test_model_labels_are_bounded_whatever_the_names() -> None:
    m = Metrics()
    first = UsageRecord("r-first", requested_model="gpt-4o", served_model="gpt-4o", team="t",
                        cost_usd=Decimal("0.01"), latency_ms=5.0)  # fmt: skip
    m.observe(first)
    for i in range(3 * MAX_MODELS):
        m.observe(UsageRecord(f"r{i}", requested_model=f"made-up-{i}", team="t", status=404,
                              error_type="not_found_error", latency_ms=1.0))  # fmt: skip
    m.observe(UsageRecord("r-long", requested_model="x" * (MAX_MODEL_CHARS + 1), status=404))
    for table in (m.requests, m.errors, m.latency_sum, m.latency_count):
        models = {labels[0] for labels in table}
        assert len(models) <= MAX_MODELS + 1
    assert OTHER_MODEL in {labels[0] for labels in m.requests}
    assert m.requests["gpt-4o", "t", "200"] == 1  # a model seen early keeps its own series
    assert sum(m.requests.values()) == 3 * MAX_MODELS + 2  # every request still counted
    m.observe(first)
    assert m.requests["gpt-4o", "t", "200"] == 2


def test_unknown_model_names_do_not_grow_metrics(
    fresh_gw: GW, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "MAX_MODELS", 3)
    client = fresh_gw.openai()
    client.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    for i in range(6):
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=f"no-such-model-{i}", messages=MSG)  # type: ignore[arg-type]
    text = httpx.get(fresh_gw.url + "/metrics").text
    models = set(re.findall(r'^tokenomy_requests_total\{model="([^"]*)"', text, re.M))
    assert "gpt-4o" in models and f'model="{OTHER_MODEL}"' in text
    assert len(models) <= 4
