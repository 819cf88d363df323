"""Anthropic Messages API, natively."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..usage import Usage, price_context
from .base import ErrorDetails, Provider

API_VERSION = "2023-06-01"
PASSED_CLIENT_HEADERS = ("anthropic-beta",)
# A web search's result block when the search failed (not billed).
SEARCH_ERROR = "web_search_tool_result_error"


def anthropic_usage(u: Mapping[str, Any] | None) -> Usage | None:
    """Anthropic usage → `Usage`. Anthropic's ``input_tokens`` excludes cache reads
    and cache writes, so the three are added; writes are split by TTL when the
    ``cache_creation`` breakdown is present (5-minute otherwise). ``speed: fast``
    (fast mode) is priced at its own, higher rates. Server-side web searches
    (``server_tool_use.web_search_requests``) are billed per search."""
    if not u:
        return None
    plain = int(u.get("input_tokens") or 0)
    read = int(u.get("cache_read_input_tokens") or 0)
    written = int(u.get("cache_creation_input_tokens") or 0)
    breakdown = u.get("cache_creation") or {}
    w1h = int(breakdown.get("ephemeral_1h_input_tokens") or 0)
    w5m = max(written - w1h, 0)
    server_tools = u.get("server_tool_use")
    searches = server_tools.get("web_search_requests") if isinstance(server_tools, dict) else 0
    return Usage(
        input_tokens=plain + read + w5m + w1h,
        output_tokens=int(u.get("output_tokens") or 0),
        cache_read_tokens=read,
        cache_write_tokens=w5m,
        cache_write_1h_tokens=w1h,
        price_context=price_context("speed", u.get("speed")),
        web_search_requests=int(searches or 0),
    )


def is_search_result(block: object) -> bool:
    """Whether a content block is a billed web search: the ``web_search_tool_result``
    that answers a ``web_search`` call. A search that failed (its content a
    ``web_search_tool_result_error``) is not billed, nor is a call not yet answered."""
    if not isinstance(block, Mapping) or block.get("type") != "web_search_tool_result":
        return False
    content = block.get("content")
    return not (isinstance(content, Mapping) and content.get("type") == SEARCH_ERROR)


class AnthropicProvider(Provider):
    api: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    price_provider: ClassVar[str | None] = "anthropic"
    request_id_header: ClassVar[str | None] = "request-id"

    def url(self, op: str, model: str) -> str:
        if op == "chat":
            return self.base_url + "/v1/messages"
        if op == "count_tokens":
            return self.base_url + "/v1/messages/count_tokens"
        raise KeyError(op)

    def headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        out = {"anthropic-version": client_headers.get("anthropic-version") or API_VERSION}
        for h in PASSED_CLIENT_HEADERS:
            if h in client_headers:
                out[h] = client_headers[h]
        out.update(self.deployment.headers)
        key = self.deployment.resolve_key()
        if key:
            out["x-api-key"] = key
        return out

    def usage(self, data: Mapping[str, Any]) -> Usage | None:
        return anthropic_usage(data.get("usage"))

    def error_details(self, data: Any) -> ErrorDetails:
        details = super().error_details(data)  # the same shape, less OpenAI's fields
        return ErrorDetails(details.message, details.type)

    def error_code(self, details: ErrorDetails) -> str | None:
        """Anthropic's errors have no code: their ``type`` names them."""
        return details.type
