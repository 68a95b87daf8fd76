"""The judge of label and score model graders: any model the project may call, asked through the inference gateway.

Going through ``InferenceGateway`` gives a judge what any call gets: routing (base, ``ft:``, alias, upstream),
fallbacks, guards, the model's prompt format or chat template, rate limits, and usage metered to the project.

``choose`` (a label model grader) never lets the model wander off the labels: it reads the probability of each
label as the model's next token, the way ``/v1/classifications`` does (``app.inference.classify``):

- a model fine-tuned on labelled prompt-completion data (it has a prompt format) is asked exactly as
  ``/v1/classifications`` asks it, through ``gateway.classify``, with the last user message as the text (its
  training prompts were that text; the guards classify the same message);
- any other model gets the conversation in its chat template, plus a last user message naming the labels, and
  answers one token with its top log probabilities; the labels' shares of them decide (``classify.verdict``).
  A model that returns no log probabilities (some upstream models) answers in full instead, and the first label
  its answer starts with, or else contains, is its choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from app.auth.principal import Principal
from app.errors import BadGateway, InvalidRequest
from app.evals.graders import JudgeReply
from app.inference.classify import verdict
from app.inference.gateway import InferenceGateway
from app.inference.schemas import MAX_TOP_LOGPROBS, ChatCompletionRequest, ClassificationRequest

# One sticky key for every judge call: an alias split between targets judges with one of them throughout.
STICKY = "ftgw-eval-judge"
R = TypeVar("R", ChatCompletionRequest, ClassificationRequest)


def label_instruction(labels: Sequence[str]) -> str:
    return "Answer with exactly one of these labels and nothing else: " + ", ".join(labels) + "."


def last_user_text(messages: Sequence[Mapping[str, str]]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else messages[-1]["content"]


def first_label(text: str, labels: Sequence[str]) -> str | None:
    """The label a free-text answer gives: the one it starts with, else the one it names first."""
    said = text.strip().casefold()
    starting = [label for label in labels if said.startswith(label.strip().casefold())]
    if starting:
        return max(starting, key=len)
    found = [(said.find(label.strip().casefold()), label) for label in labels if label.strip().casefold() in said]
    return min(found)[1] if found else None


class GatewayJudge:
    """:class:`app.evals.graders.Judge` over the inference gateway, calling as ``principal`` (its project)."""

    def __init__(self, gateway: InferenceGateway, principal: Principal) -> None:
        self.gateway = gateway
        self.principal = principal

    async def chat(self, model: str, messages: list[dict[str, str]], *, sampling: Mapping[str, Any]) -> JudgeReply:
        fields: dict[str, Any] = {
            key: sampling[key] for key in ("temperature", "top_p", "seed", "reasoning_effort") if key in sampling
        }
        if sampling.get("max_completions_tokens") is not None:
            fields["max_completion_tokens"] = sampling["max_completions_tokens"]
        body = await self._completion(model, messages, fields)
        return _reply(body, model)

    async def choose(self, model: str, messages: list[dict[str, str]], labels: Sequence[str]) -> JudgeReply:
        plan = await self.gateway.catalog.plan(self.principal.project_id, model, STICKY)
        endpoint = next((e for e in plan.candidates if e is not None), None)
        if endpoint is not None and endpoint.prompt_format is not None:
            return await self._classify(model, last_user_text(messages), labels)
        asked = [*messages, {"role": "user", "content": label_instruction(labels)}]
        one_token = {"temperature": 0, "max_completion_tokens": 1, "logprobs": True, "top_logprobs": MAX_TOP_LOGPROBS}
        spent = JudgeReply("", model, 0, 0)
        try:
            body = await self._completion(model, asked, one_token)
        except BadGateway:
            if endpoint is None:
                raise
            body = None  # a model that takes no logprobs (an upstream reasoning model): it answers in full below
        if body is not None:
            spent = _reply(body, model)
            choice = (body.get("choices") or [{}])[0]
            content = ((choice.get("logprobs") or {}).get("content")) or []
            if content:
                top = {t["token"]: t["logprob"] for t in content[0].get("top_logprobs") or []}
                found = verdict(top or {content[0]["token"]: content[0]["logprob"]}, list(labels), spent.prompt_tokens)
                return JudgeReply(found.label or "", spent.model, spent.prompt_tokens, spent.completion_tokens)
            if spent.refused:
                return spent
        answered = _reply(await self._completion(model, asked, {"temperature": 0}), model)
        label = first_label(answered.text, labels)
        return JudgeReply(
            label if label is not None else answered.text,
            answered.model,
            spent.prompt_tokens + answered.prompt_tokens,
            spent.completion_tokens + answered.completion_tokens,
            refused=answered.refused,
        )

    async def _classify(self, model: str, text: str, labels: Sequence[str]) -> JudgeReply:
        request = _request(ClassificationRequest, {"model": model, "input": text, "labels": list(labels)})
        response = await self.gateway.classify(self.principal, request, STICKY)
        return JudgeReply(response.data[0].label or "", response.model, response.usage.prompt_tokens, 0)

    async def _completion(self, model: str, messages: list[dict[str, str]], fields: Mapping[str, Any]) -> Any:
        request = _request(ChatCompletionRequest, {"model": model, "messages": messages, **fields})
        served = await self.gateway.serve(self.principal, request, STICKY)
        if served.answer.body is None:  # only a stream has no body, and the judge never streams
            raise BadGateway(f"'{model}' gave no answer.", param="model")
        return served.answer.body


def _request(kind: type[R], data: dict[str, Any]) -> R:
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise InvalidRequest(f"The judge's request is invalid: {first['msg']}") from None


def _reply(body: Mapping[str, Any], model: str) -> JudgeReply:
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    usage = body.get("usage") or {}
    return JudgeReply(
        text=str(message.get("content") or ""),
        model=str(body.get("model") or model),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        refused=choice.get("finish_reason") == "content_filter",
    )
