"""OpenAI and every OpenAI-compatible upstream (Azure, Groq, Together, DeepSeek,
Mistral, vLLM, Ollama, llama.cpp server, ...): one base, and settings per flavour.

OpenAI's Responses API (``POST /responses``) is served by OpenAI and by Azure
(its v1 API, ``/openai/v1/responses``). The compatible flavours serve it unevenly
(some not at all, some without the stored state ``previous_response_id`` reads),
so none is assumed to: a deployment whose server does serves it with
``extra.responses: true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..usage import Usage, price_context
from .base import Provider


def openai_usage(u: Mapping[str, Any] | None, service_tier: object = None) -> Usage | None:
    """OpenAI usage → `Usage`. ``prompt_tokens`` already includes cached tokens
    and cache writes, and ``completion_tokens`` already includes reasoning tokens.
    Compatible servers that use the Responses API's names (``input_tokens``,
    ``input_tokens_details``) are read too, and so is DeepSeek's
    ``prompt_cache_hit_tokens``: cache reads priced as fresh input would overcharge
    them several times.

    Cache writes (``prompt_tokens_details`` / ``input_tokens_details``
    ``cache_write_tokens``: GPT-5.6 and later bill them above the input rate) are a
    subset of the prompt, as cache reads are, so they leave the fresh input; all
    are `Usage.cache_write_tokens`, whatever their retention (the price data has
    one write rate for OpenAI's models).

    Audio tokens (``prompt_tokens_details`` / ``completion_tokens_details``
    ``audio_tokens``, gpt-audio and the like) are kept: they are a subset of the
    prompt and completion counts, priced at the model's audio rates.

    ``service_tier`` is the response's own (next to ``usage``, not in it): the tier
    that served the request, which sets its price (flex is half, priority about 2x).
    """
    if not u:
        return None
    pdet = u.get("prompt_tokens_details") or u.get("input_tokens_details") or {}
    cdet = u.get("completion_tokens_details") or u.get("output_tokens_details") or {}
    prompt = u.get("prompt_tokens")
    if prompt is None:
        prompt = u.get("input_tokens", 0)
    completion = u.get("completion_tokens")
    if completion is None:
        completion = u.get("output_tokens", 0)
    cached = pdet.get("cached_tokens")
    if cached is None:
        cached = u.get("prompt_cache_hit_tokens")
    return Usage(
        input_tokens=int(prompt or 0),
        output_tokens=int(completion or 0),
        cache_read_tokens=int(cached or 0),
        cache_write_tokens=int(pdet.get("cache_write_tokens") or 0),
        reasoning_tokens=int(cdet.get("reasoning_tokens") or 0),
        price_context=price_context("service_tier", service_tier),
        audio_input_tokens=int(pdet.get("audio_tokens") or 0),
        audio_output_tokens=int(cdet.get("audio_tokens") or 0),
    )


def response_usage(response: Mapping[str, Any]) -> Usage | None:
    """A Responses API response object's usage (``usage``, in the Responses names
    `openai_usage` reads, at the response's ``service_tier``), with its web searches;
    None when it reports no usage."""
    usage = openai_usage(response.get("usage"), response.get("service_tier"))
    if usage is not None:
        usage.web_search_requests = web_searches(response)
    return usage


def web_searches(response: Mapping[str, Any]) -> int:
    """The web searches a response is billed for, per search: its
    ``tool_usage.web_search.num_requests`` when it reports one, else its
    ``web_search_call`` output items that searched (opening a page or finding in
    one is not a billed search)."""
    tool_usage = response.get("tool_usage")
    search = tool_usage.get("web_search") if isinstance(tool_usage, Mapping) else None
    reported = search.get("num_requests") if isinstance(search, Mapping) else None
    if isinstance(reported, int) and not isinstance(reported, bool):
        return max(reported, 0)
    output = response.get("output")
    return sum(1 for item in output if is_search(item)) if isinstance(output, list) else 0


def is_search(item: object) -> bool:
    """Whether a Responses output item is a billed web search: a ``web_search_call``
    that searched (opening a page or finding in one is not billed)."""
    if not isinstance(item, Mapping) or item.get("type") != "web_search_call":
        return False
    action = item.get("action")
    return not isinstance(action, Mapping) or action.get("type") in (None, "search")


class OpenAIProvider(Provider):
    api: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    price_provider: ClassVar[str | None] = "openai"
    supports_embeddings: ClassVar[bool] = True
    # OpenAI's reasoning models refuse the older max_tokens; all its models take this.
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    # Compatible servers that send one mostly use the same name (Azure, Groq, vLLM).
    request_id_header: ClassVar[str | None] = "x-request-id"
    supports_responses: bool = True
    paths: ClassVar[Mapping[str, str]] = {
        "chat": "/chat/completions",
        "embeddings": "/embeddings",
        "responses": "/responses",
        "completions": "/completions",  # the legacy Completions API
        "input_tokens": "/responses/input_tokens",  # the Responses API's token count
        "moderations": "/moderations",
    }

    def url(self, op: str, model: str) -> str:
        return self.base_url + self.paths[op]

    def headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        key = self.deployment.resolve_key()
        out = dict(self.deployment.headers)
        if key:
            out["authorization"] = "Bearer " + key
        return out

    def usage(self, data: Mapping[str, Any]) -> Usage | None:
        if data.get("object") == "response":  # the Responses API's
            return response_usage(data)
        return openai_usage(data.get("usage"), data.get("service_tier"))


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: deployment-scoped URLs, an ``api-key`` header, ``api-version``
    (the Responses API: the v1 URL, which takes none)."""

    price_provider: ClassVar[str | None] = "azure"

    def url(self, op: str, model: str) -> str:
        if op in ("responses", "input_tokens"):  # only on the v1 API: the model in the body
            return f"{self.base_url}/openai/v1{self.paths[op]}"
        version = self.deployment.extra.get("api_version", "2024-10-21")
        return f"{self.base_url}/openai/deployments/{model}{self.paths[op]}?api-version={version}"

    def headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        key = self.deployment.resolve_key()
        out = dict(self.deployment.headers)
        if key:
            out["api-key"] = key
        return out


def compatible(
    name: str, base_url: str, price_provider: str | None, *, stream_usage: bool = True
) -> type[OpenAIProvider]:
    """An OpenAI-compatible flavour is a base URL, a price source and a capability or two."""
    return type(
        f"{name.title().replace('.', '')}Provider",
        (OpenAIProvider,),
        {
            "default_base_url": base_url,
            "price_provider": price_provider,
            "stream_usage": stream_usage,
            "max_tokens_field": "max_tokens",  # what every compatible server understands
            "supports_responses": False,  # unless the deployment says so (extra.responses)
            "__module__": __name__,
        },
    )


# name → (default base URL, genai-prices provider id, honours include_usage)
COMPATIBLE: dict[str, tuple[str, str | None, bool]] = {
    "groq": ("https://api.groq.com/openai/v1", "groq", True),
    "together": ("https://api.together.xyz/v1", "together", True),
    "deepseek": ("https://api.deepseek.com/v1", "deepseek", True),
    "mistral": ("https://api.mistral.ai/v1", "mistral", True),
    "fireworks": ("https://api.fireworks.ai/inference/v1", "fireworks", True),
    "openrouter": ("https://openrouter.ai/api/v1", "openrouter", True),
    "xai": ("https://api.x.ai/v1", "x-ai", True),
    "vllm": ("http://127.0.0.1:8000/v1", None, True),
    "ollama": ("http://127.0.0.1:11434/v1", None, True),
    "llamacpp": ("http://127.0.0.1:8080/v1", None, False),
}
