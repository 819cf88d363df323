"""A fake LLM provider that speaks OpenAI's and Anthropic's wire formats.

It is the upstream for the gateway's tests and for the load benchmark: faithful
to the documented formats, deterministic, and cheap in CPU (plain ASGI, orjson,
stream chunks spliced from pre-serialised bytes).

Run it::

    python -m tokenomy.testing.fake_upstream --host 127.0.0.1 --port 9999 \\
        [--no-stream-usage] [--chunks N] [--delay-ms D] [--chunk-delay-ms D] [--api-key K]

or in-process with ``create_app(FakeOptions(...))`` and, for a real socket,
``tokenomy.testing.serve_in_thread(app)``.

Endpoints
---------
``POST /v1/chat/completions``  OpenAI Chat Completions, JSON or SSE (honours ``n``,
    ``tools``, ``response_format``, ``stream_options.include_usage``,
    ``max_tokens``/``max_completion_tokens``).
``POST /v1/responses``         OpenAI Responses, JSON or SSE (``input`` as a string or
    input items, ``instructions``, function ``tools``, ``max_output_tokens``,
    ``service_tier``); refuses, as OpenAI does, the Chat Completions fields
    ``messages``, ``max_tokens``, ``max_completion_tokens``, ``n`` and
    ``stream_options.include_usage``. See "Responses" below.
``POST /v1/embeddings``        OpenAI embeddings, ``float`` or ``base64`` (little-endian
    float32); 8 dimensions unless ``dimensions`` is given; values are ``k/128``,
    derived from a hash of the input.
``GET  /v1/models``            OpenAI's list format; Anthropic's when the request has an
    ``anthropic-version`` header.
``POST /v1/messages``          Anthropic Messages, JSON or SSE, with prompt caching.
``POST /v1/messages/count_tokens``  Anthropic token counting (no cache effects).
``GET  /_fake/requests``, ``POST /_fake/reset``  read the request log, clear all state
    (for a fake running in another process).

Errors use each API's format: OpenAI ``{"error": {message, type, param, code}}``,
Anthropic ``{"type": "error", "error": {type, message}, "request_id"}``. Every
response carries the provider's request id header (``x-request-id`` /
``request-id``) and rate-limit headers (``x-ratelimit-*`` /
``anthropic-ratelimit-*``); 429, 503 and 529 add ``retry-after``. Validation:
a body that is not JSON, or lacks ``model`` or ``messages`` (Anthropic also
``max_tokens`` and the ``anthropic-version`` header), gets a 400, as does, like
the real APIs, ``max_tokens`` for an OpenAI reasoning model (``o<digit>...``:
only ``max_completion_tokens``) and Anthropic ``temperature`` together with
``top_p`` (current Claude models take only one); with
``FakeOptions.api_key`` set, a wrong ``Authorization: Bearer`` /
``x-api-key`` gets a 401.

Reply text
----------
``chunks`` pieces: ``"Echo: w0"``, then ``" w1"``, ``" w2"`` ... cycling through
the words of the last user message (directives removed; ``"ok"`` when it has
none). ``max_tokens`` cuts the pieces (finish ``"length"`` / ``"max_tokens"``).
With ``response_format`` ``json_object`` the content is ``{"answer": <text>}``;
with ``json_schema`` it is an object filling the schema (strings get the text),
in both cases split into the same number of pieces.

Token counts (no tokenizer; ``words(s) = len(s.split())``)
---------------------------------------------------------
OpenAI ``prompt_tokens`` = sum over messages of (3 + words of the message's text
and of its tool-call arguments) + words of each tool's name and description.
Anthropic total input = words of ``system`` + the same per tool + sum over
messages of (3 + words of its blocks: text, tool_result content, tool_use input
as compact JSON, thinking). Anthropic ``input_tokens`` excludes cache reads and
writes: ``input_tokens = total - cache_read_input_tokens - cache_creation_input_tokens``.

Completion: one token per piece; a tool call's arguments (``{"location": "Paris"}``,
or the schema's required properties filled, strings as ``"x"``) are streamed in
``min(chunks, len(arguments))`` fragments, one token each. OpenAI
``completion_tokens = n * pieces + reasoning_tokens``; reasoning defaults to 16
for model names of the form ``o<digit>...``, else 0. Anthropic
``output_tokens = pieces + reasoning``. Embeddings: words of each string input,
or the length of each token array. Directive tokens count as words like any text.

OpenAI ``service_tier``: a request asking for ``flex`` or ``priority`` is served
(and reported, in the response and every chunk) at that tier, any other at
``default``.

Responses
---------
The reply is the same pieces, in one ``message`` output item (``output_text``),
or with ``tool`` a ``function_call`` item; a reasoning model's reply starts with a
``reasoning`` item (empty ``summary``), and ``web_searches=N`` adds N
``web_search_call`` items (action ``search``) before the reply and
``tool_usage.web_search.num_requests`` = N. ``max_output_tokens`` cuts the pieces:
status ``incomplete`` (``incomplete_details.reason`` ``max_output_tokens``).
``usage``: ``input_tokens`` = words of ``instructions`` + per input item (a
string input is one user message): a message 3 + words of its text, a
``function_call`` the words of its arguments, a ``function_call_output`` those of
its output; + each function tool's name and description words.
``input_tokens_details.cached_tokens`` (``cached=N``) and ``cache_write_tokens``
(``cache_write=N``), ``output_tokens`` = pieces +
reasoning, ``output_tokens_details.reasoning_tokens``. A stream is ``event:``-named
events numbered by ``sequence_number``: ``response.created``,
``response.in_progress``, per item ``response.output_item.added``, its events
(``response.content_part.added``, ``response.output_text.delta`` per piece,
``response.output_text.done``, ``response.content_part.done``; or
``response.function_call_arguments.delta``/``.done``; or
``response.web_search_call.in_progress``/``.searching``/``.completed``), and
``response.output_item.done``; then ``response.completed`` (or
``response.incomplete``, ``response.failed``) with the whole response and its
usage. No ``[DONE]``. Each response is kept (unless ``store: false``) for
``previous_response_id`` to name; an id the fake did not keep gets OpenAI's 400
``invalid_request_error`` ``previous_response_not_found`` on that param
(``input`` may then be left out). So are its output items, for ``input`` to name
by id (an ``item_reference``, or a reasoning item with an ``id``); an item id
the fake did not keep gets OpenAI's 404 ``invalid_request_error`` on ``input``,
"Item with id '...' not found.".

Prompt caching (Anthropic): when any tools/system/message block has
``cache_control``, each such block ends a prefix that is written to the cache.
A request reads the longest cached prefix (same model, same blocks) that ends at
one of its block boundaries, reported as ``cache_read_input_tokens``, and writes
the tokens from there to its last breakpoint, ``cache_creation_input_tokens``,
split into ``ephemeral_1h`` / ``ephemeral_5m`` by the ``ttl`` of the breakpoint
ending each segment. A top-level ``cache_control`` (automatic caching) is a
breakpoint on the last block of the prompt. So a conversation that moves its
breakpoint to the newest turn reads the previous turns. A breakpoint whose prefix
is shorter than ``FakeOptions.cache_min_tokens`` (default 0) is not cached.
There is no 20-block lookback limit and no expiry; the cache is cleared when it
holds ``FakeOptions.cache_limit`` prefixes.

Scenario directives
-------------------
Tokens ``[[fake:KEY=VALUE]]`` or ``[[fake:KEY]]`` in the last user message (for
embeddings, the first string input); an unknown key gets a 400.

``status=CODE``       answer with that error status, in the called API's format.
``fail_times=K``      with ``status``: fail only the first K requests carrying the
                      same directive text, then succeed (add ``id=...`` to keep
                      counters apart).
``html``              with ``status``: the error is an HTML page (``text/html;
                      charset=utf-8``), as a load balancer or proxy in front of the
                      API sends, not the API's error body.
``retry_after=S``     the ``retry-after`` value (default ``FakeOptions.retry_after_s``).
``should_retry=V``    with ``status``: an ``x-should-retry: V`` header (``true`` or
                      ``false``), as OpenAI and Anthropic send to say whether a retry
                      can succeed.
``too_long``          a 400 as for a prompt past the context window (128,000 tokens):
                      OpenAI's ``invalid_request_error`` with ``code``
                      ``context_length_exceeded`` and ``param`` ``messages`` (``input``
                      for embeddings and Responses); Anthropic's
                      ``invalid_request_error`` "prompt is too long: ...".
``flex_busy``         OpenAI chat and Responses: a request at ``service_tier``
                      ``flex`` gets the 429 of flex processing without capacity
                      (``code`` ``resource_unavailable``); other tiers are served.
``delay_ms=N``        sleep before responding (before the first chunk when streaming).
``chunk_delay_ms=N``  sleep between stream chunks.
``chunks=N``          number of content pieces.
``tool=NAME``/``tool``  call the request's tool NAME (or its first tool); ignored
                      when the conversation ends with a tool result.
``no_usage``          send no usage at all (like servers that never report it).
``malformed``         stream: a few valid events, then ``data: {not json``, then the
                      end; JSON: an invalid body with status 200.
``reset``             drop the connection: before any response, or mid-stream after
                      a few events.
``stream_error``      mid-stream error event (OpenAI ``data: {"error": ...}``,
                      Responses ``event: error`` with ``code`` server_error,
                      Anthropic ``event: error`` overloaded_error).
``cut_at=N``          with ``malformed``, ``reset`` or ``stream_error``: take over at
                      event N (0: the stream's first event) rather than after a few.
``cached=N``          OpenAI ``prompt_tokens_details.cached_tokens`` (Responses:
                      ``input_tokens_details.cached_tokens``); Anthropic
                      ``cache_read_input_tokens`` (replaces the cache emulation).
``cache_write=N``     OpenAI: ``prompt_tokens_details.cache_write_tokens`` (Responses:
                      ``input_tokens_details.cache_write_tokens``) = N, at most the
                      prompt tokens not read from the cache: part of the prompt
                      count, as cache reads are.
``reasoning=N``       reasoning tokens, included in the completion/output count.
``confidence=P``      OpenAI chat with ``logprobs: true``: each token's log
                      probability is ln(P/100) (P from 0 to 100; 0 gives -9999,
                      OpenAI's floor); without it, -0.25.
``audio_in=N``        OpenAI: ``prompt_tokens_details.audio_tokens`` = N, added to
                      ``prompt_tokens`` (an audio part of the prompt).
``audio_out=N``       OpenAI: ``completion_tokens_details.audio_tokens`` = N, added to
                      ``completion_tokens`` (a spoken reply).
``web_searches=N``    Anthropic: N web searches before the reply, each a
                      ``server_tool_use`` block (name ``web_search``; streamed with
                      an ``input_json_delta``) and its ``web_search_tool_result``;
                      ``usage.server_tool_use.web_search_requests`` counts them
                      (and ``rich``'s), in the JSON body and the final
                      ``message_delta`` (not ``message_start``: the searches
                      happen during the turn).
                      Responses: N ``web_search_call`` items (see above).
``failed``            Responses: the response fails (status ``failed``, ``error``
                      server_error, usage reported); a stream ends with
                      ``response.failed``.
``rich``              Anthropic: before the reply, a thinking block (``thinking_delta``,
                      ``signature_delta``), a ``server_tool_use`` web search
                      (``input_json_delta``), its ``web_search_tool_result`` and a
                      text block with a ``citations_delta``; the search is counted
                      in ``usage.server_tool_use.web_search_requests``.
``stop=REASON``       Anthropic: this ``stop_reason`` (``pause_turn``, ``refusal``...);
                      ``stop_sequence`` also reports ``stop_sequence: "###"``.
``id=TEXT``           no effect besides naming a ``fail_times`` counter.
``only=MODEL``        the directives apply only to requests for MODEL (repeatable);
                      other models get a plain reply (to fail one deployment of many).
``vary``              OpenAI JSON with ``n`` > 1: choice i > 0 ends with ``" i"``, so
                      the choices disagree (usage is unchanged).
``ignore_n``          OpenAI: one choice whatever ``n`` asks (as some compatible
                      servers answer).

``FakeOptions.stream_usage = False`` emulates servers that ignore
``stream_options.include_usage`` (llama.cpp): OpenAI streams carry no usage;
JSON responses still do.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from ._fake_app import FakeUpstream, create_app
from ._fake_common import DEFAULT_CHUNKS, FakeOptions, FakeState, RecordedRequest

__all__ = ["FakeOptions", "FakeState", "FakeUpstream", "RecordedRequest", "create_app", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tokenomy.testing.fake_upstream",
        description="Fake OpenAI/Anthropic upstream for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS, help="pieces per reply")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay before responding")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between chunks")
    parser.add_argument(
        "--no-stream-usage",
        action="store_true",
        help="never send usage in OpenAI streams (like llama.cpp)",
    )
    parser.add_argument("--api-key", default=None, help="require this API key")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    options = FakeOptions(
        chunks=max(args.chunks, 1),
        delay_ms=args.delay_ms,
        chunk_delay_ms=args.chunk_delay_ms,
        stream_usage=not args.no_stream_usage,
        api_key=args.api_key,
    )
    # loop/http "auto" pick uvloop and httptools when they are importable.
    uvicorn.run(
        create_app(options),
        host=args.host,
        port=args.port,
        loop="auto",
        http="auto",
        log_level=args.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
