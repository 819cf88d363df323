"""Outcome data: prompts with each model's score (and cost), one JSON object per line.

    {"prompt": "What is 2+2?",
     "models": {"gpt-4o": {"score": 1.0, "cost": "0.00021"},
                "gpt-4o-mini": {"score": 0.0}}}

``"messages"`` (an OpenAI chat list) may replace ``"prompt"``. A score is in
[0, 1] (1 = correct / as good as it gets); a cost, when known, is the USD cost of
that model answering this prompt (a string or a number, read as Decimal).
Other keys (``"id"``, ``"source"``) are kept in `Outcome.extra`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from tokenomy.errors import ConfigError

from .features import prompt_text


@dataclass(frozen=True, slots=True)
class Outcome:
    prompt: str
    scores: dict[str, float]
    costs: dict[str, Decimal] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        models: dict[str, Any] = {}
        for name, score in self.scores.items():
            entry: dict[str, Any] = {"score": score}
            if name in self.costs:
                entry["cost"] = str(self.costs[name])
            models[name] = entry
        return {"prompt": self.prompt, "models": models, **self.extra}


def parse(obj: Any, where: str = "") -> Outcome:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: an outcome must be a JSON object")
    if "prompt" in obj:
        prompt = str(obj["prompt"])
    elif isinstance(obj.get("messages"), list):
        prompt = prompt_text(obj["messages"])
    else:
        raise ConfigError(f"{where}: an outcome needs 'prompt' or 'messages'")
    models = obj.get("models")
    if not isinstance(models, dict) or not models:
        raise ConfigError(f"{where}: an outcome needs 'models': {{name: {{'score': ...}}}}")
    scores: dict[str, float] = {}
    costs: dict[str, Decimal] = {}
    for name, entry in models.items():
        if not isinstance(entry, dict) or "score" not in entry:
            raise ConfigError(f"{where}: model {name!r} needs a 'score'")
        score = _number(entry["score"])
        if score is None or not 0.0 <= score <= 1.0:
            raise ConfigError(f"{where}: model {name!r} score {entry['score']!r} is not in [0, 1]")
        scores[str(name)] = score
        if entry.get("cost") is not None:
            cost = _decimal(entry["cost"])
            if cost is None:
                raise ConfigError(
                    f"{where}: model {name!r} cost {entry['cost']!r} is not a number of dollars"
                )
            costs[str(name)] = cost
    extra = {k: v for k, v in obj.items() if k not in ("prompt", "messages", "models")}
    return Outcome(prompt, scores, costs, extra)


def cheapest_first(outcomes: Sequence[Outcome], models: Iterable[str]) -> list[str]:
    """``models`` by mean cost, or, unless each has a cost, by mean score (each mean
    over the outcomes that have one); ties keep the order given."""
    scores: dict[str, list[float]] = {m: [] for m in models}
    costs: dict[str, list[Decimal]] = {m: [] for m in scores}
    for o in outcomes:
        for m in scores:
            if m in o.scores:
                scores[m].append(o.scores[m])
            if m in o.costs:
                costs[m].append(o.costs[m])
    if all(costs.values()):
        return sorted(scores, key=lambda m: sum(costs[m]) / len(costs[m]))
    return sorted(scores, key=lambda m: sum(scores[m]) / len(scores[m]))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _decimal(value: Any) -> Decimal | None:
    """A cost: a finite number of dollars, 0 or more (a string or a JSON number)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        return None
    return out if out.is_finite() and out >= 0 else None


def read(path: str | Path) -> Iterator[Outcome]:
    with Path(path).open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{n}: not JSON: {exc}") from exc
                yield parse(obj, f"{path}:{n}")


def read_all(paths: Iterable[str | Path]) -> list[Outcome]:
    return [o for p in paths for o in read(p)]


def write(outcomes: Iterable[Outcome], path: str | Path) -> int:
    n = 0
    with Path(path).open("wb") as fh:
        for o in outcomes:
            fh.write(orjson.dumps(o.to_json()) + b"\n")
            n += 1
    return n
