"""The prompt-cache lever: Anthropic cache breakpoints, added where a prefix will
be read again.

Anthropic reads a cached prompt prefix at a tenth of the input price, but only
where a request marks a breakpoint (``cache_control``), and writing the prefix
costs 1.25 times the input price. A deployment with ``prompt_cache`` marks the
requests that carry no breakpoint of their own (a client's own choice is never
touched):

- ``always``: a breakpoint at the end of the tools and system prompt, and
  automatic caching (a top-level ``cache_control``: Anthropic puts a breakpoint
  on the last block, reads the longest prefix it has cached and writes the rest).
  Every request pays the write premium on what it adds.
- ``auto``: only where a read is to be expected. A conversation that already has
  an assistant turn (a prefill aside) gets automatic caching: the turns before were most likely
  sent a moment ago, and its own next turn will read it. Any other request gets
  a breakpoint at the end of its tools and system prompt once this deployment
  has seen the same ones, for the same organisation, within the cache's life (5
  minutes, renewed by each use): the second request of a shared prompt writes it,
  the later ones read it. A request whose tools and system prompt are its own
  is sent unmarked and pays no premium.

The memory of seen prefixes (`SeenPrefixes`) is a bounded map per deployment, in
process, kept by its provider: on
several replicas each learns for itself (a prefix is marked one request later
there), which costs at most one write premium per replica, never a wrong bill:
what the request cost is what the upstream reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..config import Deployment
from ..providers.prefixes import SeenPrefixes
from ..translate._common import asks_for_cache
from .context import Call

STATE = "prompt_cache"  # the lever's slot in `Call.levers`


@dataclass(frozen=True, slots=True)
class Marked:
    """What the lever added to the request it sent to ``deployment``."""

    deployment: str
    mode: str
    where: tuple[str, ...]  # "automatic" (top-level), "prefix" (end of tools and system)


def continues(body: Mapping[str, Any]) -> bool:
    """Whether the conversation already has an assistant turn (before its last
    message: a last assistant message is a prefill of this turn's answer)."""
    messages = body.get("messages")
    return isinstance(messages, list) and any(
        isinstance(m, dict) and m.get("role") == "assistant" for m in messages[:-1]
    )


def prefix_digest(org: str | None, body: Mapping[str, Any]) -> bytes | None:
    """The digest of the request's tools and system prompt for ``org``; None
    when it has neither."""
    tools, system = body.get("tools"), body.get("system")
    if not tools and not system:
        return None
    h = hashlib.blake2b(digest_size=16)
    for part in (org or "", body.get("model"), tools, system):
        h.update(orjson.dumps(part, option=orjson.OPT_SORT_KEYS))
    return h.digest()


def _mark_prefix(body: dict[str, Any], cc: Mapping[str, str]) -> bool:
    """A breakpoint on the last system block (else the last tool), in new lists and
    blocks: the client's own body shares them."""
    system = body.get("system")
    if isinstance(system, str) and system.strip():  # Anthropic refuses a blank block
        body["system"] = [{"type": "text", "text": system, "cache_control": dict(cc)}]
        return True
    if isinstance(system, list) and system and isinstance(system[-1], dict):
        body["system"] = [*system[:-1], {**system[-1], "cache_control": dict(cc)}]
        return True
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[-1], dict):
        body["tools"] = [*tools[:-1], {**tools[-1], "cache_control": dict(cc)}]
        return True
    return False


def cache_control(ttl: str) -> dict[str, str]:
    """A breakpoint asking for ``ttl`` ("5m", Anthropic's default, is not named)."""
    return {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}


def mark(call: Call, dep: Deployment, seen: SeenPrefixes | None, body: dict[str, Any]) -> None:
    """Add the lever's breakpoints to ``body``, a chat request in Anthropic's format
    for ``dep``, and note them in ``call.levers`` (for the meter)."""
    call.levers.pop(STATE, None)  # an earlier attempt's, on another deployment
    mode = dep.prompt_cache
    if mode is None or asks_for_cache(body):
        return
    cc = cache_control(dep.prompt_cache_ttl)
    where: list[str] = []
    if mode == "always":
        if _mark_prefix(body, cc):
            where.append("prefix")
        body["cache_control"] = dict(cc)
        where.append("automatic")
    elif continues(body):
        body["cache_control"] = dict(cc)
        where.append("automatic")
    elif seen is not None:
        digest = prefix_digest(call.record.org, body)
        if digest is not None and seen.seen(digest) and _mark_prefix(body, cc):
            where.append("prefix")
    if where:
        call.levers[STATE] = Marked(dep.name, mode, tuple(where))
