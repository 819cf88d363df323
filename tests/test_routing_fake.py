"""The fake upstream's directives for routing tests: ``only=MODEL`` and ``vary``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2 as httpx
import pytest

from tokenomy.testing import create_app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as c:
        yield c


async def test_only_applies_directives_to_the_named_model(client: httpx.AsyncClient) -> None:
    text = "hi [[fake:status=503]] [[fake:only=gpt-4o]]"
    body = {"messages": [{"role": "user", "content": text}]}
    bad = await client.post("/v1/chat/completions", json={"model": "gpt-4o", **body})
    good = await client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", **body})
    assert bad.status_code == 503
    assert good.status_code == 200
    assert good.json()["choices"][0]["message"]["content"].startswith("Echo: hi")


async def test_vary_makes_choices_disagree(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt-4o-mini", "n": 3}
    msgs = [{"role": "user", "content": "x [[fake:vary]] [[fake:chunks=2]]"}]
    varied = await client.post("/v1/chat/completions", json={**body, "messages": msgs})
    msgs = [{"role": "user", "content": "x [[fake:chunks=2]]"}]
    same = await client.post("/v1/chat/completions", json={**body, "messages": msgs})
    texts = [c["message"]["content"] for c in varied.json()["choices"]]
    assert len(set(texts)) == 3 and texts[1].endswith(" 1")
    assert len({c["message"]["content"] for c in same.json()["choices"]}) == 1
