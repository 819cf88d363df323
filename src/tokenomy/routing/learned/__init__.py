"""The learned router (a quality-aware choice between model tiers) and cascade scorers.

API for the gateway::

    from tokenomy.routing.learned import Router, agreement

    router = Router.load()  # the default shipped in the package, or Router.load(path)
    d = router.decide(prompt_or_messages, tiers=["small", "medium", "large"],
                      quality_target=0.95)  # or strong_share=0.3
    d.model, d.predicted_quality, d.scores, d.win, d.reason
    router.score(prompt)  # the cheap model's probability of answering as well as the strong one
    agreement(["42", "42.0", "41"])  # 2/3: majority-vote consistency of samples

`Router.load` needs numpy; a router trained with the embedding (``--embed``) also
needs the ``semantic`` extra. See docs/router.md.
"""

from __future__ import annotations

from .agreement import agreement, normalize_answer
from .features import prompt_text
from .model import DEFAULT_PATH, Calibration, Decision, Router

__all__ = [
    "DEFAULT_PATH",
    "Calibration",
    "Decision",
    "Router",
    "agreement",
    "normalize_answer",
    "prompt_text",
]
