"""What grading reads and returns: the sample, a grader's result, and the judge a model grader asks."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# OpenAI's RunGraderResponse.metadata.errors flags; a result names the ones that apply.
ERROR_FLAGS = (
    "formula_parse_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
    "invalid_variable_error",
    "other_error",
    "python_grader_server_error",
    "python_grader_runtime_error",
    "model_grader_server_error",
    "model_grader_refusal_error",
    "model_grader_parse_error",
)


@dataclass(frozen=True, slots=True)
class Sample:
    """The ``sample`` namespace: the answer being graded (``{{sample.output_text}}``, ``{{sample.output_json.x}}``).

    ``output_json`` is the answer parsed as JSON when it is JSON (None otherwise): OpenAI populates it "if the model
    sample is a valid JSON string". ``input`` and ``model`` say what produced the answer, when known.
    """

    output_text: str
    output_json: Any | None = None
    output_tools: list[dict[str, Any]] = field(default_factory=list)
    choices: list[dict[str, Any]] = field(default_factory=list)
    input: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None

    @classmethod
    def of(
        cls,
        output_text: str,
        *,
        model: str | None = None,
        input: Sequence[Mapping[str, Any]] = (),
        output_tools: Sequence[Mapping[str, Any]] = (),
        choices: Sequence[Mapping[str, Any]] | None = None,
    ) -> Sample:
        """A sample of ``output_text``, its JSON parsed when it is JSON."""
        return cls(
            output_text=output_text,
            output_json=parse_json(output_text),
            output_tools=[dict(t) for t in output_tools],
            choices=[dict(c) for c in choices]
            if choices is not None
            else [{"index": 0, "message": {"role": "assistant", "content": output_text}, "finish_reason": "stop"}],
            input=[dict(m) for m in input],
            model=model,
        )

    def namespace(self) -> dict[str, Any]:
        """The values ``{{sample.…}}`` reads (``output_json`` only when the answer was JSON)."""
        values: dict[str, Any] = {
            "output_text": self.output_text,
            "output_tools": self.output_tools,
            "choices": self.choices,
            "input": self.input,
        }
        if self.output_json is not None:
            values["output_json"] = self.output_json
        if self.model is not None:
            values["model"] = self.model
        return values


def parse_json(text: str) -> Any | None:
    """``text`` as JSON (finite numbers only), None when it is not JSON."""

    def finite(token: str) -> float:
        raise ValueError(token)

    try:
        return json.loads(text, parse_constant=finite)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class JudgeReply:
    text: str
    model: str  # the model that answered
    prompt_tokens: int
    completion_tokens: int
    refused: bool = False  # a guard refused the exchange: ``text`` is its refusal


class Judge(Protocol):
    """The model that label and score graders ask. ftgw's is ``app.evals.judge.GatewayJudge`` (the inference
    gateway: routing, prompt formats, usage metering); a failure raises ``app.errors.GatewayError``."""

    async def chat(self, model: str, messages: list[dict[str, str]], *, sampling: Mapping[str, Any]) -> JudgeReply:
        """``model``'s answer to ``messages``; ``sampling`` holds OpenAI's sampling parameters
        (``temperature``, ``top_p``, ``seed``, ``max_completions_tokens``)."""
        ...

    async def choose(self, model: str, messages: list[dict[str, str]], labels: Sequence[str]) -> JudgeReply:
        """The label among ``labels`` that ``model`` finds most likely as its answer to ``messages`` (``text``)."""
        ...


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": 0,
        }


def merge_usage(*parts: Mapping[str, TokenUsage]) -> dict[str, TokenUsage]:
    out: dict[str, TokenUsage] = {}
    for part in parts:
        for model, usage in part.items():
            out[model] = out.get(model, TokenUsage()) + usage
    return out


@dataclass(frozen=True, slots=True)
class GradeResult:
    """One grader's verdict on one sample.

    ``score`` is the grader's number (0 when it errored), ``passed`` the verdict, ``sample`` the judge's exchange
    for model graders (None otherwise). ``sub_scores`` holds a multi grader's parts by name; ``usage`` the judge
    tokens per model; ``errors`` the OpenAI error flags that apply (empty: none), ``error`` the explanation.
    """

    name: str
    type: str
    score: float
    passed: bool
    sample: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    sub_scores: dict[str, float] = field(default_factory=dict)
    usage: dict[str, TokenUsage] = field(default_factory=dict)
    errors: frozenset[str] = frozenset()
    error: str | None = None

    @property
    def errored(self) -> bool:
        return bool(self.errors)

    def as_dict(self) -> dict[str, Any]:
        """OpenAI's ``EvalRunOutputItemResult``: name, type, score, passed, sample (plus metadata when any)."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "score": self.score if math.isfinite(self.score) else 0.0,
            "passed": self.passed,
            "sample": self.sample,
        }
        metadata = dict(self.metadata)
        if self.error is not None:
            metadata["error"] = self.error
        if metadata:
            out["metadata"] = metadata
        return out


def failed(name: str, type_: str, flag: str, error: str, **extra: Any) -> GradeResult:
    """The result of a grader that could not grade: score 0, not passed, the error said."""
    assert flag in ERROR_FLAGS
    return GradeResult(name=name, type=type_, score=0.0, passed=False, errors=frozenset({flag}), error=error, **extra)
