"""Generate the CLI reference (docs/cli.md) from the CLI itself."""

from __future__ import annotations

from collections.abc import Iterator

import click


def walk(
    cmd: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from walk(cmd.commands[name], (*path, name))


def render(root: click.Group, prog: str = "tokenomy") -> str:
    out = [
        "# CLI reference",
        "",
        "Generated from the CLI by `python -m tokenomy.cli.docs > docs/cli.md`; a test keeps it current.",
        "",
    ]
    for path, cmd in walk(root):
        name = " ".join((prog, *path))
        ctx = click.Context(cmd, info_name=name)
        out += [f"## `{name}`", "", "```text", cmd.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    from . import cli

    print(render(cli), end="")
