"""A run's samples: what the evaluated model answers to each row, through the inference gateway.

A ``completions`` run renders its ``input_messages`` with the row's item and asks its model, as any caller of the
project would: routing (aliases, ``alias@N``, fallbacks, guards), prompt formats and usage metering all apply. A model
fine-tuned on prompt-completion data is asked through completions with its stored prompt format (the rendered user
text is the prompt), the way it was trained to answer; every other model through chat completions. A ``jsonl`` run's
samples are in its rows already.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.auth.principal import Principal
from app.errors import GatewayError
from app.evals import templates
from app.evals.graders import Sample
from app.evals.items import Row
from app.evals.schemas import (
    CompletionsRunDataSource,
    ItemReferenceInputMessages,
    RunSamplingParams,
    TemplateInputMessages,
    TemplateMessage,
)
from app.inference.gateway import InferenceGateway
from app.inference.schemas import ChatCompletionRequest, CompletionRequest

# What OpenAI's output item reports for a sampling parameter the run left unset.
_UNSET_TEMPERATURE = 1.0
_UNSET_TOP_P = 1.0
_UNSET_SEED = 42
_DEFAULT_MAX_TOKENS = 256  # a run that sets no max_completion_tokens: enough for a graded answer, bounded


@dataclass(frozen=True, slots=True)
class Sampled:
    """One row's sample: OpenAI's output-item ``sample`` object, and what graders read (None when it errored)."""

    sample: dict[str, Any]
    graded: Sample | None


def stored_sample(row: Row) -> Sampled:
    """A ``jsonl`` row's own sample (its ``output_text``, or its first choice's message)."""
    given = row.sample or {}
    text = given.get("output_text")
    if not isinstance(text, str):
        choices = given.get("choices") or [{}]
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        text = message.get("content") if isinstance(message, dict) else None
    text = text if isinstance(text, str) else ""
    model = given.get("model") if isinstance(given.get("model"), str) else None
    listed = {  # what else of OpenAI's sample the row gives, for graders that read it ({{sample.choices}} …)
        key: [part for part in given[key] if isinstance(part, dict)]
        for key in ("input", "choices", "output_tools")
        if isinstance(given.get(key), list)
    }
    graded = Sample.of(text, model=model, **listed)
    sample = {
        "input": [],
        "output": [{"role": "assistant", "content": text}],
        "finish_reason": "stop",
        "model": model or "",
        "usage": _usage(0, 0),
        "error": None,
        "temperature": _UNSET_TEMPERATURE,
        "max_completion_tokens": 0,
        "top_p": _UNSET_TOP_P,
        "seed": _UNSET_SEED,
    }
    return Sampled(sample, graded)


class Sampler:
    """Asks a completions run's model for each row's answer, as ``principal`` (the key that created the run)."""

    def __init__(self, gateway: InferenceGateway, principal: Principal, source: CompletionsRunDataSource) -> None:
        assert source.model is not None  # refused at create time
        self.gateway = gateway
        self.principal = principal
        self.model = source.model
        self.input_messages = source.input_messages
        self.params = source.sampling_params or RunSamplingParams()
        self._prompt_format: bool | None = None

    async def sample(self, row: Row) -> Sampled:
        messages = self.messages(row)
        try:
            if await self._uses_prompt_format():
                text, finish, model, usage = await self._complete(messages)
            else:
                text, finish, model, usage = await self._chat(messages)
        except GatewayError as exc:
            sample = self._sample(messages, "", "error", self.model, (0, 0))
            sample["output"] = []
            sample["error"] = {"code": exc.code or exc.type, "message": exc.message}
            return Sampled(sample, None)
        sample = self._sample(messages, text, finish, model, usage)
        # The answer's own finish_reason reaches the graders (``{{sample.choices[0].finish_reason}}``): a guard's
        # refusal is told apart from an answer by it (content_filter), as OpenAI's filtered answers are.
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return Sampled(sample, Sample.of(text, model=model, input=messages, choices=[choice]))

    def messages(self, row: Row) -> list[dict[str, str]]:
        """The row's prompt: the template rendered with its item, or the messages its item holds."""
        namespaces = {"item": row.item}
        if isinstance(self.input_messages, ItemReferenceInputMessages):
            path = self.input_messages.item_reference.removeprefix("item.")
            found: Any = row.item
            for part in path.split("."):
                found = found[part]
            return [_plain(m) for m in found]
        template = self.input_messages.template if isinstance(self.input_messages, TemplateInputMessages) else []
        return [{"role": m.role, "content": templates.render(_text(m), namespaces)} for m in template]

    async def _uses_prompt_format(self) -> bool:
        """Whether the model answers best as it was trained: a prompt-completion fine-tune, asked by completions."""
        if self._prompt_format is None:
            plan = await self.gateway.catalog.plan(self.principal.project_id, self.model, None)
            first = next((e for e in plan.candidates if e is not None), None)
            self._prompt_format = first is not None and first.prompt_format is not None
        return self._prompt_format

    async def _chat(self, messages: list[dict[str, str]]) -> tuple[str, str, str, tuple[int, int]]:
        body = ChatCompletionRequest.model_validate(
            {"model": self.model, "messages": messages, **self._params("max_completion_tokens")}
        )
        served = await self.gateway.serve(self.principal, body, None)
        whole = served.answer.body or {}
        choice = (whole.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        return text, choice.get("finish_reason") or "stop", whole.get("model", self.model), _tokens(whole)

    async def _complete(self, messages: list[dict[str, str]]) -> tuple[str, str, str, tuple[int, int]]:
        users = [m["content"] for m in messages if m["role"] == "user"]
        prompt = users[-1] if users else "\n".join(m["content"] for m in messages)
        body = CompletionRequest.model_validate({"model": self.model, "prompt": prompt, **self._params("max_tokens")})
        served = await self.gateway.serve(self.principal, body, None)
        whole = served.answer.body or {}
        choice = (whole.get("choices") or [{}])[0]
        text = choice.get("text") or ""
        return text, choice.get("finish_reason") or "stop", whole.get("model", self.model), _tokens(whole)

    def _params(self, max_tokens_field: str) -> dict[str, Any]:
        p = self.params
        values: dict[str, Any] = {max_tokens_field: p.max_completion_tokens or _DEFAULT_MAX_TOKENS}
        for name in ("temperature", "top_p", "seed"):
            if getattr(p, name) is not None:
                values[name] = getattr(p, name)
        return values

    def _sample(
        self, messages: list[dict[str, str]], text: str, finish: str, model: str, usage: tuple[int, int]
    ) -> dict[str, Any]:
        p = self.params
        return {
            "input": messages,
            "output": [{"role": "assistant", "content": text}],
            "finish_reason": finish,
            "model": model,
            "usage": _usage(*usage),
            "error": None,
            "temperature": p.temperature if p.temperature is not None else _UNSET_TEMPERATURE,
            "max_completion_tokens": p.max_completion_tokens or _DEFAULT_MAX_TOKENS,
            "top_p": p.top_p if p.top_p is not None else _UNSET_TOP_P,
            "seed": p.seed if p.seed is not None else _UNSET_SEED,
        }


def _text(message: TemplateMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.text for part in content)
    return content.text


def _plain(message: Mapping[str, Any]) -> dict[str, str]:
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return {"role": str(message.get("role", "user")), "content": str(content or "")}


def _tokens(whole: Mapping[str, Any]) -> tuple[int, int]:
    usage = whole.get("usage") or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cached_tokens": 0,
    }
