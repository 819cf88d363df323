"""Cheap type checks of the request fields the gateway itself relies on.

Everything else passes through to the upstream, which validates its own API;
these checks exist so that a wrong type is a clean 400 here, never a 500.
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidRequest

_INT = (int,)
_NUM = (int, float)

# field → (allowed types, description)
_COMMON: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((str,), "a string"),
    "stream": ((bool,), "a boolean"),
    "max_tokens": (_INT, "an integer"),
    "temperature": (_NUM, "a number"),
    "top_p": (_NUM, "a number"),
    "metadata": ((dict,), "an object"),
    "tools": ((list,), "an array"),
}
_OPENAI: dict[str, tuple[tuple[type, ...], str]] = {
    **_COMMON,
    "messages": ((list,), "an array"),
    "n": (_INT, "an integer"),
    "max_completion_tokens": (_INT, "an integer"),
    "stream_options": ((dict,), "an object"),
    "user": ((str,), "a string"),
    "stop": ((str, list), "a string or an array"),
    "response_format": ((dict,), "an object"),
}
_ANTHROPIC: dict[str, tuple[tuple[type, ...], str]] = {
    **_COMMON,
    "messages": ((list,), "an array"),
    "system": ((str, list), "a string or an array"),
    "stop_sequences": ((list,), "an array"),
    "top_k": (_INT, "an integer"),
}
_EMBEDDINGS: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((str,), "a string"),
    "input": ((str, list), "a string or an array"),
    "user": ((str,), "a string"),
    "encoding_format": ((str,), "a string"),
    "dimensions": (_INT, "an integer"),
}

# OpenAI's legacy Completions API.
_COMPLETIONS: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((str,), "a string"),
    "prompt": ((str, list), "a string or an array"),
    "stream": ((bool,), "a boolean"),
    "max_tokens": (_INT, "an integer"),
    "n": (_INT, "an integer"),
    "best_of": (_INT, "an integer"),
    "temperature": (_NUM, "a number"),
    "top_p": (_NUM, "a number"),
    "stream_options": ((dict,), "an object"),
    "suffix": ((str,), "a string"),
    "user": ((str,), "a string"),
    "stop": ((str, list), "a string or an array"),
    "echo": ((bool,), "a boolean"),
}

_MODERATIONS: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((str,), "a string"),
    "input": ((str, list), "a string or an array"),
}

_RESPONSES: dict[str, tuple[tuple[type, ...], str]] = {
    **_COMMON,
    "input": ((str, list), "a string or an array"),
    "instructions": ((str,), "a string"),
    "max_output_tokens": (_INT, "an integer"),
    "max_tool_calls": (_INT, "an integer"),
    "previous_response_id": ((str,), "a string"),
    "user": ((str,), "a string"),
    "store": ((bool,), "a boolean"),
    "background": ((bool,), "a boolean"),
    "parallel_tool_calls": ((bool,), "a boolean"),
    "service_tier": ((str,), "a string"),
    "stream_options": ((dict,), "an object"),
    "reasoning": ((dict,), "an object"),
    "text": ((dict,), "an object"),
    "include": ((list,), "an array"),
}

# Model names are keys of bounded in-process memos (prices, output limits, the caps'
# scope index, metric labels): a bound on their count is one on their memory only
# if each name is short. Real names are well under this.
MAX_MODEL_CHARS = 256

SCHEMAS = {
    "openai.chat": _OPENAI,
    "anthropic.chat": _ANTHROPIC,
    "anthropic.count_tokens": _ANTHROPIC,
    "openai.embeddings": _EMBEDDINGS,
    "openai.responses": _RESPONSES,
    "openai.completions": _COMPLETIONS,
    "openai.moderations": _MODERATIONS,
}
REQUIRED = {
    "openai.chat": ("model", "messages"),
    "anthropic.chat": ("model", "messages", "max_tokens"),
    "anthropic.count_tokens": ("model", "messages"),
    "openai.embeddings": ("model", "input"),
    # A Responses request may take its whole prompt from a previous response,
    # a conversation or a stored prompt: its input is the upstream's to require.
    "openai.responses": ("model",),
    "openai.completions": ("model", "prompt"),
    "openai.moderations": ("model", "input"),
}


def check_request(kind: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    for name in REQUIRED[kind]:
        if name not in body or body[name] is None:
            raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name)
    for name, (types, desc) in SCHEMAS[kind].items():
        value = body.get(name)
        if value is None:
            continue
        # bool is an int subclass: a boolean is never a valid number here
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise InvalidRequest(
                f"Invalid type for '{name}': expected {desc}, got {type(value).__name__}.",
                param=name,
                code="invalid_type",
            )
    if len(body["model"]) > MAX_MODEL_CHARS:
        raise InvalidRequest(
            f"'model' is too long: at most {MAX_MODEL_CHARS} characters.", param="model"
        )
    if kind in ("openai.embeddings", "openai.moderations"):
        _check_embeddings_input(body["input"])
    elif kind == "openai.completions":
        _check_prompt(body["prompt"])
    elif kind == "openai.responses":
        _check_responses(body)
    elif not body["messages"]:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    else:
        # what the gateway counts (routing rules, caps, a reply without usage) reads
        # each message as an object: anything else is the client's 400, never a 500
        _check_objects(body["messages"], "messages")
    return body


def _check_objects(items: list[Any], name: str) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequest(
                f"Invalid type for '{name}[{i}]': expected an object, got {type(item).__name__}.",
                param=f"{name}[{i}]",
                code="invalid_type",
            )


def _check_responses(body: dict[str, Any]) -> None:
    """Input items are objects. A background response is refused: it is generated
    after the request has been answered (and retrieved with a call the gateway does
    not serve), so it could be neither capped nor metered."""
    value = body.get("input")
    if isinstance(value, list):
        _check_objects(value, "input")
    if body.get("background") is True:
        raise InvalidRequest(
            "'background' responses are not served by this gateway: it meters a "
            "response when it ends, and a background response ends after the request.",
            param="background",
        )


def _check_prompt(value: str | list[Any]) -> None:
    """A legacy completion's prompt: a string, strings, token ids, or arrays of
    token ids, as the API takes (what the gateway counts reads it so)."""
    if isinstance(value, str):
        return
    if not value or not (
        all(isinstance(v, str) for v in value)
        or all(_token_id(v) for v in value)
        or all(isinstance(v, list) and v and all(_token_id(t) for t in v) for v in value)
    ):
        raise InvalidRequest(
            "Invalid 'prompt': expected a string, an array of strings, an array of "
            "token ids or an array of arrays of token ids.",
            param="prompt",
            code="invalid_type",
        )


def _token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_embeddings_input(value: str | list[Any]) -> None:
    """OpenAI refuses an empty input (nothing to embed): so does the gateway, before
    a budget is held or an upstream called for it."""
    if not value or (
        isinstance(value, list) and any(isinstance(v, str | list) and not v for v in value)
    ):
        raise InvalidRequest(
            "'input' must not be empty, nor hold an empty string or token array.",
            param="input",
        )
