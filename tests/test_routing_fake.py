"""The fake upstream's directives for routing tests: ``only=MODEL`` and ``vary``."""

from __future__ import annotations

import httpx2 as httpx

from tokenomy.testing import create_app


async def test_only_applies_directives_to_the_named_model() -> None:
    app = create_app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://fake",
    ) as client:
        text = "hi [[fake:status=503]] [[fake:only=gpt-4o]]"
        body = {"messages": [{"role": "user", "content": text}]}
        bad = await client.post("/v1/chat/completions", json={"model": "gpt-4o", **body})
        good = await client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", **body})
    assert bad.status_code == 503
    assert good.status_code == 200
    assert good.json()["choices"][0]["message"]["content"].startswith("Echo: hi")


async def test_vary_makes_choices_disagree() -> None:
    app = create_app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://fake",
    ) as client:
        body = {"model": "gpt-4o-mini", "n": 3}
        msgs = [{"role": "user", "content": "x [[fake:vary]] [[fake:chunks=2]]"}]
        varied = await client.post("/v1/chat/completions", json={**body, "messages": msgs})
        msgs = [{"role": "user", "content": "x [[fake:chunks=2]]"}]
        same = await client.post("/v1/chat/completions", json={**body, "messages": msgs})
    texts = [c["message"]["content"] for c in varied.json()["choices"]]
    assert len(set(texts)) == 3 and texts[1].endswith(" 1")
    assert len({c["message"]["content"] for c in same.json()["choices"]}) == 1
