"""Request fuzzing: bad input never gets a 500 or a traceback.

Valid bodies of every LLM endpoint (and of ``/v1/feedback`` and Anthropic's
``count_tokens``, which write no ledger row), JSON and streamed,
as they are and translated to the other API, are mutated field by field, at
every depth (messages, content parts, tools, input items): each value replaced
by one of `VALUES` (null, true, numbers out of range, empty and huge strings,
NUL and lone surrogates, empty containers, a list nested past any parser's
depth) and, for a string, by words of the APIs (`WORDS`), each field removed, an
unknown field added to each object. Raw bodies that are not JSON objects, and
odd headers, are sent too. The answer to every case is a 200 (with its ledger
row, its stream well formed, and each valid body is one) or a 4xx error in the
format of the API that was called, never a traceback, and the gateway logs no
error. The mutations are drawn with a fixed seed: every field gets every value
at the top level and a seeded sample of them deeper down, so a run is the same
every time and takes seconds. The same mutations go through a gateway with caps,
the cache and routing on, and a NUL in each string through one on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import pytest

from fuzz_helpers import (
    UNKNOWN_FIELD,
    Errors,
    encode,
    error_problems,
    name,
    replaced,
    variants,
    walk,
)
from gateway_fixtures import GW, MASTER_KEY, Fake, gateway_settings, start_gateway
from tokenomy.sse import DONE_DATA, SSEParser

SEED = 20_251_107
NESTED_SAMPLE = 4  # replacement values tried per field below the top level
PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001")).decode()


# Strings that mean something in one of the APIs (roles, part, block, item and tool
# types...): a string field given another's meaning tests the translations.
WORDS = (
    "user", "assistant", "system", "developer", "tool", "function", "text", "image",
    "image_url", "input_text", "input_image", "tool_use", "tool_result", "thinking",
    "message", "function_call", "function_call_output", "item_reference", "reasoning",
    "json_schema", "json_object", "auto", "none", "required", "any", "web_search",
)  # fmt: skip
WORD_SAMPLE = 2  # of them, tried per string field


@dataclass(frozen=True, slots=True)
class Seed:
    name: str
    path: str
    api: str  # the API called: the format of its errors
    body: dict[str, Any]


# Answered without a ledger row: nothing is generated.
UNMETERED = ("/v1/feedback", "/v1/messages/count_tokens")


@dataclass(slots=True)
class Case:
    label: str
    path: str
    api: str
    content: bytes
    headers: dict[str, Any] = field(default_factory=dict)  # str or bytes values
    served: bool = False  # a valid body: a 200, else the seed tests nothing past it


def say(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def chat_seeds() -> list[Seed]:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    talk = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "thanks"},
    ]
    full = {
        "messages": talk,
        "tools": [tool],
        "tool_choice": "auto",
        "max_tokens": 20,
        "temperature": 0.5,
        "metadata": {"app": "fuzz"},
        "user": "u-1",
        "stop": ["###"],
    }
    structured = {
        "messages": say("give me json"),
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "schema": {"type": "object", "properties": {"answer": {"type": "string"}}},
            },
        },
        "n": 1,
        "max_completion_tokens": 20,
    }
    out = []
    for model in ("gpt-4o", "claude-haiku-4-5"):  # as it is, and translated
        out.append(
            Seed(f"chat-{model}", "/v1/chat/completions", "openai", {"model": model, **full})
        )
        out.append(
            Seed(
                f"chat-{model}-stream",
                "/v1/chat/completions",
                "openai",
                {"model": model, **full, "stream": True, "stream_options": {"include_usage": True}},
            )
        )
    out.append(
        Seed("chat-structured", "/v1/chat/completions", "openai", {"model": "gpt-4o", **structured})
    )
    extras = {  # the rarer fields, and a reply that calls the tool
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "name": "bob", "content": "weather? [[fake:tool]]"},
        ],
        "tools": [tool],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 2,
        "presence_penalty": 0.1,
        "logit_bias": {"50256": -100},
        "service_tier": "flex",
        "reasoning_effort": "low",
        "prediction": {"type": "content", "content": "sunny"},
        "stop": "###",
        "top_p": 1,
    }
    for model in ("gpt-4o", "claude-haiku-4-5", "llama-local"):
        n = {} if model.startswith("claude") else {"n": 2}  # Anthropic's models answer once
        body = {"model": model, **extras, **n}
        out.append(Seed(f"chat-extras-{model}", "/v1/chat/completions", "openai", body))
    # llama.cpp reports no usage when streaming: the gateway counts the prompt itself
    out.append(
        Seed("chat-llama-local-stream", "/v1/chat/completions", "openai",
             {"model": "llama-local", **full, "stream": True})
    )  # fmt: skip
    return out


def messages_seeds() -> list[Seed]:
    tool = {
        "name": "get_weather",
        "description": "The weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    talk = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "text", "text": "thanks"},
            ],
        },
    ]
    full = {
        "max_tokens": 20,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": talk,
        "tools": [tool],
        "tool_choice": {"type": "auto"},
        "metadata": {"user_id": "u-1"},
        "stop_sequences": ["###"],
        "temperature": 0.5,
        "top_k": 5,
    }
    extras = {  # the rarer fields, and a reply that calls the tool
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "weather? [[fake:tool]]"}],
        "tools": [{**tool, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "service_tier": "auto",
        "top_p": 0.9,
        "stream": True,
    }
    out = []
    for model in ("claude-haiku-4-5", "gpt-4o", "llama-local"):
        out.append(
            Seed(
                f"messages-extras-{model}", "/v1/messages", "anthropic", {"model": model, **extras}
            )
        )
    counted = {key: full[key] for key in ("system", "messages", "tools", "tool_choice")}
    for model in ("claude-haiku-4-5", "gpt-4o"):  # as it is, and translated
        out.append(Seed(f"messages-{model}", "/v1/messages", "anthropic", {"model": model, **full}))
        out.append(  # counted upstream, and here
            Seed(
                f"count-tokens-{model}",
                "/v1/messages/count_tokens",
                "anthropic",
                {"model": model, **counted},
            )
        )
        out.append(
            Seed(
                f"messages-{model}-stream",
                "/v1/messages",
                "anthropic",
                {"model": model, **full, "stream": True},
            )
        )
    return out


def responses_seeds(previous: str, item: str) -> list[Seed]:
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "The weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    items = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
            ],
        },
        {"type": "item_reference", "id": item},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    full = {
        "model": "gpt-4o",
        "instructions": "Be brief.",
        "input": items,
        "tools": [tool],
        "previous_response_id": previous,
        "max_output_tokens": 30,
        "metadata": {"app": "fuzz"},
        "user": "u-1",
        "text": {"format": {"type": "text"}},
    }
    extras = {  # the rarer fields, a reasoning model, and a reply that calls the tool
        "model": "o3",
        "input": [
            {"role": "user", "content": "weather? [[fake:tool]]"},
            {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},
        ],
        "tools": [tool, {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "parallel_tool_calls": True,
        "service_tier": "flex",
        "truncation": "auto",
        "store": False,
        "prompt_cache_key": "fuzz",
        "max_tool_calls": 2,
        "stream": True,
        "stream_options": {"include_obfuscation": False},
    }
    plain = {"model": "gpt-4o", "input": "hello there", "store": False}
    return [
        Seed("responses", "/v1/responses", "openai", full),
        Seed("responses-stream", "/v1/responses", "openai", {**full, "stream": True}),
        Seed("responses-plain-stream", "/v1/responses", "openai", {**plain, "stream": True}),
        Seed("responses-extras-stream", "/v1/responses", "openai", extras),
    ]


def other_seeds(request_id: str) -> list[Seed]:
    completion = {  # the legacy Completions API
        "model": "gpt-4o",
        "prompt": ["Say this", "and that"],
        "max_tokens": 5,
        "n": 2,
        "temperature": 0.5,
        "stop": ["\n"],
        "user": "u-1",
    }
    return [
        Seed("completions", "/v1/completions", "openai", completion),
        Seed(
            "completions-stream",
            "/v1/completions",
            "openai",
            {
                **completion,
                "prompt": [[15339, 1917]],
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ),
        Seed(
            "embeddings",
            "/v1/embeddings",
            "openai",
            {
                "model": "text-embedding-3-small",
                "input": ["one", "two"],
                "dimensions": 8,
                "encoding_format": "float",
                "user": "u-1",
            },
        ),
        Seed(
            "embeddings-base64",
            "/v1/embeddings",
            "openai",
            {"model": "text-embedding-3-small", "input": "one", "encoding_format": "base64"},
        ),
        Seed(
            "embeddings-tokens",
            "/v1/embeddings",
            "openai",
            {"model": "text-embedding-3-small", "input": [[1, 2, 3]]},
        ),
        Seed(
            "feedback",
            "/v1/feedback",
            "openai",
            {"request_id": request_id, "score": 0.5, "comment": "fine"},
        ),
    ]


# -- mutation -----------------------------------------------------------------------------------


def mutations(
    seed: Seed, rng: random.Random, nested: int = NESTED_SAMPLE, words: int = WORD_SAMPLE
) -> Iterator[Case]:
    """Every field of ``seed`` replaced (by every value at the top level, by a seeded
    sample deeper down; a string also by a sample of `WORDS`) and removed; an unknown
    field added to every object."""
    body = seed.body
    yield Case(f"{seed.name} as it is", seed.path, seed.api, encode(body), served=True)
    yield Case(f"{seed.name} +{UNKNOWN_FIELD}", seed.path, seed.api,
               encode({**body, UNKNOWN_FIELD: 1}))  # fmt: skip
    for label, content in variants(body, rng, nested, WORDS, words):
        yield Case(f"{seed.name}{label}", seed.path, seed.api, content)


# -- checks -------------------------------------------------------------------------------------


def stream_problems(api: str, raw: bytes) -> list[str]:
    """What is wrong with ``raw`` as a whole event stream of ``api``."""
    parser = SSEParser()
    events = parser.feed(raw)
    if parser.buffered or not events:
        return ["the stream ended mid-event or is empty"]
    out: list[str] = []
    for ev in events:
        if ev.data == DONE_DATA:
            continue
        try:
            data = json.loads(ev.data)
        except ValueError:
            return [f"stream event not JSON: {ev.data[:200]!r}"]
        if ev.event == "error" or (isinstance(data, dict) and "error" in data):
            if ev.event == "error" and api == "openai":  # the Responses API's error event
                if not {"type", "code", "message"} <= set(data):
                    out.append(f"bad responses error event: {data}")
            else:
                out += error_problems(api, data)
            out.append(f"error event in the stream: {str(data)[:300]}")
    return out


def problems(gw: GW, case: Case, r: httpx.Response) -> list[str]:
    """Everything wrong with the answer ``r`` to ``case``."""
    out: list[str] = []
    status = r.status_code
    if "Traceback" in r.text:
        out.append("a traceback in the body")
    if status != 200 and not 400 <= status < 500:
        out.append(f"status {status}")
    if case.served and status != 200:
        out.append(f"a valid body, not served: {status} {r.text[:300]}")
    if status == 200 and r.headers.get("content-type", "").startswith("text/event-stream"):
        out += stream_problems(case.api, r.content)
    else:
        try:
            data = r.json()
        except ValueError:
            return [*out, f"body not JSON: {r.content[:200]!r}"]
        if status != 200:
            out += error_problems(case.api, data)
    if status == 200 and case.path not in UNMETERED:
        rid = r.headers.get("x-tokenomy-request-id")
        if rid is None or gw.store.get_record(rid) is None:
            out.append(f"no ledger row for {rid}")
    return out


@pytest.fixture
def errors_logged() -> Iterator[Errors]:
    yield from Errors.watching()


def run(gw: GW, cases: list[Case], headers: dict[str, str]) -> list[str]:
    """Send every case in order; return what is wrong with the answers."""
    failures: list[str] = []
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        for case in cases:
            hdrs = {"content-type": "application/json", **headers, **case.headers}
            hdrs = {k: v for k, v in hdrs.items() if v != ""}  # "": the header left out
            try:
                r = c.post(case.path, content=case.content, headers=hdrs)
            except httpx.HTTPError as exc:
                failures.append(f"{case.label}: {type(exc).__name__}: {exc}")
                continue
            failures += [f"{case.label}: {p}" for p in problems(gw, case, r)]
    return failures


def auth(gw: GW) -> dict[str, str]:
    return {"authorization": f"Bearer {gw.key}", "anthropic-version": "2023-06-01"}


def seeds(gw: GW) -> list[Seed]:
    """Every seed body, for ``gw``: a response it made (to continue, and to name an
    item of), a request it recorded (to score). Each is served as it is (the first
    case of each checks it)."""
    with gw.http() as c:
        made = c.post("/v1/responses", headers=auth(gw),
                      json={"model": "gpt-4o", "input": "remember this"})  # fmt: skip
        assert made.status_code == 200, made.text
        response = made.json()
    previous, item = response["id"], response["output"][0]["id"]
    request_id = made.headers["x-tokenomy-request-id"]
    return [
        *chat_seeds(),
        *messages_seeds(),
        *responses_seeds(previous, item),
        *other_seeds(request_id),
    ]


def check(gw: GW, cases: list[Case], errors: Errors) -> None:
    failures = run(gw, cases, auth(gw))
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:80])
    assert not errors.seen, "\n".join(errors.seen[:20])


def test_every_mutation_of_every_field_is_answered_in_format(gw: GW, errors_logged: Errors) -> None:
    rng = random.Random(SEED)
    check(gw, [case for seed in seeds(gw) for case in mutations(seed, rng)], errors_logged)


@pytest.fixture(scope="module")
def lgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    """A gateway with every lever that reads the request on: caps (a budget and a
    clamp, so every request is estimated), the response cache (tools too),
    routing (tiers for the aliases, a rule counting the prompt, fallbacks, the
    judge on every answer, prompts kept, streams cascaded)."""
    path = tmp_path_factory.mktemp("levers")
    routing = {
        "tiers": ["gpt-4o-mini", "gpt-4o"],
        "rules": [{"name": "long", "when": {"min_tokens": 10**9}, "to": "gpt-4o"}],
        "fallbacks": {"gpt-4o-mini": ["gpt-4o"]},
        "collect_prompts": True,
        "judge": {"sample_rate": 1.0, "model": "gpt-4o-mini"},
        "cascade": {"streams": "draft"},  # streamed seeds of cheap-first are drafted too
    }
    cache = {"enabled": True, "only_deterministic": False, "cache_tools": True}
    settings = gateway_settings(
        str(path / "ledger.db"), fake, fake_llamacpp,
        caps={"reload_interval": 0.05}, routing=routing, cache=cache,
    )  # fmt: skip
    for gw in start_gateway(settings, fake):
        with httpx.Client(base_url=gw.url, timeout=10) as a:
            master = {"authorization": f"Bearer {MASTER_KEY}"}
            for budget in (
                {"name": "roomy", "scope": {}, "period": "daily", "limit_usd": "1000000"},
                {"name": "clamp", "scope": {"team": "search"}, "period": "monthly",
                 "limit_tokens": 10**12, "on_exceed": "clamp"},
            ):  # fmt: skip
                made = a.post("/admin/budgets", json=budget, headers=master)
                assert made.status_code in (200, 201), made.text
        yield gw


def test_every_field_through_the_levers_is_answered_in_format(
    lgw: GW, errors_logged: Errors
) -> None:
    """The same mutations, sampled thinner, through caps, cache and routing: each seed of a
    chat model asks for one of the aliases instead, or for a model whose streamed
    usage the gateway counts itself."""
    rng = random.Random(SEED + 1)
    lever_models = {
        "/v1/chat/completions": ("tokenomy/auto", "cheap-first", "llama-local"),
        "/v1/messages": ("tokenomy/auto", "cheap-first", "llama-local"),
        "/v1/responses": ("tokenomy/auto", "cheap-first"),  # served by OpenAI upstreams only
    }
    routed = []
    for i, seed in enumerate(seeds(lgw)):
        models = lever_models.get(seed.path)
        if models is not None:
            model = models[i % len(models)]
            seed = Seed(f"{seed.name}@{model}", seed.path, seed.api, {**seed.body, "model": model})
        routed.append(seed)
    cases = [case for seed in routed for case in mutations(seed, rng, nested=2, words=1)]
    check(lgw, cases, errors_logged)


# -- raw bodies and headers -------------------------------------------------------------------

ENDPOINTS = (
    ("/v1/chat/completions", "openai"),
    ("/v1/completions", "openai"),
    ("/v1/messages", "anthropic"),
    ("/v1/responses", "openai"),
    ("/v1/embeddings", "openai"),
    ("/v1/feedback", "openai"),
    ("/v1/messages/count_tokens", "anthropic"),
)
TWO_MB = 2 * 1024 * 1024 + 17


def valid_body(path: str, request_id: str) -> dict[str, Any]:
    """A small body each endpoint serves."""
    if path == "/v1/embeddings":
        return {"model": "text-embedding-3-small", "input": "hi"}
    if path == "/v1/responses":
        return {"model": "gpt-4o", "input": "hi"}
    if path == "/v1/feedback":
        return {"request_id": request_id, "score": 1}
    if path == "/v1/completions":
        return {"model": "gpt-4o", "prompt": "hi"}
    return {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": say("hi")}


def raw_cases(path: str, api: str, valid: dict[str, Any]) -> Iterator[Case]:
    good = encode(valid)
    bodies: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("not JSON", b"hello there"),
        ("a list", b"[1, 2]"),
        ("a string", b'"{}"'),
        ("null", b"null"),
        ("a number", b"42"),
        ("truncated", good[: len(good) // 2]),
        ("invalid UTF-8", good.replace(b'"hi"', b'"h\xff\xfei"').replace(b'", "', b'\xc3", "', 1)),
        ("a BOM", b"\xef\xbb\xbf" + good),
        ("a NUL byte", good[:-1] + b"\x00}"),
        ("two objects", good + good),
        ("trailing garbage", good + b" xx"),
        ("2 MB of garbage", b"{" + b"x" * TWO_MB),
        ("2 MB of nesting", b"[" * TWO_MB),
    ]
    for label, content in bodies:
        yield Case(f"{path} {label}", path, api, content)
    if path != "/v1/feedback":  # whose fields are few and short
        big = encode({**valid, UNKNOWN_FIELD: "x" * TWO_MB})
        yield Case(f"{path} 2 MB valid", path, api, big, served=True)
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""):
        yield Case(f"{path} content-type {ctype!r}", path, api, good, {"content-type": ctype})
    yield Case(f"{path} gzip it is not", path, api, good, {"content-encoding": "gzip"})


def recorded_request(gw: GW) -> str:
    """The id of a request ``gw`` recorded for its key (one to score)."""
    with gw.http() as c:
        r = c.post("/v1/embeddings", headers=auth(gw),
                   json={"model": "text-embedding-3-small", "input": "hi"})  # fmt: skip
    assert r.status_code == 200, r.text
    return r.headers["x-tokenomy-request-id"]


def test_raw_bodies_that_are_no_json_object_are_answered_in_format(
    gw: GW, errors_logged: Errors
) -> None:
    request_id = recorded_request(gw)
    cases = [
        c for path, api in ENDPOINTS for c in raw_cases(path, api, valid_body(path, request_id))
    ]
    check(gw, cases, errors_logged)


def header_cases(gw: GW, path: str, api: str, valid: dict[str, Any]) -> Iterator[Case]:
    """Odd headers on a valid body; `run` sends the key unless a case replaces it."""
    good = encode(valid)
    odd: list[tuple[str, dict[str, Any]]] = [
        ("no key", {"authorization": ""}),
        ("a wrong key", {"authorization": "Bearer tk-nope"}),
        ("a Basic scheme", {"authorization": "Basic dXNlcjpwYXNz"}),
        ("a bearer without a key", {"authorization": "Bearer"}),
        ("a 16k key", {"authorization": "Bearer " + "k" * 16_000}),
        ("a non-ASCII key", {"authorization": "Bearer tk-é✓".encode()}),
        ("a wrong x-api-key", {"authorization": "", "x-api-key": "sk-ant-nope"}),
        ("the key as x-api-key", {"authorization": "", "x-api-key": gw.key}),
        ("no anthropic-version", {"anthropic-version": ""}),
        ("an odd anthropic-version", {"anthropic-version": "1999-99-99"}),
        ("a long anthropic-version", {"anthropic-version": "2023-06-01" * 800}),
        ("a non-ASCII anthropic-version", {"anthropic-version": "2023-06-01 ✓".encode()}),
        ("a non-ASCII anthropic-beta", {"anthropic-beta": "béta".encode("latin-1")}),
        ("non-ASCII tags", {"x-tokenomy-tags": "team=é✓, ü".encode()}),
        ("a 30k tags header", {"x-tokenomy-tags": ",".join(f"t{i}=v" for i in range(3000))}),
        ("an odd tags header", {"x-tokenomy-tags": "=,==,=x,, ,a=b=c"}),
        ("a 30k header", {"x-fuzz": "h" * 30_000}),
        ("300 headers", {f"x-fuzz-{i}": "v" for i in range(300)}),
        ("a non-ASCII user-agent", {"user-agent": "agent ü✓".encode()}),
        ("an odd accept", {"accept": "application/xml"}),
    ]
    for label, headers in odd:
        yield Case(f"{path} with {label}", path, api, good, headers)


def test_odd_headers_are_answered_in_format(gw: GW, errors_logged: Errors) -> None:
    request_id = recorded_request(gw)
    cases = []
    for path, api in ENDPOINTS:
        valid = valid_body(path, request_id)
        cases += header_cases(gw, path, api, valid)
        if path != "/v1/feedback" and "model" in valid and path != "/v1/embeddings":
            cases += header_cases(gw, path, api, {**valid, "stream": True})
    check(gw, cases, errors_logged)


def nul_mutations(seed: Seed) -> Iterator[Case]:
    """A NUL (JSON's \\u0000) in each string of ``seed``, and in a key of each object."""
    body = seed.body
    for path, value in walk(body):
        if isinstance(value, str):
            yield Case(f"{seed.name}{name(path)} + NUL", seed.path, seed.api,
                       encode(replaced(body, path, value + "\x00")))  # fmt: skip
    for path, value in [((), body), *walk(body)]:
        if isinstance(value, dict):
            extra = {**value, "k\x00": "v\x00"}
            new = extra if not path else replaced(body, path, extra)
            yield Case(f"{seed.name}{name(path)} + a NUL key", seed.path, seed.api, encode(new))


@pytest.mark.postgres
def test_a_nul_in_any_string_is_answered_and_recorded_on_postgres(
    pg_schema_url: str, fake: Fake, fake_llamacpp: Fake, errors_logged: Errors
) -> None:
    """PostgreSQL's text cannot hold a NUL: wherever a client puts one, the answer is
    the same as on SQLite, and what is served has its row."""
    settings = gateway_settings(pg_schema_url, fake, fake_llamacpp)
    for pgw in start_gateway(settings, fake):
        check(pgw, [case for seed in seeds(pgw) for case in nul_mutations(seed)], errors_logged)
