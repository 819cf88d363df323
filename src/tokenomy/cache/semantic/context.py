"""What the semantic cache compares: the last user question, inside its exact context.

A chat request is split in two:

- ``text``: the text of the last user message, the part that is embedded and
  compared by meaning;
- ``partition``: a SHA-256 of everything else that shapes the answer, in
  canonical form: the model (and the models routing sent it to), the system prompt, every earlier message (roles,
  text and non-text parts), tools, and the other output-changing parameters.

Entries are only ever compared with entries of the same partition, so the same
last question after a different history, system prompt, model or tool set is a
different request (LiteLLM's semantic cache replays stale answers in multi-turn
chats because it only embeds the last message). Requiring an exact prefix is
strict, but a paraphrased *history* is rare in practice, whereas a repeated
history (same system prompt, same first turns) is the common case.

Works on OpenAI chat-completions and Anthropic messages bodies alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..key import IGNORED_FIELDS as KEY_IGNORED
from ..key import canonical, keyed_headers, routed

# What the exact key ignores (the model stays: it shapes the answer), and the
# conversation, which the partition takes apart below.
IGNORED_FIELDS = (KEY_IGNORED - {"model"}) | {"messages", "system"}


@dataclass(frozen=True, slots=True)
class Context:
    """The embeddable question and the hash of the context it was asked in."""

    text: str
    partition: str


def _part_text(part: Any) -> str | None:
    """The text of one content part, or None when the part is not plain text."""
    if isinstance(part, str):
        return part
    if isinstance(part, Mapping) and part.get("type") in ("text", "input_text"):
        text = part.get("text")
        return text if isinstance(text, str) else None
    return None


def message_text(content: Any) -> str | None:
    """The text of a message's content (a string or a list of parts), or None
    when it holds anything but text (images, tool results, documents)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [_part_text(p) for p in content]
        if texts and all(t is not None for t in texts):
            return "\n".join(t for t in texts if t is not None)
    return None


def _canonical(value: Any) -> Any:
    """Content in one shape: a text-only list of parts equals the plain string."""
    text = message_text(value)
    return text if text is not None else value


def context_of(
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    route: Sequence[str] | None = None,
) -> Context | None:
    """The semantic key of a chat request, or None when it should not be looked up
    semantically: no messages, the last message is not a user turn, or the last
    user turn is not plain text (an image or a tool result is not a paraphrase).
    ``route``: the models routing sent it to, part of the context as in the exact key."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "user":
        return None
    text = message_text(last.get("content"))
    if text is None or not text.strip():
        return None
    history = [
        {k: (_canonical(v) if k == "content" else v) for k, v in m.items()}
        if isinstance(m, Mapping)
        else m
        for m in messages[:-1]
    ]
    # canonical as the exact key is: 1.0 == 1, prompt-caching markers dropped, and
    # the headers that change the answer (``headers``: lower-cased) included
    prefix: dict[str, Any] = canonical(
        {
            "system": _canonical(body.get("system")),
            "history": history,
            "params": {k: v for k, v in body.items() if k not in IGNORED_FIELDS},
        }
    )
    keyed = keyed_headers(headers)
    if keyed:
        prefix["headers"] = keyed
    targets = routed(body.get("model"), route)
    if targets is not None:
        prefix["route"] = targets
    digest = hashlib.sha256(orjson.dumps(prefix, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return Context(text=text.strip(), partition=digest)
