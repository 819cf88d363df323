"""What may be cached, and in which namespace.

A request is looked up and stored only when all of these hold:

- it is a chat request (chat completions or messages);
- the client did not send ``x-tokenomy-cache: no-store``;
- it is deterministic: ``temperature`` 0 or a fixed integer ``seed``
  (unless the operator turned ``only_deterministic`` off);
- it declares no tools (nor legacy ``functions``), or the operator allows tools
  (``cache_tools``), or every declared tool is in ``allowed_tools`` (tools
  without side effects).

``x-tokenomy-cache: refresh`` skips the read and stores the new answer.

The namespace is the tenant (`tokenomy.tenancy`): the key's team (``namespace:
team``, the default), org or key id; a key without a team or org falls back to
its own key id, so an entry never reaches a tenant it was not written by.
``shared:NAME`` puts every tenant in one namespace, which an operator must
choose on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..pipeline.context import Call
from ..tenancy import ANONYMOUS, tenant
from .config import SHARED, CacheConfig

HEADER = "x-tokenomy-cache"
NO_STORE = "no-store"
REFRESH = "refresh"

# Values of the response header.
HIT_EXACT = "hit-exact"
HIT_SEMANTIC = "hit-semantic"
MISS = "miss"
BYPASS = "bypass"


@dataclass(frozen=True, slots=True)
class Decision:
    read: bool
    write: bool
    reason: str  # why not, when neither


BYPASSED = Decision(False, False, "")


def tool_names(body: Mapping[str, Any]) -> list[str]:
    """The names of the tools declared, OpenAI's legacy ``functions`` included."""
    names: list[str] = []
    for tool in [*_items(body.get("tools")), *_items(body.get("functions"))]:
        if not isinstance(tool, Mapping):
            names.append("")
            continue
        fn = tool.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else tool.get("name")
        names.append(str(name or tool.get("type") or ""))
    return names


def _items(value: Any) -> list[Any]:
    """A declared list; anything else that was sent counts as one unnamed tool."""
    if isinstance(value, list):
        return value
    return [value] if value else []


def _deterministic(body: Mapping[str, Any]) -> bool:
    temp = body.get("temperature")
    if isinstance(temp, int | float) and not isinstance(temp, bool) and temp == 0:
        return True
    seed = body.get("seed")
    return isinstance(seed, int) and not isinstance(seed, bool)


def decide(call: Call, cfg: CacheConfig) -> Decision:
    if call.op != "chat":
        return Decision(False, False, "not a chat request")
    header = (call.headers.get(HEADER) or "").strip().lower()
    if header == NO_STORE:
        return Decision(False, False, NO_STORE)
    body = call.body
    if cfg.only_deterministic and not _deterministic(body):
        return Decision(False, False, "not deterministic (temperature > 0 and no seed)")
    names = tool_names(body)
    if names and not cfg.cache_tools and not set(names) <= cfg.allowed_tools:
        return Decision(False, False, "tools not allowed")
    return Decision(header != REFRESH, True, "")


def namespace(call: Call, cfg: CacheConfig) -> str:
    if cfg.namespace.startswith(SHARED):
        return cfg.namespace
    key = call.key
    if key is None:
        return ANONYMOUS
    return tenant(cfg.namespace, key.key_id, key.org, key.team)
