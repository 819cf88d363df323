"""A stored response of OpenAI's Responses API, read or deleted through the gateway.

``GET /v1/responses/{id}`` (``client.responses.retrieve``), ``DELETE
/v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items`` reach a response
the upstream keeps (``store``: true, the default) under the account every key of
the gateway shares. So they are answered as ``previous_response_id`` is checked
(`tokenomy.pipeline.chains`): only for a response the gateway relayed, only to the
tenant that made it (``responses.chain_scope``), from the deployment that served it
(its ledger row); any other id gets the 404 OpenAI gives an id it does not know,
whatever the id is. The query string (``include[]``, the list's ``limit``,
``order``, ``after``) is passed on. Retrieving a background response's stream
(``stream=true``) and ``cancel`` are refused, as background responses are. Nothing
is metered: no tokens are generated.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, quote

from ..errors import InvalidRequest, NotFound
from ..gateway import Gateway
from ..keys import bearer_token
from .http import Scope, header_dict, send_bytes

PREFIXES = ("/v1/responses/", "/responses/")


def not_found(response_id: str) -> InvalidRequest:
    """OpenAI's answer for a response id it does not know."""
    return InvalidRequest(f"Response with id '{response_id}' not found.", status=404)


async def handle_stored_response(gw: Gateway, scope: Scope, send: Any) -> str:
    """Answer the call; return its name for the metrics (``responses.retrieve``,
    ``responses.delete`` or ``responses.input_items``)."""
    path: str = scope["path"]
    method: str = scope["method"]
    rest = next(path[len(p) :] for p in PREFIXES if path.startswith(p))
    response_id, _, tail = rest.partition("/")
    if (method, tail) == ("POST", "cancel"):
        raise InvalidRequest(
            "Only a background response can be cancelled, and this gateway serves none."
        )
    if (method, tail) not in (("GET", ""), ("DELETE", ""), ("GET", "input_items")):
        raise NotFound(f"Unknown route: {method} {path}", code="unknown_route")
    query = scope.get("query_string", b"").decode("latin-1")
    if tail == "" and parse_qs(query).get("stream", [""])[-1].lower() == "true":
        raise InvalidRequest(
            "Streaming a stored response is for background responses, which this "
            "gateway does not serve.",
            param="stream",
        )
    headers = header_dict(scope)
    token = bearer_token(headers)
    key = await gw.keys.authenticate(token) if token or gw.settings.require_key else None
    if not response_id or not await gw.chains.may_read(key, response_id):
        raise not_found(response_id)
    deployment = await asyncio.to_thread(gw.store.response_deployment, response_id)
    provider = None if deployment is None else gw.resolve.provider_for(deployment)
    if provider is None or not provider.supports_responses:
        raise not_found(response_id)  # relayed by a deployment no longer configured
    url = provider.url("responses", deployment or "") + "/" + quote(response_id, safe="")
    if tail:
        url += "/" + tail
    reply = await provider.fetch(method, url + ("?" + query if query else ""), headers)
    await send_bytes(send, reply.status, reply.raw)
    if tail:
        return "responses.input_items"
    return "responses.retrieve" if method == "GET" else "responses.delete"
