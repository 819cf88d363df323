"""OpenAI and every OpenAI-compatible upstream (Azure, Groq, Together, DeepSeek,
Mistral, vLLM, Ollama, llama.cpp server, ...): one base, and settings per flavour."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..usage import Usage, price_context
from .base import Provider


def openai_usage(u: Mapping[str, Any] | None, service_tier: object = None) -> Usage | None:
    """OpenAI usage → `Usage`. ``prompt_tokens`` already includes cached tokens,
    and ``completion_tokens`` already includes reasoning tokens. Compatible servers
    that use the Responses API's names (``input_tokens``, ``input_tokens_details``)
    are read too, and so is DeepSeek's ``prompt_cache_hit_tokens``: cache reads
    priced as fresh input would overcharge them several times.

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
        reasoning_tokens=int(cdet.get("reasoning_tokens") or 0),
        price_context=price_context("service_tier", service_tier),
        audio_input_tokens=int(pdet.get("audio_tokens") or 0),
        audio_output_tokens=int(cdet.get("audio_tokens") or 0),
    )


class OpenAIProvider(Provider):
    api: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    price_provider: ClassVar[str | None] = "openai"
    supports_embeddings: ClassVar[bool] = True
    # OpenAI's reasoning models refuse the older max_tokens; all its models take this.
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    # Compatible servers that send one mostly use the same name (Azure, Groq, vLLM).
    request_id_header: ClassVar[str | None] = "x-request-id"
    paths: ClassVar[Mapping[str, str]] = {
        "chat": "/chat/completions",
        "embeddings": "/embeddings",
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
        return openai_usage(data.get("usage"), data.get("service_tier"))


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: deployment-scoped URLs, an ``api-key`` header, ``api-version``."""

    price_provider: ClassVar[str | None] = "azure"

    def url(self, op: str, model: str) -> str:
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
