"""The exact cache key: a SHA-256 of the canonical request.

Two requests share a key when they would get the same answer from the model:
the same API format, requested model, the models routing sent it to (when they
are not just the requested one: a rule on a header, key, team or tag, an alias,
a key allowed only some models) and every parameter that shapes the output.
Fields that do not (who asks, whether the answer streams, storage and service
hints, prompt-caching markers) are left out, and the JSON is canonicalised —
keys sorted, no whitespace, ``1.0`` written as ``1`` — so equivalent bodies give
equal keys. The tenant's namespace is not part of the hash: the backends keep it
as a separate part of the address, so an entry can never be read from another
namespace even by a colliding key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

# Top-level fields that never change the generated answer.
IGNORED_FIELDS = frozenset(
    {
        "model",  # hashed separately, as the requested name
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
    }
)
# Keys ignored at any depth: Anthropic prompt-caching breakpoints change the bill,
# not the answer.
IGNORED_NESTED = frozenset({"cache_control"})


def canonical(value: Any) -> Any:
    """``value`` with integral floats as ints and prompt-caching markers dropped."""
    if isinstance(value, float):
        # exact integers only (|x| < 2**53); beyond, a float stays a float
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items() if k not in IGNORED_NESTED}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


# Request headers that change the answer (beta features switched on per request).
KEYED_HEADERS = ("anthropic-beta",)


def keyed_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The request headers that change the answer (`KEYED_HEADERS`) and were sent."""
    if not headers:
        return {}
    return {h: headers[h] for h in KEYED_HEADERS if headers.get(h)}


def routed(model: Any, route: Sequence[str] | None) -> list[str] | None:
    """The models a request was routed to, when they are not just ``model``: the
    same body asked of the same name may be answered by another model."""
    if not route or list(route) == [model]:
        return None
    return list(route)


def request_material(
    api: str,
    model: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    route: Sequence[str] | None = None,
) -> dict[str, Any]:
    """What the key is a hash of (also handy to see why two requests differ)."""
    params = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    out: dict[str, Any] = {"api": api, "model": model, "params": canonical(params)}
    keyed = keyed_headers(headers)
    if keyed:
        out["headers"] = keyed
    targets = routed(model, route)
    if targets is not None:
        out["route"] = targets
    return out


def cache_key(
    api: str,
    model: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    route: Sequence[str] | None = None,
) -> str:
    """Hex SHA-256 of the canonical request (``headers``: the lower-cased request
    headers; ``route``: the models the routing plan will try, in order)."""
    material = request_material(api, model, body, headers, route)
    blob = orjson.dumps(material, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()
