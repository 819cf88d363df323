"""`tokenomy count`: count a text's or a chat request's tokens offline, and price them."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..images import image_tokens_estimate
from ..pricing import PriceBook
from ..tokens import TokenCount, count_anthropic_request, count_chat_messages, count_text
from ..usage import Usage


@click.command()
@click.argument("text", required=False)
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help="Read the text from this file ('-' for stdin). A JSON chat request is counted as chat.",
)
@click.option(
    "--model",
    default="gpt-4o",
    show_default=True,
    help="Model whose tokenizer and price to use (a JSON request's own model if not given).",
)
@click.option("--provider", default=None, help="Provider serving the model, e.g. openai, groq.")
@click.option(
    "--output-tokens",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Output tokens to add to the price.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@click.pass_context
def count(
    ctx: click.Context,
    text: str | None,
    path: Path | None,
    model: str,
    provider: str | None,
    output_tokens: int,
    output_format: str,
) -> None:
    """Count the tokens of TEXT (or --file, or stdin) and price them.

    A JSON body with a "messages" array is counted as an OpenAI chat request, or as
    an Anthropic Messages request when it has Anthropic's shape; each image adds
    what a 1024x1024 image likely costs the model. Counts are exact for OpenAI
    models on text and estimates for the others.
    """
    if text is not None and path is not None:
        raise click.UsageError("give either TEXT or --file, not both")
    if text is None and path is None and sys.stdin.isatty():
        raise click.UsageError("give TEXT, --file PATH, or pipe the text on stdin")
    raw = text if text is not None else _read(path)

    body = _json_request(raw)
    if body is not None and ctx.get_parameter_source("model") is ParameterSource.DEFAULT:
        body_model = body.get("model")
        if isinstance(body_model, str) and body_model:
            model = body_model
    try:
        kind, counted = _count(raw, body, model)
    except (TypeError, ValueError) as exc:
        raise click.ClickException(f"cannot count this request: {exc}") from exc
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc

    usage = Usage(
        input_tokens=counted.tokens, output_tokens=output_tokens, estimated=not counted.exact
    )
    cost = PriceBook().cost(usage, model=model, provider=provider)

    if output_format == "json":
        click.echo(
            json.dumps(
                {
                    "kind": kind,
                    "model": model,
                    "provider": provider,
                    "input_tokens": counted.tokens,
                    "output_tokens": output_tokens,
                    "exact": counted.exact,
                    "cost_usd": None if cost.total is None else _plain(cost.total),
                    "price_unknown": cost.price_unknown,
                    "price_source": cost.source,
                    "matched_model": cost.matched_model,
                }
            )
        )
        return
    how = "exact" if counted.exact else "estimated"
    inputs = _tokens(counted.tokens, "input")
    click.echo(f"{inputs} ({how}, {kind}, model {model})")
    if cost.total is None:
        click.echo("cost: price unknown")
    else:
        outputs = f" + {_tokens(output_tokens, 'output')}" if output_tokens else ""
        click.echo(
            f"cost: ${_plain(cost.total)} for {inputs}{outputs} ({cost.source}: {cost.matched_model})"
        )


def _read(path: Path | None) -> str:
    try:
        if path is None or str(path) == "-":
            return sys.stdin.read()
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path or 'stdin'} is not UTF-8 text") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from exc


def _json_request(raw: str) -> Mapping[str, Any] | None:
    """The body if ``raw`` is a JSON chat request, else None (it is counted as text)."""
    if not raw.lstrip().startswith("{"):
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        return body
    return None


def _count(raw: str, body: Mapping[str, Any] | None, model: str) -> tuple[str, TokenCount]:
    if body is None:
        return "text", count_text(raw, model)
    images = image_tokens_estimate(body, model)  # as the gateway's meter estimates them
    counted = TokenCount(images, exact=not images)
    if _is_anthropic(body, model):
        return "anthropic-messages", counted + count_anthropic_request(body)
    tools, functions = body.get("tools"), body.get("functions")
    return "openai-chat", counted + count_chat_messages(
        body["messages"],
        model,
        tools=tools if isinstance(tools, list) else None,
        functions=functions if isinstance(functions, list) else None,
    )


def _is_anthropic(body: Mapping[str, Any], model: str) -> bool:
    if "system" in body or model.lower().startswith("claude"):
        return True
    for tool in body.get("tools") or ():
        if isinstance(tool, Mapping) and "input_schema" in tool:
            return True
    for message in body["messages"]:
        content = message.get("content") if isinstance(message, Mapping) else None
        for block in content if isinstance(content, list) else ():
            if isinstance(block, Mapping) and block.get("type") in ("tool_use", "tool_result"):
                return True
    return False


def _tokens(n: int, kind: str) -> str:
    return f"{n} {kind} token" if n == 1 else f"{n} {kind} tokens"


def _plain(amount: Decimal) -> str:
    """A Decimal without exponent notation: 0.00000025, not 2.5E-7."""
    return format(amount, "f")
