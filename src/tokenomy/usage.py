"""Provider-neutral token usage.

Every provider reports usage with its own meaning; the provider modules normalise
it into `Usage`, whose meaning is fixed:

- ``input_tokens`` counts *every* prompt token, including cache reads and cache
  writes (OpenAI's ``prompt_tokens`` meaning; Anthropic's ``input_tokens`` must be
  added to its cache read and cache creation counts).
- ``cache_read_tokens``, ``cache_write_tokens`` (Anthropic's 5-minute TTL;
  OpenAI's writes, whatever their retention, which it reports inside
  ``prompt_tokens`` as it does cache reads) and ``cache_write_1h_tokens`` are
  subsets of ``input_tokens``.
- ``output_tokens`` counts every generated token, reasoning included;
  ``reasoning_tokens`` is the subset spent on reasoning.
- ``audio_input_tokens`` and ``audio_output_tokens`` are the audio subsets of
  ``input_tokens`` and ``output_tokens`` (OpenAI's ``prompt_tokens_details`` and
  ``completion_tokens_details.audio_tokens``, which ``prompt_tokens`` and
  ``completion_tokens`` already include), as genai-prices' ``input_audio_tokens``
  and ``output_audio_tokens`` are of its input and output: an audio token is
  billed once, at the audio rate. Reasoning is text, so never audio.
- ``web_search_requests`` counts server-side web searches (Anthropic's
  ``usage.server_tool_use.web_search_requests``), billed per search on top of the
  tokens, which include the search results read.
- ``estimated`` is true when the gateway counted the tokens itself because the
  upstream reported none, or when the tokenizer is only an approximation.
- ``price_context`` holds what the upstream reported that selects a price other
  than the standard one, as genai-prices ``price_context`` pairs: OpenAI's
  response ``service_tier`` (``flex``, ``priority``) and Anthropic's
  ``usage.speed`` (``fast``). Standard tiers are left out: empty means standard.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tier names that mean the standard price ("auto" is a request setting, but a
# server that echoes it was not asked for anything else).
_STANDARD_TIERS = frozenset({"", "auto", "default", "standard"})


def price_context(key: str, value: object) -> tuple[tuple[str, str], ...]:
    """The ``price_context`` of a reported tier: empty for a standard or missing one."""
    if isinstance(value, str) and value not in _STANDARD_TIERS:
        return ((key, value),)
    return ()


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    price_context: tuple[tuple[str, str], ...] = ()
    # After ``price_context``: callers build Usage positionally up to ``estimated``.
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    web_search_requests: int = 0

    def __post_init__(self) -> None:
        if type(self.price_context) is not tuple:  # read back from JSON: lists
            self.price_context = tuple((str(k), str(v)) for k, v in self.price_context)

    @property
    def uncached_input_tokens(self) -> int:
        return (
            self.input_tokens
            - self.cache_read_tokens
            - self.cache_write_tokens
            - self.cache_write_1h_tokens
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            estimated=self.estimated or other.estimated,
            price_context=self.price_context or other.price_context,
            audio_input_tokens=self.audio_input_tokens + other.audio_input_tokens,
            audio_output_tokens=self.audio_output_tokens + other.audio_output_tokens,
            web_search_requests=self.web_search_requests + other.web_search_requests,
        )
