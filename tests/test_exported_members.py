"""The public API is `tokenomy.__all__`, and exactly that (as httpx checks its own):
each name resolves to the object it names, nothing else public is exported, every
error of the hierarchy is among them, and importing the package stays light."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from types import ModuleType

import pytest

import tokenomy
from tokenomy import errors


def test_all_is_sorted_without_repeats() -> None:
    assert tokenomy.__all__ == sorted(set(tokenomy.__all__))


def test_each_exported_name_is_the_object_it_names() -> None:
    for name in tokenomy.__all__:
        member = getattr(tokenomy, name)
        assert member.__name__ == name, name
        assert not member.__module__.startswith("tokenomy.server"), name


def test_nothing_else_public_is_exported() -> None:
    for name in tokenomy.__all__:
        getattr(tokenomy, name)
    public = {
        name
        for name, value in vars(tokenomy).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(tokenomy.__all__)
    assert set(tokenomy.__all__) <= set(dir(tokenomy))


def test_star_import_gives_all() -> None:
    namespace: dict[str, object] = {}
    exec("from tokenomy import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(tokenomy.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Gateway'"):
        _ = tokenomy.Gateway  # internal: tokenomy.gateway.Gateway


def test_every_error_of_the_hierarchy_is_exported() -> None:
    hierarchy = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.TokenomyError)
    }
    assert hierarchy <= set(tokenomy.__all__)
    for name in hierarchy:
        assert getattr(tokenomy, name) is getattr(errors, name)


def test_import_is_light_and_the_library_never_loads_the_server() -> None:
    script = (
        "import json, sys\n"
        "import tokenomy\n"
        "light = sorted(m for m in ('tokenomy.gateway', 'aiohttp', 'genai_prices') if m in sys.modules)\n"
        "from tokenomy import *\n"
        "server = sorted(m for m in sys.modules if m.split('.')[:2] == ['tokenomy', 'server'])\n"
        "print(json.dumps({'light': light, 'server': server, 'gateway': 'tokenomy.gateway' in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    found = json.loads(out.stdout)
    assert found == {"light": [], "server": [], "gateway": True}
