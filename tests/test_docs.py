"""Docs are checked: every command has help, docs/cli.md is generated from the CLI,
and what the README and docs/ show a user runs as shown: each YAML config loads,
each `tokenomy ...` command they name exists with those options, each link between
them resolves."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from gateway_fixtures import UPSTREAM_KEY, Fake
from tokenomy.cache.config import cache_config
from tokenomy.cli import cli
from tokenomy.cli.docs import render, walk
from tokenomy.config import load_settings
from tokenomy.keys import mint_key
from tokenomy.ledger import open_store

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("path", [p for p, _ in walk(cli)], ids=lambda p: " ".join(p) or "tokenomy")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    cmd = dict(walk(cli))[path]
    assert (cmd.help or cmd.short_help or "").strip(), f"{' '.join(path)} has no help text"


def test_cli_reference_is_current() -> None:
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == render(cli), "run: python -m tokenomy.cli.docs > docs/cli.md"


@pytest.mark.parametrize(
    "doc",
    [
        "configuration.md",
        "ledger.md",
        "costs.md",
        "billing.md",
        "caps.md",
        "reports.md",
        "insights.md",
        "routing.md",
        "router.md",
        "cache.md",
        "semantic-cache.md",
        "library.md",
    ],
)
def test_core_docs_exist(doc: str) -> None:
    assert len((ROOT / "docs" / doc).read_text()) > 500


def _blocks(*langs: str) -> list[tuple[str, str]]:
    """(file:line, body) of each fenced block in the README and docs/ in these languages."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if m.group(1) in langs:
                where = f"{doc.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}"
                out.append((where, m.group(2)))
    return out


@pytest.mark.parametrize(("where", "body"), [pytest.param(*b, id=b[0]) for b in _blocks("yaml")])
def test_every_yaml_example_loads(where: str, body: str, tmp_path: Path) -> None:
    """The loader refuses unknown or bad settings in every section: a stale example fails."""
    config = tmp_path / "tokenomy.yaml"
    config.write_text(body)
    settings = load_settings(config, env={}, db=str(tmp_path / "l.db"))
    raw = yaml.safe_load(body)
    if raw.get("cache", {}).get("semantic", {}).get("enabled"):  # inside the response cache
        assert cache_config(settings).enabled, f"{where}: semantic on, but the cache is off"


def _commands() -> list[tuple[str, str]]:
    """Each `tokenomy ...` command line in console blocks, and in inline code."""
    found = []
    for where, body in _blocks("console", "sh", "bash"):
        for line in body.replace("\\\n", " ").splitlines():  # continued lines joined
            line = line.removeprefix("$ ").strip()
            if line.startswith("tokenomy "):
                found.append((where, line.split(" #")[0]))
    for doc in DOCS:
        if doc.name == "cli.md":
            continue
        prose = FENCE.sub("", doc.read_text())
        found += [(doc.name, m) for m in re.findall(r"`(tokenomy [^`]+)`", prose)]
    return found


@pytest.mark.parametrize(("where", "line"), [pytest.param(*c, id=c[1]) for c in _commands()])
def test_every_command_shown_exists_with_its_options(where: str, line: str) -> None:
    words = shlex.split(line.replace("[", " ").replace("]", " "))[1:]  # [--opt]: --opt
    cmd: click.Command = cli
    while isinstance(cmd, click.Group) and words and not words[0].startswith("-"):
        assert words[0] in cmd.commands, f"{where}: no command {line!r}"
        cmd = cmd.commands[words.pop(0)]
    known = {opt for param in cmd.params for opt in param.opts + param.secondary_opts}
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{where}: {line!r}: no option {word}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_docs_resolves() -> None:
    anchors = {
        doc: {_slug(h) for h in re.findall(r"^#+ (.*)$", FENCE.sub("", doc.read_text()), re.M)}
        for doc in DOCS
    }
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", doc.read_text())):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            if not linked.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors.get(linked, set()):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, broken


LIBRARY = ROOT / "docs" / "library.md"
CONFIG_MARK = "# tokenomy.yaml\n"


def _library_examples() -> list[tuple[str, str]]:
    text = LIBRARY.read_text()
    return [
        (f"docs/library.md:{text.count(chr(10), 0, m.start()) + 1}", m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1) == "python"
    ]


@pytest.mark.parametrize(
    ("where", "body"), [pytest.param(*b, id=b[0]) for b in _library_examples()]
)
def test_every_library_example_runs(
    where: str,
    body: str,
    fake: Fake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each Python example of docs/library.md, run as shown against the fake upstream,
    with the page's own tokenomy.yaml and the upstream variables it names."""
    configs = [b for lang, b in FENCE.findall(LIBRARY.read_text()) if b.startswith(CONFIG_MARK)]
    assert len(configs) == 1, "docs/library.md shows its tokenomy.yaml once"
    (tmp_path / "tokenomy.yaml").write_text(configs[0])
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("TOKENOMY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    monkeypatch.setenv("OPENAI_API_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", UPSTREAM_KEY)
    secret, key = mint_key(team="search")
    with open_store(str(tmp_path / "ledger.db")) as store:
        store.migrate()
        store.create_key(key)
    monkeypatch.setenv("TK_KEY", secret)
    exec(compile(body, where, "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.strip(), f"{where}: the example printed nothing"
