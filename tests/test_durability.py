"""The ledger loses nothing: a gateway process killed with SIGKILL under load
leaves a row for every response a client received in full, and SIGTERM drains
in-flight requests and commits their records before the process exits."""

from __future__ import annotations

import asyncio
import signal

import httpx2 as httpx
import pytest

from gateway_fixtures import MASTER_KEY, Proc
from tokenomy.ledger import open_store

pytestmark = pytest.mark.slow


async def _worker(client: httpx.AsyncClient, n: int, done: list[str], stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set() and i < 10_000:
        i += 1
        stream = (n + i) % 2 == 0
        body = {
            "model": "gpt-4o",
            "stream": stream,
            "messages": [{"role": "user", "content": "load [[fake:delay_ms=5]] [[fake:chunks=6]]"}],
        }
        try:
            if stream:
                async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                    rid, complete = r.headers.get("x-tokenomy-request-id"), False
                    async for line in r.aiter_lines():
                        complete = complete or line == "data: [DONE]"
                    if r.status_code == 200 and complete and rid:
                        done.append(rid)
            else:
                r = await client.post("/v1/chat/completions", json=body)
                if r.status_code == 200 and r.json()["choices"]:
                    done.append(r.headers["x-tokenomy-request-id"])
        except (httpx.TransportError, ValueError):
            await asyncio.sleep(0.01)  # the gateway is gone; keep trying until told to stop


async def _load(url: str, seconds: float, on_time: object) -> list[str]:
    done: list[str] = []
    stop = asyncio.Event()
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        tasks = [asyncio.create_task(_worker(client, n, done, stop)) for n in range(24)]
        await asyncio.sleep(seconds)
        on_time()  # type: ignore[operator]
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    return done


def test_sigkill_under_load_loses_no_completed_response(gateway_proc: Proc) -> None:
    done = asyncio.run(
        _load(gateway_proc.url, 2.0, lambda: gateway_proc.popen.send_signal(signal.SIGKILL))
    )
    gateway_proc.popen.wait(timeout=10)
    assert gateway_proc.popen.returncode == -signal.SIGKILL
    assert len(done) > 50, "the load did not get going"
    with open_store(gateway_proc.db) as store:
        missing = [rid for rid in done if store.get_record(rid) is None]
        total = store.count_records()
    assert missing == []
    assert total >= len(done)


def test_sigterm_drains_in_flight_streams_and_commits_them(gateway_proc: Proc) -> None:
    async def run() -> tuple[list[int], list[str]]:
        headers = {"authorization": f"Bearer {MASTER_KEY}"}
        body = {
            "model": "gpt-4o",
            "stream": True,
            "messages": [
                {"role": "user", "content": "slow [[fake:chunks=20]] [[fake:chunk_delay_ms=40]]"}
            ],
        }

        async def one(client: httpx.AsyncClient) -> tuple[int, str, bool]:
            async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                lines = [line async for line in r.aiter_lines()]
                return r.status_code, r.headers["x-tokenomy-request-id"], "data: [DONE]" in lines

        async with httpx.AsyncClient(base_url=gateway_proc.url, headers=headers, timeout=20) as c:
            tasks = [asyncio.create_task(one(c)) for _ in range(8)]
            await asyncio.sleep(0.3)
            gateway_proc.popen.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*tasks)
        return [s for s, _, ok in results if ok], [rid for _, rid, _ in results]

    statuses, ids = asyncio.run(run())
    assert statuses == [200] * 8  # every in-flight stream finished with [DONE]
    # uvicorn re-raises the signal once its graceful shutdown has finished
    assert gateway_proc.popen.wait(timeout=20) in (0, -signal.SIGTERM)
    assert b"Traceback" not in gateway_proc.popen.communicate()[1]
    with open_store(gateway_proc.db) as store:
        recs = [store.get_record(rid) for rid in ids]
    assert all(r is not None and r.status == 200 and r.usage.output_tokens == 20 for r in recs)
