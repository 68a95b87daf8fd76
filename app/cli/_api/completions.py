"""``ftgw completions create``: a text completion, streamed as it is generated."""

from __future__ import annotations

from typing import Annotated, Any

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

NAME = "completions"
HELP = "Text completions (prompt in, text out)."
app = group(HELP)


def _text(choice: dict[str, Any], streamed: bool) -> str:
    return str(choice.get("text") or "")


@app.command("create")
def create(
    model: Model,
    prompt: Annotated[str, typer.Option("-p", "--prompt", help="The prompt.")],
    stop: Stop = None,
    n: N = 1,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    logprobs: Logprobs = None,
    stream: Stream = True,
    json: WholeJson = False,
) -> None:
    """Complete a prompt."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "stop": stop or None,
        "n": n,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "logprobs": logprobs,
    }
    response = generate("/v1/completions", body, stream=stream and logprobs is None, json=json, text_of=_text)
    if response is not None:
        show(response, json=json, text_of=_text, logprobs=logprobs is not None)
