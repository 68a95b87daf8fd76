"""What ``completions create`` and ``chat create`` share: send, stream the text as it comes, or print it whole."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from app.cli._client import decode, gateway
from app.cli._errors import FAILED, CliError
from app.cli._output import note, print_json

Model = Annotated[str, typer.Option("-m", "--model", help="A model or alias id.")]
Stop = Annotated[list[str] | None, typer.Option("--stop", metavar="TEXT", help="A stop sequence (repeatable).")]
N = Annotated[int, typer.Option("-n", min=1, max=128, help="How many answers.")]
MaxTokens = Annotated[int | None, typer.Option("--max-tokens", min=1, help="Longest answer, in tokens.")]
Temperature = Annotated[float | None, typer.Option("--temperature", min=0, max=2, help="Sampling temperature.")]
Logprobs = Annotated[
    int | None, typer.Option("--logprobs", min=0, max=20, help="Show each token's logprob and this many alternatives.")
]
Stream = Annotated[bool, typer.Option("--stream/--no-stream", help="Print the answer as it is generated.")]
WholeJson = Annotated[bool, typer.Option("--json", help="Print the whole response as JSON (no streaming).")]


def _fail_on_error(chunk: Any) -> None:
    if isinstance(chunk, dict) and isinstance(chunk.get("error"), dict):
        raise CliError(f"The stream failed: {chunk['error'].get('message')}", None, FAILED)


def generate(path: str, body: dict[str, Any], *, stream: bool, json: bool, text_of: Any) -> dict[str, Any] | None:
    """Send ``body``; stream when asked (one answer) and return None, else return the whole response.

    ``text_of(choice, streamed)`` is the text of a choice or of a streamed chunk's choice."""
    gw = gateway()
    if json or not stream or body.get("n", 1) > 1:
        response: dict[str, Any] = gw.post(path, body)
        return response
    body = {**body, "stream": True}
    with gw.stream("POST", path, json={k: v for k, v in body.items() if v is not None}) as response_stream:
        for _, data in gw.events(response_stream):
            if data == "[DONE]":
                break
            chunk = decode(data)
            _fail_on_error(chunk)
            for choice in chunk.get("choices") or []:
                sys.stdout.write(text_of(choice, True))
                sys.stdout.flush()
    sys.stdout.write("\n")
    return None


def show(response: dict[str, Any], *, json: bool, text_of: Any, logprobs: bool) -> None:
    """Print a whole response: its JSON, or each answer (headed when there are several) and its logprobs."""
    if json:
        print_json(response)
        return
    choices = response.get("choices") or []
    for choice in choices:
        if len(choices) > 1:
            note(f"--- answer {choice['index']} ({choice.get('finish_reason')}) ---")
        print(text_of(choice, False))
        if logprobs and choice.get("logprobs"):
            _print_logprobs(choice["logprobs"])
    if response.get("model"):
        note(f"[{response['model']}]")


def _print_logprobs(logprobs: dict[str, Any]) -> None:
    if "content" in logprobs:  # chat
        for item in logprobs.get("content") or []:
            alternatives = ", ".join(f"{t['token']!r}: {t['logprob']:.3f}" for t in item.get("top_logprobs") or [])
            note(f"  {item['token']!r} {item['logprob']:.3f}  {alternatives}")
        return
    for token, value, top in zip(
        logprobs.get("tokens") or [],
        logprobs.get("token_logprobs") or [],
        logprobs.get("top_logprobs") or [],
        strict=False,
    ):
        alternatives = ", ".join(f"{t!r}: {v:.3f}" for t, v in (top or {}).items())
        note(f"  {token!r} {value:.3f}  {alternatives}")
