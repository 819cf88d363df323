"""Translation between OpenAI Chat Completions and Anthropic Messages, both ways.

The gateway uses it so that an OpenAI client (``POST /v1/chat/completions``) can
call an Anthropic model, and an Anthropic client (``POST /v1/messages``) can call an
OpenAI-compatible model. Everything works on parsed JSON (plain dicts and lists);
the gateway does the HTTP and the SSE parsing and framing. Inputs are never mutated.

OpenAI client -> Anthropic model:

    openai_request_to_anthropic(body, *, default_max_tokens=4096) -> dict
    anthropic_response_to_openai(resp, *, model, created=None) -> dict   # chat.completion
    AnthropicToOpenAIStream(model, request_id, created, include_usage)
        .feed(event_type, data) -> list[dict]      # chat.completion.chunk dicts
        .usage                                     # raw Anthropic usage, merged
        .openai_usage                              # the same, in OpenAI's meaning
        .finish_reason

Anthropic client -> OpenAI-compatible model:

    anthropic_request_to_openai(body, *, max_tokens_field="max_tokens") -> dict
    openai_response_to_anthropic(resp, *, model) -> dict                 # message
    OpenAIToAnthropicStream(model, message_id)
        .feed(chunk) -> list[(event_name, data)]   # every chunk, usage-only one included
        .finish() -> list[(event_name, data)]      # after [DONE]: stops, message_delta, message_stop
        .usage                                     # the last OpenAI usage object seen

Errors:

    TranslationError(ValueError)        the request has no equivalent (n > 1, audio,
                                        an unsupported content part, tool or tool_choice):
                                        answer 400
    └── UpstreamStreamError             ``AnthropicToOpenAIStream.feed`` got an ``error``
                                        event; ``.error`` is its error object. An upstream
                                        failure (report it in the stream), not a 400.

Usage meaning: OpenAI's ``prompt_tokens`` includes cached tokens, Anthropic's
``input_tokens`` does not. So ``prompt_tokens = input_tokens + cache_read_input_tokens
+ cache_creation_input_tokens``, ``prompt_tokens_details.cached_tokens =
cache_read_input_tokens`` and ``prompt_tokens_details.cache_write_tokens =
cache_creation_input_tokens`` (when not 0); back the other way, ``input_tokens =
prompt_tokens - cached_tokens - cache_write_tokens``. Reasoning: Anthropic's
``output_tokens_details.thinking_tokens`` is ``completion_tokens_details.reasoning_tokens``
(always sent, as OpenAI does, 0 when there was none), and back (when not 0).
The extras that are billed apart have no counterpart in the other API: OpenAI's
audio tokens (Anthropic has no audio) and Anthropic's
``server_tool_use.web_search_requests`` (OpenAI's chat usage counts no searches).
The client's usage leaves them out; the gateway meters the upstream's own usage,
where they are kept.

Approximations, by design:

- System and developer messages, wherever they are, become Anthropic's top-level
  ``system``, in order; Anthropic's system blocks become one system message
  (texts joined by a blank line).
- ``response_format`` ``json_object`` / ``json_schema`` becomes an instruction
  appended to the system prompt (with the schema); the output is not enforced.
  Anthropic's structured outputs (``output_config.format``, or the beta's
  ``output_format``) become ``response_format`` ``json_schema``, not ``strict``
  (OpenAI's strict mode refuses optional properties, which Anthropic allows).
- ``temperature`` above 1 is capped at 1 (Anthropic's range is 0-1), and
  ``top_p`` is dropped when ``temperature`` is given (current Claude models refuse
  the pair); whitespace-only ``stop`` sequences are dropped (Anthropic rejects them).
- Anthropic's ``max_tokens`` becomes ``max_tokens_field`` (``max_completion_tokens``
  for OpenAI itself, whose reasoning models refuse ``max_tokens``).
- ``cache_control`` (OpenRouter style) on OpenAI content parts and tools passes
  through, and OpenAI's ``prompt_cache_breakpoint`` becomes ``cache_control``
  (a ``12h`` TTL becomes ``1h``, others the 5-minute default); only the last four
  breakpoints are kept. Towards OpenAI, ``cache_control`` is dropped everywhere.
- Anthropic ``thinking`` blocks become a non-standard ``reasoning_content`` field
  (message and stream deltas), as DeepSeek and vLLM do; their signatures are dropped.
  Towards Anthropic, reasoning (``reasoning_content``) is dropped, and ``thinking``
  blocks in requests are dropped.
- Empty messages and empty text parts are dropped (Anthropic rejects them), as is
  trailing whitespace at the end of a final assistant message (a prefill).
- Tool-call arguments that are not a JSON object (invalid or truncated JSON) become
  ``input: {}``. Tool ids with characters Anthropic refuses are rewritten (``_``).
- Images and documents inside an Anthropic ``tool_result`` move to a user message
  after the ``tool`` messages (OpenAI tool messages carry text only); ``is_error``
  is dropped. Tool results come first in a merged Anthropic user message.
- Dropped silently towards Anthropic: ``stream_options``, ``logprobs``,
  ``top_logprobs``, ``seed``, ``frequency_penalty``, ``presence_penalty``,
  ``logit_bias``, ``store``, ``metadata``, ``service_tier``, ``reasoning_effort``,
  ``prompt_cache_key``... Towards OpenAI: ``top_k``, ``thinking``, ``service_tier``,
  ``output_config.effort``, and the blocks of Anthropic-run server tools. ``n`` other than 1 raises.
- Streams towards Anthropic: ``message_start`` reports 0 input tokens (OpenAI only
  gives usage at the end); the real counts are in the final ``message_delta``.
  ``stop_sequence`` is always null (OpenAI does not say which one matched).
"""

from __future__ import annotations

from ._common import TranslationError, UpstreamStreamError
from .anthropic_to_openai import anthropic_request_to_openai, anthropic_response_to_openai
from .openai_to_anthropic import openai_request_to_anthropic, openai_response_to_anthropic
from .streams import AnthropicToOpenAIStream, OpenAIToAnthropicStream

__all__ = [
    "AnthropicToOpenAIStream",
    "OpenAIToAnthropicStream",
    "TranslationError",
    "UpstreamStreamError",
    "anthropic_request_to_openai",
    "anthropic_response_to_openai",
    "openai_request_to_anthropic",
    "openai_response_to_anthropic",
]
