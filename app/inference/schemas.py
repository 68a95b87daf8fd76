"""Request and response schemas of /v1/chat/completions and /v1/completions (OpenAI's shapes, the parts served)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from app.kit.numbers import INT64_MAX, INT64_MIN
from app.kit.schemas import RequestSchema, Schema

Stop = str | Annotated[list[str], Field(max_length=4)] | None
# OpenAI's bounds; JSON cannot carry NaN or infinity, but Python's parser reads them (and 1e999 as inf): refused.
Penalty = Annotated[float, Field(ge=-2, le=2, allow_inf_nan=False)]
MaxTokens = Annotated[int, Field(ge=1, le=INT64_MAX)]
MAX_LOGIT_BIAS = 100
# Parameters OpenAI documents as nullable with a default: null means that default.
NULL_IS_DEFAULT = frozenset(
    {"temperature", "top_p", "n", "stream", "frequency_penalty", "presence_penalty", "logprobs", "echo", "max_tokens"}
)
MAX_TOP_LOGPROBS = 20  # OpenAI's bound on a chat completion's top_logprobs


class StreamOptions(RequestSchema):
    include_usage: bool = False


class Sampling(RequestSchema):
    """What chat and text completions share. Fields ftgw does not know are passed on to upstream providers."""

    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=512)]
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] = 1.0
    top_p: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 1.0
    n: Annotated[int, Field(ge=1, le=128)] = 1
    stop: Stop = None
    seed: Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)] | None = None
    frequency_penalty: Penalty = 0.0
    presence_penalty: Penalty = 0.0
    logit_bias: dict[str, float] | None = Field(
        default=None, description="Token id (as a string) -> a bias from -100 to 100 added to its logit."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in NULL_IS_DEFAULT)}
        return data

    @field_validator("logit_bias")
    @classmethod
    def _token_ids_and_bounded_biases(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not (key.isascii() and key.isdigit()):
                raise ValueError(f"keys must be token ids (non-negative integers as strings), not {key!r}")
            if not -MAX_LOGIT_BIAS <= bias <= MAX_LOGIT_BIAS:
                raise ValueError(f"the bias of token {key} must be in [-{MAX_LOGIT_BIAS}, {MAX_LOGIT_BIAS}]")
        return value

    def token_biases(self) -> tuple[tuple[int, float], ...]:
        return tuple((int(key), bias) for key, bias in (self.logit_bias or {}).items())

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatMessage(RequestSchema):
    model_config = ConfigDict(extra="allow")  # tool calls and the like travel to upstream providers
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatCompletionRequest(Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs=true")
        return self


class CompletionRequest(Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=8)]
    max_tokens: MaxTokens = 16
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    echo: Literal[False] = False
    suffix: None = None
    apply_prompt_format: bool = Field(
        default=True,
        description="ftgw: append the separator and stop sequence the model was trained with, and strip them "
        "(and the learnt leading space) from the answer. False sends the prompt as it is.",
    )

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class Usage(Schema):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(Schema):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(Schema):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class AssistantMessage(Schema):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None


class ChatChoice(Schema):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "content_filter"]
    logprobs: ChoiceLogprobs | None


class ChatCompletion(Schema):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionLogprobs(Schema):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(Schema):
    index: int
    text: str
    finish_reason: Literal["stop", "length", "content_filter"]
    logprobs: CompletionLogprobs | None


class Completion(Schema):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ClassificationRequest(RequestSchema):
    model: Annotated[str, Field(min_length=1, max_length=512)]
    input: str | Annotated[list[str], Field(min_length=1, max_length=64)]
    labels: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=2, max_length=20)] | None = Field(
        default=None, description="The classes; default: the labels the classifier was trained on."
    )


class ClassificationResult(Schema):
    object: Literal["classification"] = "classification"
    index: int
    label: str | None = Field(description="The most probable label; null when no label matched the model's tokens.")
    probabilities: dict[str, float]
    coverage: float = Field(description="Share of the model's probability mass the labels received.")


class ClassificationResponse(Schema):
    object: Literal["list"] = "list"
    model: str
    data: list[ClassificationResult]
    usage: Usage


class ChunkDelta(Schema):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(Schema):
    index: int
    delta: ChunkDelta
    finish_reason: Literal["stop", "length", "content_filter"] | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(Schema):
    """One server-sent event of a streamed chat completion (OpenAI's ``CreateChatCompletionStreamResponse``)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(default=None, description="Only in the last chunk, with stream_options.include_usage.")


class CompletionChunkChoice(Schema):
    index: int
    text: str
    finish_reason: Literal["stop", "length", "content_filter"] | None
    logprobs: CompletionLogprobs | None


class CompletionChunk(Schema):
    """One server-sent event of a streamed completion: a ``text_completion`` with a piece of each choice's text."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChunkChoice]
    usage: Usage | None = Field(default=None, description="Only in the last chunk, with stream_options.include_usage.")
