"""`tokenomy router` shows and uses the library's defaults, not copies of them."""

from __future__ import annotations

import inspect
from typing import Any

import click

from tokenomy.cli import cli
from tokenomy.routing.learned.evaluate import compare
from tokenomy.routing.learned.features import Spec
from tokenomy.routing.learned.model import DEFAULT_QUALITY_TARGET
from tokenomy.routing.learned.train import train


def _defaults(name: str) -> dict[str | None, Any]:
    group = cli.commands["router"]
    assert isinstance(group, click.Group)
    return {p.name: p.default for p in group.commands[name].params}


def _default_of(fn: Any, param: str) -> Any:
    return inspect.signature(fn).parameters[param].default


def test_train_defaults_are_the_trainers() -> None:
    defaults = _defaults("train")
    assert defaults["holdout"] == _default_of(train, "holdout") == 0.2
    assert defaults["l2"] == _default_of(train, "l2") == 0.0003
    assert defaults["hash_dim"] == Spec().hash_dim == 4096
    assert defaults["embed"] is Spec().embed is False


def test_eval_quality_target_is_the_routers() -> None:
    assert _defaults("eval")["quality"] == _default_of(compare, "target")
    assert _default_of(compare, "target") == DEFAULT_QUALITY_TARGET == 0.95
