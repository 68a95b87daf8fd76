"""``ftgw chat create``: a chat completion from ``-g ROLE CONTENT`` messages, streamed as it is generated."""

from __future__ import annotations

from typing import Any

import typer

from app.cli._api._common import group
from app.cli._api._generate import (
    Logprobs,
    MaxTokens,
    Model,
    N,
    Stop,
    Stream,
    Temperature,
    WholeJson,
    generate,
    show,
)
from app.cli._errors import USAGE, CliError

NAME = "chat"
HELP = "Chat completions (messages in, a message out)."
app = group(HELP)

ROLES = ("system", "developer", "user", "assistant")


def _text(choice: dict[str, Any], streamed: bool) -> str:
    part = choice.get("delta") if streamed else choice.get("message")
    return str((part or {}).get("content") or "")


def messages(args: list[str]) -> list[tuple[str, str]]:
    """``-g ROLE CONTENT`` pairs, in order (typer has no repeatable two-value option, so they are parsed here)."""
    found: list[tuple[str, str]] = []
    rest = list(args)
    while rest:
        flag = rest.pop(0)
        if flag not in ("-g", "--message") or len(rest) < 2:
            raise CliError(f"Unexpected {flag!r}: messages are given as -g ROLE CONTENT.", None, USAGE)
        role, content = rest.pop(0), rest.pop(0)
        if role not in ROLES:
            raise CliError(f"Unknown role {role!r} in -g ROLE CONTENT.", f"Roles: {', '.join(ROLES)}.", USAGE)
        found.append((role, content))
    if not found:
        raise CliError("No message: give at least one -g ROLE CONTENT, e.g. -g user 'Hello'.", None, USAGE)
    return found


@app.command(
    "create",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    options_metavar="-g ROLE CONTENT [-g ROLE CONTENT]... [OPTIONS]",
)
def create(
    ctx: typer.Context,
    model: Model,
    stop: Stop = None,
    n: N = 1,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    logprobs: Logprobs = None,
    stream: Stream = True,
    json: WholeJson = False,
) -> None:
    """Answer a conversation given as -g ROLE CONTENT messages (repeatable, in order; roles: system, developer,
    user, assistant), e.g. -g system "Be brief." -g user "Hello"."""
    message = messages(ctx.args)
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": role, "content": content} for role, content in message],
        "stop": stop or None,
        "n": n,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "logprobs": True if logprobs is not None else None,
        "top_logprobs": logprobs or None,
    }
    streamed = stream and logprobs is None
    response = generate("/v1/chat/completions", body, stream=streamed, json=json, text_of=_text)
    if response is not None:
        show(response, json=json, text_of=_text, logprobs=logprobs is not None)
