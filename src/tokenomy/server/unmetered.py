"""Calls the gateway relays without metering them: no tokens are generated, and the
providers charge nothing for them. Token counting (Anthropic's ``POST
/v1/messages/count_tokens``, OpenAI's ``POST /v1/responses/input_tokens``) and
OpenAI's moderation (``POST /v1/moderations``).

The SDKs, and the agents built on them, ask how many input tokens a request would
take before they send it. The gateway answers for the model the request names,
and says how in ``x-tokenomy-token-count``. For ``count_tokens``:

- ``upstream``: the model is served by an Anthropic upstream, which counts (the
  body passed on with the upstream's model name; Anthropic's own count is exact
  and free);
- ``exact`` or ``estimate``: the model is served by an OpenAI upstream, so the
  request would be translated: its translation is counted here with tiktoken,
  exact where OpenAI's recipe is (text), an estimate otherwise (tools, images);
- ``estimate``: an alias, whose model is chosen per request, counted with
  ``o200k_base`` (Claude's tokenizer is not public).

For ``input_tokens``: ``upstream`` when the model's upstream serves the Responses
API (which counts what it would read, a stored response continued included), else
``estimate``, counted here by the chat recipe (the API's framing is not documented),
as for an alias. A ``previous_response_id`` or an item named by id is checked as
for a Responses request (`tokenomy.pipeline.chains`): its tenant's only.

A moderation goes to the deployment of the model it names
(``omni-moderation-latest`` when it names none), which must speak OpenAI's API,
and its reply comes back as it came.

The key is checked as for a request (401; 403 for a model it may not use).
Nothing is metered or capped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Deployment
from ..errors import InvalidRequest, NotFound
from ..gateway import Gateway
from ..keys import bearer_token
from ..pipeline.authenticate import require_model_access
from ..pipeline.context import ANTHROPIC, OPENAI, Call
from ..pipeline.resolve import unknown_model
from ..providers import Provider
from ..responses_api import as_messages, as_tools
from ..tokens import TokenCount, count_anthropic_request, count_chat_messages
from ..translate import TranslationError, anthropic_request_to_openai
from ..validate import check_request
from .http import Scope, header_dict, parse_json, read_body, send_json

COUNT_HEADER = "x-tokenomy-token-count"
MODERATION_MODEL = "omni-moderation-latest"  # OpenAI's default


# Each handler answers the call, and returns the model it answered for (for
# `Metrics.observe_unmetered`); an error is raised, for the app to render.


async def _call(
    gw: Gateway,
    scope: Scope,
    receive: Any,
    api: str,
    schema: str,
    defaults: Mapping[str, Any] | None = None,
) -> Call:
    """The request, read (``defaults`` for the fields it leaves out) and checked,
    its key authenticated and allowed its model."""
    headers = header_dict(scope)
    body = parse_json(await read_body(receive))
    if defaults and isinstance(body, dict):
        body = {**body, **{k: v for k, v in defaults.items() if body.get(k) is None}}
    body = check_request(schema, body)
    call = Call(api, "responses" if api == OPENAI else "chat", scope["path"], body, headers)
    token = bearer_token(headers)
    if token or gw.settings.require_key:
        call.key = await gw.keys.authenticate(token)
    require_model_access(call, body["model"])
    return call


async def _forward(call: Call, op: str, dep: Deployment, provider: Provider) -> Any:
    """The request sent to ``provider`` as it came, with the upstream's model name:
    the upstream's reply."""
    served = dep.upstream_model(call.body["model"])
    body = {**call.body, "model": served}
    return (await provider.send(op, served, body, call.headers)).data


async def handle_count_tokens(gw: Gateway, scope: Scope, receive: Any, send: Any) -> str:
    call = await _call(gw, scope, receive, ANTHROPIC, "anthropic.count_tokens")
    body = call.body
    model: str = body["model"]
    if model in gw.resolve.config.aliases:
        await _answer(send, count_anthropic_request(body))
        return model
    found = gw.resolve.served_by(model)
    if found is None:
        raise NotFound(f"model: {model}")
    dep, provider = found
    if provider.api == OPENAI:
        try:
            chat = anthropic_request_to_openai(body)
        except TranslationError as exc:
            raise InvalidRequest(str(exc)) from exc
        served = dep.upstream_model(model)
        await _answer(send, count_chat_messages(chat["messages"], served, tools=chat.get("tools")))
        return model
    counted = await _forward(call, "count_tokens", dep, provider)
    await send_json(send, 200, counted, {COUNT_HEADER: "upstream"})
    return model


async def handle_input_tokens(gw: Gateway, scope: Scope, receive: Any, send: Any) -> str:
    call = await _call(gw, scope, receive, OPENAI, "openai.responses")
    await gw.chains(call)  # a stored response or item it names: its tenant's only
    body = call.body
    model: str = body["model"]
    alias = model in gw.resolve.config.aliases
    found = None if alias else gw.resolve.served_by(model)
    if found is not None and found[1].supports_responses:
        counted = await _forward(call, "input_tokens", *found)
        await send_json(send, 200, counted, {COUNT_HEADER: "upstream"})
        return model
    if found is None and not alias:
        raise unknown_model(model, "model")
    estimate = count_chat_messages(as_messages(body), model, tools=as_tools(body))
    tokens = {"object": "response.input_tokens", "input_tokens": estimate.tokens}
    await send_json(send, 200, tokens, {COUNT_HEADER: "estimate"})
    return model


async def _answer(send: Any, counted: TokenCount) -> None:
    kind = "exact" if counted.exact else "estimate"
    await send_json(send, 200, {"input_tokens": counted.tokens}, {COUNT_HEADER: kind})


async def handle_moderations(gw: Gateway, scope: Scope, receive: Any, send: Any) -> str:
    call = await _call(
        gw, scope, receive, OPENAI, "openai.moderations", {"model": MODERATION_MODEL}
    )
    model: str = call.body["model"]
    found = gw.resolve.served_by(model)
    if found is None:
        raise unknown_model(model, "model")
    if found[1].api != OPENAI:
        raise InvalidRequest(
            f"Model '{model}' is served by an upstream ({found[1].name}) without OpenAI's "
            "moderation API.",
            param="model",
        )
    await send_json(send, 200, await _forward(call, "moderations", *found))
    return model
