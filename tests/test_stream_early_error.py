"""A stream whose first event is the upstream's error (OpenAI's ``data: {"error":
...}``, Anthropic's ``event: error``) has sent the client nothing: it is answered
like the upstream's refusal, in the caller's format with a status to match (or
falls back, see test_routing_fallback), and recorded as that error, billing no
prompt the upstream never reported."""

from __future__ import annotations

import anthropic
import pytest

from gateway_fixtures import GW

FIRST = "hi [[fake:stream_error]] [[fake:cut_at=0]]"


@pytest.mark.parametrize(
    ("path", "model", "status", "etype", "code"),
    [
        ("/v1/chat/completions", "gpt-4o", 500, "server_error", None),  # OpenAI's own, passed on
        ("/v1/chat/completions", "claude-haiku-4-5", 529, "server_error", "overloaded_error"),
        ("/v1/messages", "claude-haiku-4-5", 529, "overloaded_error", "overloaded_error"),
        ("/v1/messages", "gpt-4o", 500, "api_error", None),
    ],
)
def test_an_error_as_the_first_event_is_the_upstreams_error(
    gw: GW, path: str, model: str, status: int, etype: str, code: str | None
) -> None:
    body = {"model": model, "max_tokens": 20, "stream": True,
            "messages": [{"role": "user", "content": FIRST}]}  # fmt: skip
    headers = {"authorization": f"Bearer {gw.key}", "anthropic-version": "2023-06-01"}
    with gw.http() as c:
        r = c.post(path, json=body, headers=headers)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["type"] == etype and error["message"]
    rec = gw.record(r.headers["x-tokenomy-request-id"])
    assert (rec.status, rec.error_type, rec.stream) == (status, "upstream_error", True)
    # The upstream's code: OpenAI's event has none; Anthropic's type names its error.
    assert rec.upstream_error_code == code
    # The upstream reported no usage: nothing is billed, not an estimated prompt.
    assert (rec.usage.input_tokens, rec.usage.output_tokens) == (0, 0)
    assert not rec.usage.estimated and not rec.cost_usd


def test_the_sdk_sees_the_upstreams_status(gw: GW) -> None:
    with pytest.raises(anthropic.APIStatusError) as err:
        gw.anthropic().messages.create(
            model="claude-haiku-4-5",
            max_tokens=20,
            stream=True,
            messages=[{"role": "user", "content": FIRST}],
        )
    assert err.value.status_code == 529
    assert err.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
