"""An upstream's error reply that is not its API's error body (an HTML page from a
load balancer or proxy in front of it) reaches the client described, never
echoed: its status, the upstream, and the content type it came as, in the called
API's error format; the page itself is not passed on."""

from __future__ import annotations

import anthropic
import openai
import pytest

from gateway_fixtures import GW

CLAUDE = "claude-haiku-4-5"
PAGE = "hi [[fake:status=502]] [[fake:html]]"


def said(provider: str) -> str:
    return f"upstream {provider} returned HTTP 502 (text/html, not an API error body)"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("path", "model", "provider", "etype"),
    [
        ("/v1/chat/completions", "gpt-4o", "openai", "server_error"),
        ("/v1/chat/completions", CLAUDE, "anthropic", "server_error"),
        ("/v1/messages", CLAUDE, "anthropic", "api_error"),
        ("/v1/messages", "gpt-4o", "openai", "api_error"),
    ],
)
def test_an_error_page_is_described_in_the_callers_format(
    gw: GW, path: str, model: str, provider: str, etype: str, stream: bool
) -> None:
    body = {"model": model, "max_tokens": 20, "stream": stream,
            "messages": [{"role": "user", "content": PAGE}]}  # fmt: skip
    headers = {"authorization": f"Bearer {gw.key}", "anthropic-version": "2023-06-01"}
    with gw.http() as c:
        r = c.post(path, json=body, headers=headers)
    assert r.status_code == 502
    assert r.headers["content-type"].startswith("application/json")
    assert "<html" not in r.text and "nginx" not in r.text
    error = r.json()["error"]
    assert error["type"] == etype and error["message"] == said(provider)
    rec = gw.record(r.headers["x-tokenomy-request-id"])
    assert (rec.status, rec.error_type) == (502, "upstream_error")
    assert rec.upstream_error_code is None  # a page names no error of the API's


def test_the_sdks_read_the_description(gw: GW) -> None:
    with pytest.raises(openai.InternalServerError) as oai:
        gw.openai().chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": PAGE}]
        )
    assert oai.value.status_code == 502 and oai.value.type == "server_error"
    assert oai.value.message == f"Error code: 502 - {said('openai')}"
    assert oai.value.body == {"message": said("openai"), "type": "server_error",
                              "param": None, "code": None}  # fmt: skip
    with pytest.raises(anthropic.InternalServerError) as claude:
        gw.anthropic().messages.create(
            model=CLAUDE, max_tokens=20, messages=[{"role": "user", "content": PAGE}]
        )
    assert claude.value.status_code == 502
    assert claude.value.body["error"] == {"type": "api_error", "message": said("anthropic")}  # type: ignore[index]
