"""What the images in a chat prompt cost in input tokens.

Token counting (`tokenomy.tokens`) counts a prompt's text and counts an image as
nothing: providers bill images by their own rules, from pixels the gateway does
not decode. Two figures stand in for them, each by model name prefix (the
longest wins, `by_prefix`):

- `IMAGE_TOKENS_MAX`, the most one image can cost: providers resize every image
  to a bounded size. The caps' worst case adds it per image (`tokenomy.caps.estimate`).
- `IMAGE_TOKENS_TYPICAL`, what a 1024x1024 image costs at the default detail,
  for the usage recorded when the upstream reports none (the record is marked
  estimated). A ledger estimate should be the likely figure, not a bound: a
  1024x1024 image is also what a 4:3 photo costs the tile models after their
  resizing (both are 4 tiles). ``detail: "low"`` is honoured where it is a
  fixed price (`IMAGE_TOKENS_LOW`: the tile models' base cost).

The formulas, from OpenAI's and Anthropic's vision pricing: OpenAI's tile models
cost base + per-tile x tiles of 512 px after scaling into 2048 px and the short
side to 768 px (gpt-4o and gpt-4.1 85 + 170, o1/o3 75 + 150, gpt-4o-mini 2833 +
5667; at most 8 tiles, at least the base alone with ``detail: "low"``); its patch
models cost 32 px patches (at most 1536) x a multiplier, whatever the detail
(gpt-4.1-mini 1.62, gpt-4.1-nano 2.46, o4-mini 1.72); Claude about width x
height / 750 after resizing to 1.15 MP (at most about 1,600). Other models: the
Claude figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .responses_api import prompt_messages

__all__ = [
    "IMAGE_TOKENS_LOW",
    "IMAGE_TOKENS_MAX",
    "IMAGE_TOKENS_TYPICAL",
    "by_prefix",
    "count_images",
    "image_tokens_estimate",
    "image_tokens_max",
]

IMAGE_TOKENS_MAX: dict[str, int] = {
    "gpt-4o": 1445,  # 85 + 170 x 8
    "gpt-4o-mini": 48169,  # 2833 + 5667 x 8
    "gpt-4.1": 1445,
    "gpt-4.1-mini": 2489,  # 1536 patches x 1.62
    "gpt-4.1-nano": 3779,  # x 2.46
    "gpt-5": 1445,
    "o1": 1275,  # 75 + 150 x 8
    "o3": 1275,
    "o4-mini": 2642,  # x 1.72
    "claude": 1600,
}
DEFAULT_IMAGE_TOKENS_MAX = 1600

IMAGE_TOKENS_TYPICAL: dict[str, int] = {
    "gpt-4o": 765,  # 85 + 170 x 4
    "gpt-4o-mini": 25501,  # 2833 + 5667 x 4
    "gpt-4.1": 765,
    "gpt-4.1-mini": 1659,  # 1024 patches x 1.62, rounded up
    "gpt-4.1-nano": 2520,  # x 2.46
    "gpt-5": 765,
    "o1": 675,  # 75 + 150 x 4
    "o3": 675,
    "o4-mini": 1762,  # x 1.72
    "claude": 1398,  # 1024 x 1024 / 750
}
DEFAULT_IMAGE_TOKENS_TYPICAL = 1398

# ``detail: "low"``: the tile models' base cost, whatever the image. Patch models
# and Claude have no low price: their typical figure again.
IMAGE_TOKENS_LOW: dict[str, int] = {
    **IMAGE_TOKENS_TYPICAL,
    "gpt-4o": 85,
    "gpt-4o-mini": 2833,
    "gpt-4.1": 85,
    "gpt-5": 85,
    "o1": 75,
    "o3": 75,
}

# A computer-use tool's screenshot (Responses ``computer_call_output``) is an image too.
_IMAGE_TYPES = ("image_url", "image", "input_image", "computer_screenshot")


def by_prefix(table: Mapping[str, int], model: str, default: int) -> int:
    """The value of ``model``'s longest prefix in ``table`` (a provider path such as
    ``openai/`` and the case are ignored), else ``default``."""
    name = model.rsplit("/", 1)[-1].lower()
    best = ""
    for prefix in table:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return table[best] if best else default


def _images(body: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The image parts of a chat request's messages or a Responses request's input
    (OpenAI ``image_url`` parts, Responses ``input_image``, Anthropic ``image``
    blocks, tool results included)."""
    stack: list[Any] = [m.get("content") for m in prompt_messages(body) if isinstance(m, dict)]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if item.get("type") in _IMAGE_TYPES:
                yield item
            elif isinstance(item.get("content"), list):  # an Anthropic tool_result
                stack.append(item["content"])


def _detail(part: Mapping[str, Any]) -> Any:
    inner = part.get("image_url")
    return inner.get("detail") if isinstance(inner, Mapping) else part.get("detail")


def count_images(body: Mapping[str, Any]) -> int:
    """Images in a chat request's messages (or a Responses request's input)."""
    return sum(1 for _ in _images(body))


def image_tokens_max(model: str) -> int:
    """The most one image costs ``model`` in input tokens (`IMAGE_TOKENS_MAX`)."""
    return by_prefix(IMAGE_TOKENS_MAX, model, DEFAULT_IMAGE_TOKENS_MAX)


def image_tokens_estimate(body: Mapping[str, Any], model: str) -> int:
    """What the request's images likely cost ``model``: each a 1024x1024 image at
    its detail (`IMAGE_TOKENS_TYPICAL`, `IMAGE_TOKENS_LOW`)."""
    total = 0
    for part in _images(body):
        table = IMAGE_TOKENS_LOW if _detail(part) == "low" else IMAGE_TOKENS_TYPICAL
        total += by_prefix(table, model, DEFAULT_IMAGE_TOKENS_TYPICAL)
    return total
