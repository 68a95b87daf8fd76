"""Wire schemas of /v1/evals: the create and update bodies, and OpenAI's Eval, EvalRun, EvalRunOutputItem and lists.

Request bodies take what the ``openai`` SDK sends. Testing criteria stay raw objects here: each one is parsed and
checked by ``app.evals.graders.parse_grader``, which names the offending ``testing_criteria[i]`` field. Data source
rows (``source.content``) stay raw too, so that every problem with a row is reported the same way, whether the row
came inline or from a file (``app.evals.items``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints

from app.evals.models import OutputItemStatus, RunStatus
from app.kit.numbers import INT64_MAX, INT64_MIN
from app.kit.schemas import ListResponse, Metadata, RequestSchema, Schema, UnixTime

Name = Annotated[str, StringConstraints(max_length=512)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Param = Annotated[str, StringConstraints(min_length=1, max_length=512)]


def _unset(value: object) -> bool:
    """Left out of the wire object when unset: OpenAI's schemas have no nulls there."""
    return value is None


# The ``sample`` namespace of a custom data source config that includes it: what a sampled answer offers graders
# (``{{sample.output_text}}``, ``{{sample.output_json.x}}``, ``{{sample.choices[0].message.content}}``).
SAMPLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "message": {
                        "type": "object",
                        "properties": {"role": {"type": "string"}, "content": {"type": ["string", "null"]}},
                        "required": ["role"],
                    },
                    "finish_reason": {"type": "string"},
                },
                "required": ["index", "message", "finish_reason"],
            },
        },
        "output_text": {"type": "string"},
        "output_json": {"type": "object"},
        "output_tools": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["model", "choices"],
}


# --- evals ---------------------------------------------------------------------------------------------------------


class CustomDataSourceConfig(RequestSchema):
    type: Literal["custom"]
    item_schema: dict[str, Any] = Field(description="The JSON schema of each row's `item`.")
    include_sample_schema: bool = Field(
        default=False, description="Whether testing criteria may read a model's answer (`sample`)."
    )


class OtherDataSourceConfig(RequestSchema):
    """``logs`` and ``stored_completions``: OpenAI reads its own stored traffic; ftgw stores none, so it refuses them
    by name rather than as an unknown type."""

    model_config = ConfigDict(extra="allow")

    type: Literal["logs", "stored_completions"]


class CreateEvalRequest(RequestSchema):
    name: Name | None = None
    metadata: Metadata | None = None
    data_source_config: Annotated[CustomDataSourceConfig | OtherDataSourceConfig, Field(discriminator="type")]
    testing_criteria: Annotated[
        list[dict[str, Any]],
        Field(min_length=1, max_length=100, description="Graders (string_check, text_similarity, label_model, …)."),
    ]


class UpdateEvalRequest(RequestSchema):
    name: Name | None = Field(default=None, description="Rename the eval.")
    metadata: Metadata | None = Field(default=None, description="Replaces the eval's metadata (null clears it).")


class DataSourceConfigOut(Schema):
    """OpenAI's ``EvalCustomDataSourceConfig``: the JSON schema of a run's rows (``item``, and ``sample`` if any)."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["custom"] = "custom"
    schema_: dict[str, Any] = Field(alias="schema")


class EvalOut(Schema):
    id: str
    object: Literal["eval"] = "eval"
    name: str
    data_source_config: DataSourceConfigOut
    testing_criteria: list[dict[str, Any]]
    metadata: dict[str, str] | None = Field(validation_alias="eval_metadata")
    created_at: UnixTime


class EvalList(ListResponse[EvalOut]):
    pass


class EvalDeleted(Schema):
    object: Literal["eval.deleted"] = "eval.deleted"
    deleted: bool = True
    eval_id: str


# --- run data sources --------------------------------------------------------------------------------------------


class FileContentSource(RequestSchema):
    type: Literal["file_content"]
    # Rows are checked one by one when the run is created (app.evals.items), so a bad row is named `content[i]`.
    content: list[Any] = Field(
        min_length=1, description='The rows, each `{"item": {...}}` and, for jsonl runs, a `"sample": {...}`.'
    )


class FileIdSource(RequestSchema):
    type: Literal["file_id"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description='A file of purpose `evals`: JSONL, one `{"item": {...}, "sample"?: {...}}` per line.'
    )


class StoredCompletionsSource(RequestSchema):
    """OpenAI's stored chat completions: refused by name (ftgw stores no completions)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["stored_completions"]


RowSource = Annotated[FileContentSource | FileIdSource, Field(discriminator="type")]


class TextPart(RequestSchema):
    type: Literal["input_text", "output_text"]
    text: str


class TemplateMessage(RequestSchema):
    """One message of a completions run's prompt, as the SDK sends it: ``{role, content}`` or OpenAI's ``EvalItem``
    (``type: message``, content a string, a text part or a list of them). Text may reference ``{{item.x}}``."""

    type: Literal["message"] | None = Field(default=None, exclude_if=_unset)
    role: Literal["user", "assistant", "system", "developer"]
    content: str | TextPart | list[TextPart]

    @classmethod
    def user(cls, text: str) -> TemplateMessage:
        """A user message as ftgw's own runs store it: OpenAI's ``EvalItem`` with a text part (a plain ``{role,
        content}`` matches two of the message schemas OpenAI's ``oneOf`` lists, so a run holding it would not
        validate against OpenAI's schema)."""
        return cls(type="message", role="user", content=TextPart(type="input_text", text=text))

    def texts(self) -> list[str]:
        """Every template string of the message."""
        if isinstance(self.content, str):
            return [self.content]
        parts = self.content if isinstance(self.content, list) else [self.content]
        return [part.text for part in parts]


