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
    contexts: dict[tuple[str, ...], click.Context] = {}
    for path, cmd in walk(root):
        name = " ".join((prog, *path))
        # Each command's context has its parent's, as when the command runs, so
        # settings such as help_option_names (-h) are inherited. Click caches the
        # help option per command with whichever context asked first (a test that
        # invoked the command alone, say): drop it, so the output never depends on that.
        if hasattr(cmd, "_help_option"):
            cmd._help_option = None
        ctx = click.Context(
            cmd,
            info_name=path[-1] if path else prog,
            parent=contexts.get(path[:-1]),
            **cmd.context_settings,
        )
        contexts[path] = ctx
        out += [f"## `{name}`", "", "```text", cmd.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    from . import cli

    print(render(cli), end="")
