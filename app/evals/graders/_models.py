"""The graders' wire shapes, as OpenAI's schemas define them (``GraderStringCheck`` … ``GraderMulti``, and the
eval-level variants with ``pass_threshold``); one pydantic union, discriminated on ``type``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator

from app.evals.graders._formula import Formula
from app.kit.schemas import RequestSchema

Name = Annotated[str, Field(max_length=256)]
Template = Annotated[str, Field(max_length=65536)]
ModelName = Annotated[str, Field(min_length=1, max_length=512)]
Threshold = Annotated[float, Field(allow_inf_nan=False)]
Role = Literal["user", "assistant", "system", "developer"]
StringOperation = Literal["eq", "ne", "like", "ilike"]
SimilarityMetric = Literal[
    "cosine", "fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"
]


class InputText(RequestSchema):
    type: Literal["input_text"]
    text: Template


class OutputText(RequestSchema):
    type: Literal["output_text"]
    text: Template


class InputImage(RequestSchema):
    type: Literal["input_image"]
    image_url: str
    detail: str | None = None


class InputAudio(RequestSchema):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


ContentPart = Annotated[InputText | OutputText | InputImage | InputAudio, Field(discriminator="type")]


def _content_shape(value: Any) -> str:
    if isinstance(value, list):
        return "parts"
    return "text" if isinstance(value, str) else "part"


# Tagged by shape, so a validation error's location says which shape it was read as (see ``_parse.param_of``).
Content = Annotated[
    Annotated[Template, Tag("text")] | Annotated[ContentPart, Tag("part")] | Annotated[list[ContentPart], Tag("parts")],
    Discriminator(_content_shape),
]


class GraderMessage(RequestSchema):
    """One message of a model grader's prompt: OpenAI's ``EvalItem`` (``type: message``, content a string, a part
    or a list of parts) or the eval-level ``SimpleInputMessage`` (``{role, content}``)."""

    type: Literal["message"] | None = None
    role: Role
    content: Content

    @field_validator("content")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        parts = value if isinstance(value, list) else [value]
        if any(isinstance(part, InputImage | InputAudio) for part in parts):
            raise ValueError("image and audio inputs are not supported: a grader's judge model reads text only")
        return value

    def template(self) -> str:
        """The content's text parts, one per line: what is rendered per item."""
        if isinstance(self.content, str):
            return self.content
        parts = self.content if isinstance(self.content, list) else [self.content]
        return "\n".join(part.text for part in parts if isinstance(part, InputText | OutputText))


class SamplingParams(RequestSchema):
    """``GraderScoreModel.sampling_params`` (``max_completions_tokens`` is OpenAI's spelling)."""

    max_completions_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None


class StringCheckGrader(RequestSchema):
    type: Literal["string_check"]
    name: Name
    input: Template
    reference: Template
    operation: StringOperation


class TextSimilarityGrader(RequestSchema):
    type: Literal["text_similarity"]
    name: Name
    input: Template
    reference: Template
    evaluation_metric: SimilarityMetric
    pass_threshold: Threshold | None = Field(
        default=None, description="Eval testing criteria: a score at or above it passes (required there)."
    )


class LabelModelGrader(RequestSchema):
    type: Literal["label_model"]
    name: Name
    model: ModelName
    input: Annotated[list[GraderMessage], Field(min_length=1)]
    labels: Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(min_length=2, max_length=20)]
    passing_labels: Annotated[list[str], Field(min_length=1)]

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be distinct")
        return labels

    @field_validator("passing_labels")
    @classmethod
    def _passing_are_labels(cls, passing: list[str], info: ValidationInfo) -> list[str]:
        labels = info.data.get("labels")
        unknown = [label for label in passing if labels is not None and label not in labels]
        if unknown:
            raise ValueError(f"passing_labels must be a subset of labels; {unknown[0]!r} is not a label")
        return passing


class ScoreModelGrader(RequestSchema):
    type: Literal["score_model"]
    name: Name
    model: ModelName
    input: Annotated[list[GraderMessage], Field(min_length=1)]
    range: tuple[Threshold, Threshold] | None = Field(default=None, description="The score's range; [0, 1] if unset.")
    sampling_params: SamplingParams | None = None
    pass_threshold: Threshold | None = None

    @field_validator("range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError("range must be [low, high] with low < high")
        return value

    def bounds(self) -> tuple[float, float]:
        return self.range if self.range is not None else (0.0, 1.0)


class PythonGrader(RequestSchema):
    """Parsed only to be refused with a clear error: ftgw does not run user code."""

    type: Literal["python"]
    name: Name = ""
    source: str = ""
    image_tag: str | None = None
    pass_threshold: Threshold | None = None


LeafGrader = Annotated[
    StringCheckGrader | TextSimilarityGrader | LabelModelGrader | ScoreModelGrader,
    Field(discriminator="type"),
]
Leaf = StringCheckGrader | TextSimilarityGrader | LabelModelGrader | ScoreModelGrader


def _graders_shape(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict) and "type" not in value:
        return "map"
    return "one"


Graders = Annotated[
    Annotated[dict[str, LeafGrader], Tag("map")]
    | Annotated[list[LeafGrader], Tag("list")]
    | Annotated[LeafGrader, Tag("one")],
    Discriminator(_graders_shape),
]


class MultiGrader(RequestSchema):
    """Sub-graders combined by ``calculate_output``, a formula over their scores by name.

    OpenAI's guide gives ``graders`` as an object whose keys are the formula's names; its schema (and the SDK's
    types) as one grader. Both are accepted, and a list too: a grader outside an object is named by its ``name``.
    """

    type: Literal["multi"]
    name: Name
    graders: Graders
    calculate_output: Annotated[str, Field(min_length=1, max_length=4096)]
    pass_threshold: Threshold | None = Field(default=None, description="ftgw: a score at or above it passes.")

    @field_validator("graders")
    @classmethod
    def _named_once(cls, value: Any) -> Any:
        if isinstance(value, list) and len({g.name for g in value}) != len(value):
            raise ValueError("the graders' names must be distinct: the formula refers to them by name")
        if isinstance(value, list | dict) and not value:
            raise ValueError("a multi grader needs at least one grader")
        return value

    @field_validator("calculate_output")
    @classmethod
    def _formula(cls, value: str, info: ValidationInfo) -> str:
        graders = info.data.get("graders")
        if graders is not None:
            Formula.parse(value, _named(graders))  # a FormulaError is a ValueError: a validation error here
        return value

    def named(self) -> dict[str, Leaf]:
        """The sub-graders by the name the formula uses."""
        return _named(self.graders)

    def formula(self) -> Formula:
        return Formula.parse(self.calculate_output, self.named())


def _named(graders: dict[str, Leaf] | list[Leaf] | Leaf) -> dict[str, Leaf]:
    if isinstance(graders, dict):
        return dict(graders)
    return {grader.name: grader for grader in (graders if isinstance(graders, list) else [graders])}


Grader = Annotated[
    StringCheckGrader | TextSimilarityGrader | LabelModelGrader | ScoreModelGrader | MultiGrader,
    Field(discriminator="type"),
]
AnyGrader = StringCheckGrader | TextSimilarityGrader | LabelModelGrader | ScoreModelGrader | MultiGrader
