"""Score a cheap model's answer by its own confidence: the log probabilities it returned.

OpenAI's chat API returns, with ``logprobs: true``, each generated token's log
probability (``choices[i].logprobs.content[j].logprob``). The score of an answer
is the geometric mean of its tokens' probabilities, ``exp(mean log probability)``,
in [0, 1]: an answer the model was sure of, token by token, scores near 1, one it
hesitated over scores low. It needs no second call and no second sample, but only
upstreams that return log probabilities can be scored (OpenAI and servers that
copy its API, such as llama.cpp and vLLM; not Anthropic), and only text: a tool
call or a refusal carries none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def token_logprobs(choice: Any) -> list[float]:
    """The log probabilities of a chat choice's content tokens, in order; empty when
    the choice carries none. Odd entries (not numbers, NaN) are skipped, and a
    positive value (no probability exceeds 1) counts as 0."""
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return []
    out = []
    for token in content:
        value = token.get("logprob") if isinstance(token, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            out.append(min(float(value), 0.0))
    return out


def confidence(logprobs: Sequence[float]) -> float | None:
    """The geometric mean probability of the tokens, in [0, 1]; None without any."""
    if not logprobs:
        return None
    mean = math.fsum(logprobs) / len(logprobs)
    return math.exp(mean) if mean > -math.inf else 0.0


def reply_confidence(reply: Any) -> float | None:
    """The confidence of a chat completion's first choice (None: no log probabilities)."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list) or not choices:
        return None
    return confidence(token_logprobs(choices[0]))


__all__ = ["confidence", "reply_confidence", "token_logprobs"]
