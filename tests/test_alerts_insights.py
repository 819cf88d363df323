"""Alert firing rules, de-duplication, and the webhook as a Slack endpoint sees it."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tokenomy.insights.alerts import (
    AlertRules,
    FileAlertLog,
    MemoryAlertLog,
    budget_crossings,
    check,
    deliver,
    spend_anomalies,
    unpriced_models,
)
from tokenomy.records import UsageRecord

TODAY = date(2025, 3, 20)


def flat(days: int, amount: str, *, end: date = TODAY) -> list[tuple[date, Decimal]]:
    return [(end - timedelta(days - i), Decimal(amount)) for i in range(days)]


def ts(day: date, hour: int = 12) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()


# -- anomalies ---------------------------------------------------------------------------


def test_anomaly_fires_at_k_times_the_typical_day_and_not_below() -> None:
    rules = AlertRules(k=Decimal(3), min_spend=Decimal(1))
    history = flat(28, "10")
    at_k = {"team=search": [*history, (TODAY, Decimal("30"))]}
    below = {"team=search": [*history, (TODAY, Decimal("29.99"))]}
    fired = spend_anomalies(at_k, today=TODAY, rules=rules)
    assert [(a.kind, a.scope) for a in fired] == [("spend_anomaly", "team=search")]
    assert "3.0x" in fired[0].text and dict(fired[0].fields)["typical_usd"] == "10"
    assert spend_anomalies(below, today=TODAY, rules=rules) == []


def test_typical_day_is_the_median_with_idle_days_as_zero() -> None:
    # 10 busy days at $10 and 18 idle days in the baseline: the median day is $0,
    # so any spend of at least min_spend is an anomaly.
    series = [*flat(10, "10", end=TODAY - timedelta(18)), (TODAY, Decimal(2))]
    rules = AlertRules(min_spend=Decimal(2))
    assert len(spend_anomalies({"model=x": series}, today=TODAY, rules=rules)) == 1
    assert (
        spend_anomalies({"model=x": series}, today=TODAY, rules=AlertRules(min_spend=Decimal(3)))
        == []
    )


def test_anomaly_needs_history_and_min_spend() -> None:
    new_scope = {"team=new": [*flat(3, "1"), (TODAY, Decimal(100))]}
    assert spend_anomalies(new_scope, today=TODAY) == []  # 3 days: no typical day yet
    tiny = {"team=t": [*flat(28, "0.01"), (TODAY, Decimal("0.5"))]}
    assert spend_anomalies(tiny, today=TODAY) == []  # 50x, but under $1


def test_anomaly_fires_once_per_day_per_scope_from_records() -> None:
    records = [
        UsageRecord(f"h{i}", ts=ts(TODAY - timedelta(i)), team="search",
                    served_model="gpt-4o", cost_usd=Decimal(5))
        for i in range(1, 29)
    ]  # fmt: skip
    records.append(UsageRecord("t1", ts=ts(TODAY, 9), team="search", served_model="gpt-4o",
                               cost_usd=Decimal(20)))  # fmt: skip
    seen = MemoryAlertLog()
    first = check(records, today=TODAY, seen=seen)
    assert sorted(a.scope for a in first) == ["model=gpt-4o", "team=search"]
    records.append(UsageRecord("t2", ts=ts(TODAY, 10), team="search", served_model="gpt-4o",
                               cost_usd=Decimal(20)))  # fmt: skip
    assert check(records, today=TODAY, seen=seen) == []  # same day: already sent
    tomorrow = TODAY + timedelta(1)
    records.append(UsageRecord("t3", ts=ts(tomorrow), team="search", served_model="gpt-4o",
                               cost_usd=Decimal(50)))  # fmt: skip
    assert len(check(records, today=tomorrow, seen=seen)) == 2  # a new day fires again


# -- budgets -----------------------------------------------------------------------------


def test_budget_fires_only_when_the_projection_crosses_before_period_end() -> None:
    # $10 a day from March 1 to 20, flat: the March forecast is 31 x $10 = $310.
    series = {"team=search": [(date(2025, 3, 1) + timedelta(i), Decimal(10)) for i in range(20)]}
    fired = budget_crossings(series, {"team=search": Decimal(300)}, today=TODAY)
    assert len(fired) == 1
    fields = dict(fired[0].fields)
    assert fields["crosses_on"] == "2025-03-30" and fields["projected_usd"] == "310.000000"
    assert budget_crossings(series, {"team=search": Decimal(310)}, today=TODAY) != []
    assert budget_crossings(series, {"team=search": Decimal("310.01")}, today=TODAY) == []


def test_budget_already_spent_fires_and_once_per_period() -> None:
    recs = [UsageRecord(f"r{i}", ts=ts(date(2025, 3, 1) + timedelta(i)), org="acme",
                        cost_usd=Decimal(50)) for i in range(20)]  # fmt: skip
    rules = AlertRules(anomaly_by=(), budgets={"org=acme": Decimal(500), "total": Decimal(10_000)})
    seen = MemoryAlertLog()
    fired = check(recs, today=TODAY, rules=rules, seen=seen)
    assert [a.scope for a in fired] == ["org=acme"] and "already" in fired[0].text
    assert check(recs, today=TODAY + timedelta(1), rules=rules, seen=seen) == []


# -- unpriced models ---------------------------------------------------------------------


def test_unpriced_model_fires_on_first_appearance_only() -> None:
    yesterday = TODAY - timedelta(1)
    recs = [
        UsageRecord("a", ts=ts(yesterday), served_model="old-mystery", price_unknown=True),
        UsageRecord("b", ts=ts(TODAY), served_model="old-mystery", price_unknown=True),
        UsageRecord("c", ts=ts(TODAY), served_model="new-mystery", provider="vllm",
                    price_unknown=True),
        UsageRecord("d", ts=ts(TODAY), served_model="gpt-4o", cost_usd=Decimal(1)),
    ]  # fmt: skip
    fired = unpriced_models(recs, today=TODAY)
    assert [a.scope for a in fired] == ["model=new-mystery"]
    seen = MemoryAlertLog()
    rules = AlertRules(anomaly_by=())
    assert len(check(recs, today=TODAY, rules=rules, seen=seen)) == 1
    assert check(recs, today=TODAY, rules=rules, seen=seen) == []


def test_file_alert_log_survives_a_restart(tmp_path: Path) -> None:
    recs = [UsageRecord("c", ts=ts(TODAY), served_model="m", price_unknown=True)]
    path = tmp_path / "alerts.log"
    assert len(check(recs, today=TODAY, seen=FileAlertLog(path))) == 1
    assert check(recs, today=TODAY, seen=FileAlertLog(path)) == []


def test_check_is_deterministic() -> None:
    recs = [UsageRecord(f"r{i}", ts=ts(TODAY - timedelta(i)), team="t", cost_usd=Decimal(i or 99))
            for i in range(30)]  # fmt: skip
    assert check(recs, today=TODAY) == check(list(reversed(recs)), today=TODAY)


# -- delivery ----------------------------------------------------------------------------


class _Sink(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, Any], str]]] = []

    answers: ClassVar[list[int]] = []  # statuses for the next posts (then 200)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        status = self.answers.pop(0) if self.answers else 200
        if status == 200:
            self.received.append((self.path, json.loads(body), self.headers["content-type"]))
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _serve(answers: list[int]) -> Iterator[tuple[str, list[tuple[str, dict[str, Any], str]]]]:
    received: list[tuple[str, dict[str, Any], str]] = []
    handler = type("Sink", (_Sink,), {"received": received, "answers": answers})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/T000/B000", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sink() -> Iterator[tuple[str, list[tuple[str, dict[str, Any], str]]]]:
    with _serve([]) as served:
        yield served


def test_webhook_json_has_slacks_text_field(
    sink: tuple[str, list[tuple[str, dict[str, Any], str]]], caplog: pytest.LogCaptureFixture
) -> None:
    url, received = sink
    recs = [UsageRecord("c", ts=ts(TODAY), served_model="mystery", price_unknown=True)]
    alerts = check(recs, today=TODAY)
    with caplog.at_level(logging.WARNING, logger="tokenomy.alerts"):
        assert deliver(alerts, webhook_url=url) == []
    assert len(received) == 1
    path, body, ctype = received[0]
    assert path == "/hooks/T000/B000" and ctype == "application/json"
    assert isinstance(body["text"], str) and "mystery" in body["text"]
    fields = {f["title"]: f["value"] for f in body["attachments"][0]["fields"]}
    assert fields["model"] == "mystery"
    assert body["tokenomy"]["kind"] == "unpriced_model"
    assert any("alert unpriced_model model=mystery" in r.message for r in caplog.records)


def test_a_failed_webhook_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    alerts = check([UsageRecord("c", ts=ts(TODAY), served_model="m", price_unknown=True)],
                   today=TODAY)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="tokenomy.alerts"):
        failed = deliver(
            alerts, webhook_url=f"http://127.0.0.1:{port}/", timeout=2, delays=(0.01, 0.01)
        )
    assert failed == alerts
    assert sum("trying again" in r.message for r in caplog.records) == 2
    assert any("webhook failed" in r.message for r in caplog.records)


@pytest.mark.parametrize(("answers", "posts", "delivered"),
                         [([503, 429], 3, True), ([404], 1, False), ([503] * 3, 3, False)])  # fmt: skip
def test_a_failed_webhook_is_tried_again_when_it_may_recover(
    answers: list[int], posts: int, delivered: bool
) -> None:
    alerts = check([UsageRecord("c", ts=ts(TODAY), served_model="m", price_unknown=True)],
                   today=TODAY)  # fmt: skip
    left = list(answers)
    with _serve(left) as (url, received):
        failed = deliver(alerts, webhook_url=url, delays=(0.01, 0.01))
    assert (failed == []) is delivered and len(received) == int(delivered)
    assert len(answers) - len(left) + int(delivered) == posts


def test_a_stopping_watcher_does_not_wait_to_retry() -> None:
    import time

    alerts = check([UsageRecord("c", ts=ts(TODAY), served_model="m", price_unknown=True)],
                   today=TODAY)  # fmt: skip
    stop = threading.Event()
    stop.set()
    with _serve([503]) as (url, received):
        began = time.monotonic()
        failed = deliver(alerts, webhook_url=url, delays=(60.0,), stop=stop)
    assert failed == alerts and received == [] and time.monotonic() - began < 10


def test_check_reads_its_records_once() -> None:
    """Every rule comes from one pass, so the records can stream from the ledger."""
    recs = [UsageRecord(f"r{i}", ts=ts(TODAY - timedelta(i)), team="t", org="acme",
                        served_model="m", cost_usd=Decimal(i or 99)) for i in range(30)]  # fmt: skip
    recs.append(UsageRecord("u", ts=ts(TODAY), served_model="new", price_unknown=True))
    rules = AlertRules(budgets={"org=acme": Decimal(100)})
    whole = check(recs, today=TODAY, rules=rules)
    assert sorted(a.kind for a in whole) == [
        "forecast_over_budget", "spend_anomaly", "spend_anomaly", "unpriced_model"
    ]  # fmt: skip
    assert check(iter(recs), today=TODAY, rules=rules) == whole
