"""The upstream's own id for its reply (OpenAI ``x-request-id``, Anthropic
``request-id``), which its support asks for, reaches the client as
``x-tokenomy-upstream-request-id`` and the ledger row as ``upstream_request_id``:
for JSON replies, streams and refusals, and for each failed attempt of a fallback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from gateway_fixtures import GW, Fake, dep, gateway_settings, start_gateway
from routing_helpers import route_of
from tokenomy.testing import serve_in_thread

HEADER = "x-tokenomy-upstream-request-id"
ONLY_4O = "[[fake:only=gpt-4o]]"


class Witness:
    """Sits between the gateway and the fake: notes the request id of each reply."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ids: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def noting(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                for name, value in msg["headers"]:
                    if name in (b"x-request-id", b"request-id"):
                        self.ids.append(value.decode())
            await send(msg)

        await self.app(scope, receive, noting)


@pytest.fixture(scope="module")
def witnessed(
    fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GW, Witness]]:
    witness = Witness(fake.app)
    with serve_in_thread(witness) as url:
        models = (
            dep("gpt-4o", "openai", url + "/v1", max_retries=1),
            dep("o3", "openai", url + "/v1"),
            dep("claude-*", "anthropic", url),
        )
        db = str(tmp_path_factory.mktemp("upid") / "ledger.db")
        settings = gateway_settings(
            db, fake, fake_llamacpp, routing={"fallbacks": {"gpt-4o": ["o3"]}}
        )
        settings = replace(settings, deployments=models)
        for gw in start_gateway(settings, fake):
            yield gw, witness


def say(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("model", ["gpt-4o", "claude-haiku-4-5"])
def test_a_json_reply_keeps_the_upstreams_id(witnessed: tuple[GW, Witness], model: str) -> None:
    gw, witness = witnessed
    raw = gw.openai().chat.completions.with_raw_response.create(model=model, messages=say("hi"))
    upstream = witness.ids[-1]
    assert raw.headers[HEADER] == upstream != raw.headers["x-tokenomy-request-id"]
    assert gw.record(raw.headers["x-tokenomy-request-id"]).upstream_request_id == upstream


@pytest.mark.parametrize("model", ["gpt-4o", "claude-haiku-4-5"])
def test_a_stream_keeps_the_upstreams_id(witnessed: tuple[GW, Witness], model: str) -> None:
    gw, witness = witnessed
    with gw.anthropic().messages.with_streaming_response.create(
        model=model, max_tokens=20, messages=say("hi"), stream=True
    ) as resp:
        resp.read()
        rid, got = resp.headers["x-tokenomy-request-id"], resp.headers[HEADER]
        assert resp.headers["request-id"] == rid  # the SDK's request id stays the gateway's
    assert got == witness.ids[-1]
    assert gw.record(rid).upstream_request_id == got


def test_a_refusal_keeps_the_upstreams_id(witnessed: tuple[GW, Witness]) -> None:
    gw, witness = witnessed
    with pytest.raises(anthropic.BadRequestError) as err:
        gw.anthropic().messages.create(
            model="claude-haiku-4-5", max_tokens=20, messages=say("hi [[fake:status=400]]")
        )
    upstream = witness.ids[-1]
    assert err.value.response.headers[HEADER] == upstream
    assert err.value.request_id is not None  # the gateway's, naming the ledger row
    assert gw.record(err.value.request_id).upstream_request_id == upstream


def test_the_failed_attempts_of_a_fallback_keep_their_upstream_ids(
    witnessed: tuple[GW, Witness],
) -> None:
    gw, witness = witnessed
    before = len(witness.ids)
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=say(f"hi [[fake:status=500]] [[fake:retry_after=0]] {ONLY_4O}"),
    )
    failed, served = witness.ids[before], witness.ids[-1]
    assert len(witness.ids) == before + 3  # gpt-4o, its retry, then o3
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.served_model == "o3" and rec.upstream_request_id == served == raw.headers[HEADER]
    attempt = route_of(rec)["attempts"][0]
    assert attempt["upstream_request_id"] == witness.ids[before + 1]  # its last reply
    assert failed != witness.ids[before + 1]


def test_a_request_no_upstream_answered_names_no_upstream_reply(
    witnessed: tuple[GW, Witness],
) -> None:
    gw, _ = witnessed
    with pytest.raises(openai.NotFoundError) as err:
        gw.openai().chat.completions.create(model="nowhere", messages=say("hi"))
    assert HEADER not in err.value.response.headers  # no upstream was asked


@pytest.fixture
def judged(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[tuple[GW, Witness]]:
    """A cascade over gpt-4o-mini and gpt-4o, and a judge rating every routed answer."""
    witness = Witness(fake.app)
    with serve_in_thread(witness) as url:
        models = tuple(dep(m, "openai", url + "/v1") for m in ("gpt-4o-mini", "gpt-4o", "o3"))
        routing = {
            "tiers": ["gpt-4o-mini", "gpt-4o"],
            "cascade": {"threshold": 0.67, "samples": 3},
            "judge": {"sample_rate": 1.0, "model": "o3"},
        }
        settings = gateway_settings(str(tmp_path / "ledger.db"), fake, fake_llamacpp,
                                    routing=routing)  # fmt: skip
        for gw in start_gateway(replace(settings, deployments=models), fake):
            yield gw, witness


def test_a_drafts_and_a_judges_rows_keep_their_own_upstream_ids(
    judged: tuple[GW, Witness],
) -> None:
    gw, witness = judged
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="cheap-first", messages=say("what is 6 times 7 [[fake:vary]]")
    )
    rid = raw.headers["x-tokenomy-request-id"]
    deadline = time.monotonic() + 5
    while gw.store.get_record(rid + ".judge") is None:
        assert time.monotonic() < deadline, "no judgement"
        time.sleep(0.02)
    draft, served, judged_by = witness.ids  # the draft tier, the strong tier, the judge
    assert gw.record(rid).upstream_request_id == served == raw.headers[HEADER]
    assert gw.record(rid + ".draft").upstream_request_id == draft
    assert gw.record(rid + ".judge").upstream_request_id == judged_by
    assert len({draft, served, judged_by}) == 3
