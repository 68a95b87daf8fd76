"""Wire shapes of ``/v1/fine_tuning/alpha/graders/run`` and ``/validate`` (OpenAI's RunGrader…/ValidateGrader…)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.evals.graders._models import AnyGrader
from app.evals.graders._types import GradeResult, TokenUsage
from app.kit.schemas import RequestSchema, Schema

_GRADER = (
    "A grader: string_check, text_similarity, score_model, label_model or multi (python graders are refused: "
    "ftgw does not run user code)."
)


class ValidateGraderRequest(RequestSchema):
    grader: dict[str, Any] = Field(description=_GRADER)


class ValidateGraderResponse(Schema):
    grader: dict[str, Any] = Field(description="The grader, as validated.")

    @classmethod
    def of(cls, grader: AnyGrader) -> ValidateGraderResponse:
        return cls(grader=grader.model_dump(exclude_none=True))


class RunGraderRequest(RequestSchema):
    grader: dict[str, Any] = Field(description=_GRADER)
    item: dict[str, Any] | None = Field(default=None, description="The dataset item: the `item` namespace.")
    model_sample: str = Field(
        description="The model sample to grade: the `sample` namespace (`output_json` too when it is JSON)."
    )


class GraderErrors(Schema):
    formula_parse_error: bool = False
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False
    invalid_variable_error: bool = False
    other_error: bool = False
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    model_grader_server_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_server_error_details: str | None = None

    @classmethod
    def of(cls, result: GradeResult) -> GraderErrors:
        flags: dict[str, Any] = dict.fromkeys(result.errors, True)
        if result.errors and not flags.keys() & cls.model_fields.keys():
            flags["other_error"] = True
        if result.error is not None and "model_grader_server_error" in result.errors:
            flags["model_grader_server_error_details"] = result.error
        return cls(**flags)


class RunGraderMetadata(Schema):
    name: str
    type: str
    errors: GraderErrors
    execution_time: float = Field(description="Seconds the grading took.")
    scores: dict[str, Any] = Field(description="A multi grader's sub-graders' scores, by name.")
    token_usage: int | None = Field(description="Tokens the judge models used; null when no model judged.")
    sampled_model_name: str | None = Field(description="The judge model, for a model grader.")
    error: str | None = Field(default=None, description="ftgw: why the grader could not grade, when it could not.")


class RunGraderResponse(Schema):
    reward: float
    metadata: RunGraderMetadata
    sub_rewards: dict[str, Any]
    model_grader_token_usage_per_model: dict[str, Any]

    @classmethod
    def of(cls, result: GradeResult, seconds: float) -> RunGraderResponse:
        usage = result.usage
        total = sum((u for u in usage.values()), TokenUsage())
        return cls(
            reward=result.score,
            metadata=RunGraderMetadata(
                name=result.name,
                type=result.type,
                errors=GraderErrors.of(result),
                execution_time=seconds,
                scores=dict(result.sub_scores),
                token_usage=total.total_tokens if usage else None,
                sampled_model_name=next(iter(usage), None),
                error=result.error,
            ),
            sub_rewards=dict(result.sub_scores),
            model_grader_token_usage_per_model={model: u.as_dict() for model, u in usage.items()},
        )