class TemplateInputMessages(RequestSchema):
    type: Literal["template"]
    template: list[TemplateMessage] = Field(min_length=1)


class ItemReferenceInputMessages(RequestSchema):
    type: Literal["item_reference"]
    item_reference: Param = Field(description="A path in the item that holds the messages, e.g. `item.messages`.")


InputMessages = Annotated[TemplateInputMessages | ItemReferenceInputMessages, Field(discriminator="type")]


class RunSamplingParams(RequestSchema):
    """What the run's model samples with; left unset, the model's defaults (OpenAI's own defaults)."""

    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] | None = Field(
        default=None, exclude_if=_unset
    )
    max_completion_tokens: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = Field(default=None, exclude_if=_unset)
    top_p: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = Field(default=None, exclude_if=_unset)
    seed: Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)] | None = Field(default=None, exclude_if=_unset)
    # Accepted by OpenAI's schema, not by ftgw's runs: refused by name when given (never silently ignored).
    response_format: dict[str, Any] | None = Field(default=None, exclude_if=_unset)
    tools: list[dict[str, Any]] | None = Field(default=None, exclude_if=_unset)
    reasoning_effort: str | None = Field(default=None, exclude_if=_unset)


class JsonlRunDataSource(RequestSchema):
    """Rows with ready answers: each row's ``sample`` is graded as it is."""

    type: Literal["jsonl"]
    source: RowSource


class CompletionsRunDataSource(RequestSchema):
    """Rows whose answers a model gives: ``input_messages`` rendered per row, sent to ``model``."""

    type: Literal["completions"]
    source: Annotated[FileContentSource | FileIdSource | StoredCompletionsSource, Field(discriminator="type")]
    model: ModelName | None = Field(default=None, exclude_if=_unset)
    input_messages: InputMessages | None = Field(default=None, exclude_if=_unset)
    sampling_params: RunSamplingParams | None = Field(default=None, exclude_if=_unset)


class ResponsesRunDataSource(RequestSchema):
    """OpenAI's Responses API runs: refused by name (ftgw serves chat and text completions)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["responses"]


RunDataSource = Annotated[JsonlRunDataSource | CompletionsRunDataSource, Field(discriminator="type")]


class CreateEvalRunRequest(RequestSchema):
    name: Name | None = None
    metadata: Metadata | None = None
    data_source: Annotated[
        JsonlRunDataSource | CompletionsRunDataSource | ResponsesRunDataSource, Field(discriminator="type")
    ]


# --- runs ----------------------------------------------------------------------------------------------------------


class ResultCounts(Schema):
    total: int = 0
    errored: int = 0
    failed: int = 0
    passed: int = 0


class ModelUsage(Schema):
    model_name: str
    invocation_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int = 0


class CriterionResult(Schema):
    testing_criteria: str = Field(description="The criterion's id.")
    passed: int
    failed: int


class RunError(Schema):
    """OpenAI's ``EvalApiError``."""

    code: str
    message: str


class EvalRunOut(Schema):
    id: str
    object: Literal["eval.run"] = "eval.run"
    eval_id: str
    name: str
    model: str | None = Field(description="The model sampled; null for jsonl runs.")
    status: RunStatus
    created_at: UnixTime
    report_url: str
    result_counts: ResultCounts
    per_model_usage: list[ModelUsage]
    per_testing_criteria_results: list[CriterionResult]
    data_source: RunDataSource
    metadata: dict[str, str] | None = Field(validation_alias="run_metadata")
    error: RunError | None = Field(description="Why the run failed; null otherwise.")


class EvalRunList(ListResponse[EvalRunOut]):
    pass


class EvalRunDeleted(Schema):
    object: Literal["eval.run.deleted"] = "eval.run.deleted"
    deleted: bool = True
    run_id: str


# --- output items ------------------------------------------------------------------------------------------------


class SampleMessage(Schema):
    role: str
    content: str


class SampleUsage(Schema):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0


class OutputItemSample(Schema):
    """What was graded: the prompt and the answer (sampled, or the row's own for jsonl runs) and how it was made."""

    input: list[SampleMessage]
    output: list[SampleMessage]
    finish_reason: str
    model: str
    usage: SampleUsage
    error: RunError | None = None
    temperature: float
    max_completion_tokens: int
    top_p: float
    seed: int


class OutputItemResult(Schema):
    """One grader's result; graders may add fields (``metadata``)."""

    model_config = ConfigDict(extra="allow")

    name: str
    type: str | None = None
    score: float
    passed: bool
    sample: dict[str, Any] | None = None


class OutputItemOut(Schema):
    id: str
    object: Literal["eval.run.output_item"] = "eval.run.output_item"
    run_id: str
    eval_id: str
    created_at: UnixTime
    status: OutputItemStatus
    datasource_item_id: int
    datasource_item: dict[str, Any]
    results: list[OutputItemResult]
    sample: OutputItemSample


class OutputItemList(ListResponse[OutputItemOut]):
    pass
