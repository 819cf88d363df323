"""A gateway with a ``routing:`` section, and a client that returns ledger rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway_fixtures import GW, Fake, dep, gateway_settings, start_gateway
from tokenomy.config import Deployment
from tokenomy.records import UsageRecord


def extra_deployments(fake: Fake) -> tuple[Deployment, ...]:
    """Two deployments of gpt-4o (one answers as a dated model, for `only=`)."""
    v1 = fake.url + "/v1"
    return (
        dep("gpt-4o-a", "openai", v1, model="gpt-4o"),
        dep("gpt-4o-b", "openai", v1, model="gpt-4o-2024-08-06"),
    )


def routed_gateway(
    tmp_path: Path, fake: Fake, llama: Fake, routing: dict[str, Any], **kw: Any
) -> Iterator[GW]:
    db = kw.pop("db", str(tmp_path / "ledger.db"))
    settings = gateway_settings(db, fake, llama, routing=routing, **kw)
    settings = replace(settings, deployments=settings.deployments + extra_deployments(fake))
    yield from start_gateway(settings, fake)


@dataclass
class Answer:
    status: int
    body: Any
    request_id: str
    record: UsageRecord | None


def chat(
    gw: GW,
    model: str,
    text: str = "hello there",
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> Answer:
    payload = {"model": model, "messages": [{"role": "user", "content": text}], **body}
    with gw.http() as client:
        r = client.post(
            "/v1/chat/completions",
            json=payload,
            headers={"authorization": f"Bearer {key or gw.key}", **(headers or {})},
        )
    rid = r.headers.get("x-tokenomy-request-id", "")
    data = r.json() if not body.get("stream") else r.text
    return Answer(r.status_code, data, rid, gw.store.get_record(rid) if rid else None)


def route_of(rec: UsageRecord | None) -> dict[str, Any]:
    assert rec is not None
    route = rec.decisions.get("route")
    assert isinstance(route, dict), rec.decisions
    return route


def outcome_of(gw: GW, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The request's outcome line, once its collected prompt was written (prompts are
    written in the background, after the reply)."""
    import time

    from tokenomy.routing.feedback import FeedbackStore

    deadline = time.monotonic() + timeout
    while True:
        lines = [o for o in FeedbackStore(gw.store).outcomes() if o["id"] == request_id]
        if lines:
            return lines[0]
        assert time.monotonic() < deadline, f"no outcome for {request_id}"
        time.sleep(0.01)
