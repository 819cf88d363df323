"""Routing rules: conditions on the request and who sent it → a model or an alias.

Rules are evaluated in order and the first whose conditions all hold wins. The
prompt is counted (``tokenomy.tokens``) only when a rule asks for a length.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from ..pipeline.context import Call
from ..pipeline.meter import prompt_count
from ..responses_api import prompt_messages
from .config import Match, Rule

IMAGE_PART_TYPES = frozenset({"image", "image_url", "input_image", "computer_screenshot"})


def has_images(body: Mapping[str, Any]) -> bool:
    for msg in prompt_messages(body):
        content = msg.get("content") if isinstance(msg, dict) else None  # parsed JSON
        if isinstance(content, list):
            for p in content:
                if isinstance(p, dict) and p.get("type") in IMAGE_PART_TYPES:
                    return True
    return False


def has_tools(body: Mapping[str, Any]) -> bool:
    return bool(body.get("tools") or body.get("functions"))


def _subset(wanted: Mapping[str, str | None], have: Mapping[str, str]) -> bool:
    for name, value in wanted.items():
        if name not in have or (value is not None and have[name] != value):
            return False
    return True


class Facts:
    """What rules look at, computed once per request and only when asked for."""

    def __init__(self, call: Call, model: str) -> None:
        self.call = call
        self.model = model

    @functools.cached_property
    def tokens(self) -> int:
        return prompt_count(self.call, self.model).tokens

    @functools.cached_property
    def tools(self) -> bool:
        return has_tools(self.call.body)

    @functools.cached_property
    def images(self) -> bool:
        return has_images(self.call.body)


def matches(m: Match, facts: Facts) -> bool:
    call, rec = facts.call, facts.call.record
    if m.keys and rec.key_id not in m.keys:
        return False
    if m.teams and rec.team not in m.teams:
        return False
    if m.tags and not _subset(m.tags, rec.tags):
        return False
    if m.headers and not _subset(m.headers, call.headers):
        return False
    if m.models_re is not None and not m.models_re.match(facts.model):
        return False
    if m.tools is not None and facts.tools != m.tools:
        return False
    if m.images is not None and facts.images != m.images:
        return False
    if m.min_tokens is not None and facts.tokens < m.min_tokens:
        return False
    return not (m.max_tokens is not None and facts.tokens > m.max_tokens)


def first_match(rules: Sequence[Rule], call: Call, model: str) -> Rule | None:
    facts = Facts(call, model)
    for rule in rules:
        if matches(rule.when, facts):
            return rule
    return None


def router_prompt(call: Call) -> Any:
    """What the learned router reads: the chat messages, or a Responses request's
    input as messages (it keeps the user turns)."""
    return prompt_messages(call.body)
