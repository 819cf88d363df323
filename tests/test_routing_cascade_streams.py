"""Streamed requests cascaded (``routing.cascade.streams: draft``): the draft is asked
for whole and scored; a kept one is replayed as the stream its API sends, an
escalated one is streamed from the strongest tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway_fixtures import GW, Fake
from routing_helpers import route_of, routed_gateway

SURE = "[[fake:confidence=95]] [[fake:chunks=4]] tell me"
UNSURE = "[[fake:confidence=50]] [[fake:chunks=4]] tell me"


@pytest.fixture(scope="module")
def sgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    routing = {
        "tiers": ["gpt-4o-mini", "gpt-4o"],
        "cascade": {"streams": "draft", "samples": 3},
        "aliases": {
            "sure": {"strategy": "cascade", "scorer": "logprobs", "threshold": 0.8},
            "claude-first": {
                "strategy": "cascade",
                "tiers": ["claude-haiku-4-5", "claude-sonnet-4-6"],
            },
        },
    }
    yield from routed_gateway(tmp_path_factory.mktemp("streams"), fake, fake_llamacpp, routing)


def test_a_kept_draft_is_replayed_as_an_openai_stream(sgw: GW) -> None:
    before = sgw.fake.app.mark()
    stream = sgw.openai().chat.completions.create(
        model="sure",
        messages=[{"role": "user", "content": SURE}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and all(c.model == "gpt-4o-mini" for c in chunks)
    assert chunks[-1].usage is not None and not chunks[-1].choices
    sent = [r.body for r in sgw.fake.app.requests_since(before)]
    assert len(sent) == 1 and "stream" not in sent[0] and "stream_options" not in sent[0]
    assert sent[0]["logprobs"] is True
    rec = sgw.store.list_records(limit=1)[0]
    assert rec.served_model == "gpt-4o-mini" and rec.stream and rec.status == 200
    assert (route_of(rec)["cascade"], route_of(rec)["score"]) == ("kept", 0.95)
    assert rec.ttft_ms is not None and rec.cost_usd is not None and rec.cost_usd > 0
    assert chunks[-1].usage.completion_tokens == rec.usage.output_tokens
    assert chunks[-1].usage.prompt_tokens == rec.usage.input_tokens


def test_a_kept_stream_carries_its_cost_before_its_end(sgw: GW) -> None:
    payload = {"model": "sure", "stream": True, "messages": [{"role": "user", "content": SURE}]}
    with sgw.http() as client:
        r = client.post("/v1/chat/completions", json=payload,
                        headers={"authorization": f"Bearer {sgw.key}"})  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("data: [DONE]\n\n")
    rec = sgw.record(r.headers["x-tokenomy-request-id"])
    assert rec.cost_usd is not None
    assert rec.cost_usd > 0
    assert f": x-tokenomy-cost-usd={rec.cost_usd}\n\ndata: [DONE]" in r.text
    assert "x-tokenomy-cost-usd" not in r.headers  # as for every stream: known at its end


def test_an_unsure_draft_escalates_to_a_real_stream(sgw: GW) -> None:
    before = sgw.fake.app.mark()
    stream = sgw.openai().chat.completions.create(
        model="sure", messages=[{"role": "user", "content": UNSURE}], stream=True
    )
    chunks = list(stream)
    assert {c.model for c in chunks} == {"gpt-4o"}
    sent = [r.body for r in sgw.fake.app.requests_since(before)]
    assert [(b["model"], b.get("stream", False)) for b in sent] == [
        ("gpt-4o-mini", False),
        ("gpt-4o", True),
    ]
    rec = sgw.store.list_records(limit=5)
    reply = next(r for r in rec if r.served_model == "gpt-4o")
    assert route_of(reply)["cascade"] == "escalated" and reply.stream
    draft = sgw.record(reply.request_id + ".draft")
    assert draft.served_model == "gpt-4o-mini" and draft.cost_usd and draft.cost_usd > 0


def test_an_anthropic_client_gets_a_kept_draft_as_its_event_stream(sgw: GW) -> None:
    with sgw.anthropic().messages.stream(
        model="sure", max_tokens=100, messages=[{"role": "user", "content": SURE}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].type == "text" and final.content[0].text == text
    rec = sgw.store.list_records(limit=1)[0]
    assert rec.served_model == "gpt-4o-mini" and route_of(rec)["cascade"] == "kept"
    assert final.usage.output_tokens == rec.usage.output_tokens


def test_agreeing_samples_are_kept_for_a_stream_too(sgw: GW) -> None:
    before = sgw.fake.app.mark()
    stream = sgw.openai().chat.completions.create(
        model="cheap-first", messages=[{"role": "user", "content": "6 times 7"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    sent = [r.body for r in sgw.fake.app.requests_since(before)]
    assert len(sent) == 1 and sent[0]["n"] == 3 and "stream" not in sent[0]
    rec = sgw.store.list_records(limit=1)[0]
    assert rec.served_model == "gpt-4o-mini" and route_of(rec)["cascade"] == "kept"


def test_a_stream_asking_for_several_answers_goes_to_the_strongest_tier(sgw: GW) -> None:
    stream = sgw.openai().chat.completions.create(
        model="cheap-first", messages=[{"role": "user", "content": "hi"}], stream=True, n=2
    )
    assert {c.model for c in stream} == {"gpt-4o"}
    rec = sgw.store.list_records(limit=1)[0]
    assert route_of(rec)["cascade"] == "n > 1: strongest tier"


def test_anthropic_drafts_are_asked_whole_and_replayed_in_the_clients_format(sgw: GW) -> None:
    before = sgw.fake.app.mark()
    stream = sgw.openai().chat.completions.create(
        model="claude-first", messages=[{"role": "user", "content": "6 times 7"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    sent = [r.body for r in sgw.fake.app.requests_since(before)]
    assert len(sent) == 3 and not any(b.get("stream") for b in sent)  # three samples, whole
    rec = sgw.store.list_records(limit=1)[0]
    assert rec.served_model == "claude-haiku-4-5" and route_of(rec)["cascade"] == "kept"
    assert text and rec.stream and rec.usage.output_tokens > 0
