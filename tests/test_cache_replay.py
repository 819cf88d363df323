"""A stored response replays as a stream that rebuilds to the same response, and a
relayed stream rebuilds from the events the relay parsed as from its bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tokenomy.cache.assemble import Assembler, complete
from tokenomy.cache.replay import replay_frames
from tokenomy.pipeline.context import Call
from tokenomy.pipeline.stream import make_adapter
from tokenomy.sse import DONE_DATA, SSEParser
from tokenomy.usage import Usage

OPENAI_RESP: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-2024-08-06",
    "system_fingerprint": "fp_1",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me check. " * 10,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "Second choice.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        },
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
}

ANTHROPIC_RESP: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [
        {"type": "thinking", "thinking": "Weather needs a tool. " * 5, "signature": "sig"},
        {"type": "text", "text": "Checking the weather in Paris for you, one moment."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "output_tokens": 40,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 0,
    },
}


def rebuild(api: str, frames: list[bytes]) -> dict[str, Any] | None:
    asm = Assembler(api)
    ended = False
    for f in frames:  # one frame at a time, and split mid-frame too
        ended = asm.feed(f[:7]) or ended
        ended = asm.feed(f[7:]) or ended
    assert ended
    return asm.response(Usage())


def test_openai_round_trip_with_usage() -> None:
    frames = replay_frames("openai", OPENAI_RESP, include_usage=True)
    assert frames[-1] == b"data: [DONE]\n\n"
    last = orjson.loads(frames[-2][len(b"data: ") :])
    assert last["choices"] == [] and last["usage"] == OPENAI_RESP["usage"]
    assert rebuild("openai", frames) == OPENAI_RESP


def test_openai_without_usage_gets_usage_from_the_meter() -> None:
    frames = replay_frames("openai", OPENAI_RESP, include_usage=False)
    assert all(b'"usage"' not in f for f in frames)
    asm = Assembler("openai")
    for f in frames:
        asm.feed(f)
    resp = asm.response(Usage(input_tokens=20, output_tokens=30))
    assert resp is not None
    assert resp["usage"]["total_tokens"] == 50
    assert resp["choices"] == OPENAI_RESP["choices"]


def lp(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": []}


@pytest.mark.parametrize(
    "tokens",
    [
        ["Hel", "lo", " there"],  # they spell the text: one token per chunk
        ["Hel", "lo", " th\ufffd"],  # they do not (bytes split): all on the first piece
    ],
)
def test_logprobs_round_trip(tokens: list[str]) -> None:
    choice = OPENAI_RESP["choices"][0]
    logprobs = {"content": [lp(t) for t in tokens], "refusal": None}
    message = {"role": "assistant", "content": "Hello there", "refusal": None}
    resp = {
        **OPENAI_RESP,
        "choices": [{**choice, "message": message, "logprobs": logprobs, "finish_reason": "stop"}],
    }
    frames = replay_frames("openai", resp, include_usage=True)
    assert rebuild("openai", frames) == resp


def test_anthropic_round_trip() -> None:
    frames = replay_frames("anthropic", ANTHROPIC_RESP, include_usage=False)
    names = [f.split(b"\n", 1)[0] for f in frames]
    assert names[0] == b"event: message_start"
    assert names[-2:] == [b"event: message_delta", b"event: message_stop"]
    start = orjson.loads(frames[0].split(b"data: ", 1)[1])
    assert start["message"]["content"] == [] and start["message"]["stop_reason"] is None
    assert rebuild("anthropic", frames) == ANTHROPIC_RESP


def test_an_unfinished_stream_is_not_a_response() -> None:
    frames = replay_frames("anthropic", ANTHROPIC_RESP, include_usage=False)
    asm = Assembler("anthropic")
    for f in frames[:-1]:  # no message_stop
        asm.feed(f)
    assert asm.response(Usage()) is None
    frames = replay_frames("openai", OPENAI_RESP, include_usage=False)
    asm = Assembler("openai")
    for f in frames[:-1]:  # no [DONE]
        asm.feed(f)
    assert asm.response(Usage()) is None


def test_complete() -> None:
    assert complete("openai", OPENAI_RESP) and complete("anthropic", ANTHROPIC_RESP)
    unfinished = {**OPENAI_RESP, "choices": [{**OPENAI_RESP["choices"][0], "finish_reason": None}]}
    assert not complete("openai", unfinished)
    assert not complete("anthropic", {**ANTHROPIC_RESP, "stop_reason": "pause_turn"})
    assert not complete("openai", {"error": {"message": "x"}})


def parsed(api: str, stream: bytes) -> list[Any]:
    """The data of each event of a stream, parsed as the client would."""
    done = api == "openai"
    return [
        DONE_DATA if done and ev.data == DONE_DATA else orjson.loads(ev.data)
        for ev in SSEParser().feed(stream)
    ]


@pytest.mark.parametrize("client", ["openai", "anthropic"])
@pytest.mark.parametrize("upstream", ["openai", "anthropic"])
@pytest.mark.parametrize("usage", [True, False], ids=["usage", "no-usage"])
def test_the_relay_keeps_the_events_it_sent_parsed(client: str, upstream: str, usage: bool) -> None:
    resp = OPENAI_RESP if upstream == "openai" else ANTHROPIC_RESP
    body: dict[str, Any] = {"model": "m", "stream": True}
    if usage:
        body["stream_options"] = {"include_usage": True}
    adapter = make_adapter(Call(client, "chat", "/", body, {}), upstream)
    adapter.sent = []
    sent = b""
    for ev in SSEParser().feed(b"".join(replay_frames(upstream, resp, include_usage=True))):
        sent += b"".join(adapter.on_event(ev))
    sent += b"".join(adapter.terminal())
    assert adapter.sent == parsed(client, sent)
    # ...and rebuild the same response as the bytes would
    from_events, from_bytes = Assembler(client), Assembler(client)
    assert all(not from_events.take(d) for d in adapter.sent[:-1])
    assert from_events.take(adapter.sent[-1]) and from_bytes.feed(sent)
    meter = Usage(input_tokens=20, output_tokens=30)
    assert from_events.response(meter) == from_bytes.response(meter) is not None


def test_a_relay_not_asked_keeps_nothing() -> None:
    adapter = make_adapter(Call("openai", "chat", "/", {"model": "m"}, {}), "openai")
    for ev in SSEParser().feed(b"".join(replay_frames("openai", OPENAI_RESP, include_usage=True))):
        adapter.on_event(ev)
    adapter.terminal()
    assert adapter.sent is None
