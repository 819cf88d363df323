"""``POST /v1/messages/count_tokens``: Anthropic's token counting, through the gateway.

Anthropic's SDK, and the agents built on it, ask how many input tokens a Messages
request would take before they send it. The gateway answers for the model the
request names, and says how in ``x-tokenomy-token-count``:

- ``upstream``: the model is served by an Anthropic upstream, which counts (the
  body passed on with the upstream's model name; Anthropic's own count is exact
  and free);
- ``exact`` or ``estimate``: the model is served by an OpenAI upstream, so the
  request would be translated: its translation is counted here with tiktoken,
  exact where OpenAI's recipe is (text), an estimate otherwise (tools, images);
- ``estimate``: an alias, whose model is chosen per request, counted with
  ``o200k_base`` (Claude's tokenizer is not public).

The key is checked as for a request (401; 403 for a model it may not use).
Nothing is metered or capped: no tokens are generated, and counting costs
nothing at Anthropic.
"""

from __future__ import annotations

from typing import Any

from ..errors import AuthenticationFailed, InvalidRequest, NotFound
from ..gateway import Gateway
from ..keys import bearer_token
from ..pipeline.context import OPENAI
from ..tokens import TokenCount, count_anthropic_request, count_chat_messages
from ..translate import TranslationError, anthropic_request_to_openai
from ..validate import check_request
from .http import Scope, header_dict, parse_json, read_body, send_json

COUNT_HEADER = "x-tokenomy-token-count"


async def handle_count_tokens(gw: Gateway, scope: Scope, receive: Any, send: Any) -> None:
    headers = header_dict(scope)
    body = check_request("anthropic.count_tokens", parse_json(await read_body(receive)))
    token = bearer_token(headers)
    model: str = body["model"]
    if token or gw.settings.require_key:
        key = await gw.keys.authenticate(token)
        if key.models and model not in key.models:
            raise AuthenticationFailed(
                f"This key may not use model {model!r}.", status=403, code="model_not_allowed"
            )
    resolve = gw.resolve
    if model in resolve.config.aliases:
        await _answer(send, count_anthropic_request(body))
        return
    dep, provider = resolve.deployment_for(model), resolve.provider_for(model)
    if dep is None or provider is None:
        raise NotFound(f"model: {model}")
    served = dep.upstream_model(model)
    if provider.api == OPENAI:
        try:
            chat = anthropic_request_to_openai(body)
        except TranslationError as exc:
            raise InvalidRequest(str(exc)) from exc
        counted = count_chat_messages(chat["messages"], served, tools=chat.get("tools"))
        await _answer(send, counted)
        return
    reply = await provider.send("count_tokens", served, {**body, "model": served}, headers)
    await send_json(send, 200, reply.data, {COUNT_HEADER: "upstream"})


async def _answer(send: Any, counted: TokenCount) -> None:
    kind = "exact" if counted.exact else "estimate"
    await send_json(send, 200, {"input_tokens": counted.tokens}, {COUNT_HEADER: kind})
