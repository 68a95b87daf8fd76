"""Validating a grader (an eval's testing criterion, or the graders API's ``grader``) into its typed model.

Every problem is an ``InvalidRequest`` (400) whose ``param`` names the offending field under the caller's prefix:
``testing_criteria[0].evaluation_metric``, ``grader.graders.similar.input[1].content``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from app.errors import InvalidRequest
from app.evals.graders._models import (
    AnyGrader,
    LabelModelGrader,
    MultiGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
)
from app.evals.graders._similarity import UNSUPPORTED

MODELS: dict[str, type[BaseModel]] = {
    "string_check": StringCheckGrader,
    "text_similarity": TextSimilarityGrader,
    "label_model": LabelModelGrader,
    "score_model": ScoreModelGrader,
    "multi": MultiGrader,
}
UNSUPPORTED_CODE = "unsupported_grader"
_CONTENT_SHAPES = frozenset({"text", "part", "parts"})


def parse_grader(spec: Any, param: str, *, for_eval: bool = True) -> AnyGrader:
    """``spec`` as a grader, or a 400 naming the field at fault under ``param``.

    ``for_eval``: an eval's testing criterion, where a text similarity grader needs its ``pass_threshold`` (as
    OpenAI's ``EvalGraderTextSimilarity`` requires); the graders API (``for_eval=False``) grades without one.
    """
    if not isinstance(spec, Mapping):
        raise InvalidRequest(f"Invalid value for '{param}': a grader must be an object.", param=param)
    kind = spec.get("type")
    if kind is None:
        raise InvalidRequest(
            f"Missing required parameter: '{param}.type'.", param=f"{param}.type", code="missing_required_parameter"
        )
    if kind == "python":
        raise InvalidRequest(
            "Python graders are not supported: ftgw does not run user code. Use string_check, text_similarity, "
            "label_model, score_model or multi graders.",
            param=f"{param}.type",
            code=UNSUPPORTED_CODE,
        )
    model = MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise InvalidRequest(
            f"Invalid value for '{param}.type': {kind!r} is not a grader type; expected one of {', '.join(MODELS)}.",
            param=f"{param}.type",
        )
    if kind == "multi":
        _parse_parts(spec.get("graders"), f"{param}.graders", for_eval)
    try:
        grader: AnyGrader = model.model_validate(dict(spec))  # type: ignore[assignment]
    except ValidationError as exc:
        raise _invalid(exc, param) from None
    if isinstance(grader, TextSimilarityGrader):
        if grader.evaluation_metric in UNSUPPORTED:
            raise InvalidRequest(
                f"The evaluation metric '{grader.evaluation_metric}' is not supported: "
                f"{UNSUPPORTED[grader.evaluation_metric]}.",
                param=f"{param}.evaluation_metric",
                code=UNSUPPORTED_CODE,
            )
        if for_eval and grader.pass_threshold is None:
            raise InvalidRequest(
                f"Missing required parameter: '{param}.pass_threshold'.",
                param=f"{param}.pass_threshold",
                code="missing_required_parameter",
            )
    return grader


def _parse_parts(graders: Any, param: str, for_eval: bool) -> None:
    """A multi grader's sub-graders, each checked under its own name (list: index; object: key)."""
    if isinstance(graders, list):
        for index, spec in enumerate(graders):
            _parse_leaf(spec, f"{param}[{index}]")
    elif isinstance(graders, Mapping) and "type" not in graders:
        for key, spec in graders.items():
            _parse_leaf(spec, f"{param}.{key}")
    elif graders is not None:
        _parse_leaf(graders, param)


def _parse_leaf(spec: Any, param: str) -> None:
    if isinstance(spec, Mapping) and spec.get("type") == "multi":
        raise InvalidRequest(f"Invalid value for '{param}.type': a multi grader cannot nest.", param=f"{param}.type")
    # A sub-grader's score feeds the formula; passing is the multi grader's own: no threshold needed.
    parse_grader(spec, param, for_eval=False)


def _invalid(exc: ValidationError, param: str) -> InvalidRequest:
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = param + param_of(first["loc"])
    missing = first["type"] == "missing"
    said = str(first["msg"]).removeprefix("Value error, ")
    message = f"Missing required parameter: '{where}'." if missing else f"Invalid value for '{where}': {said}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return InvalidRequest(message, param=where, code="missing_required_parameter" if missing else "invalid_value")


def param_of(loc: Sequence[int | str]) -> str:
    """A validation error's location as an OpenAI ``param`` suffix, without pydantic's union tags.

    The tags come where the models put discriminated unions: a message's ``content`` (its shape, then for a part
    its ``type``) and a multi grader's ``graders`` (its shape, then each grader's ``type``).
    """
    out: list[str] = []
    items = list(loc)
    i = 0
    while i < len(items):
        part = items[i]
        out.append(f"[{part}]" if isinstance(part, int) else f".{part}")
        i += 1
        if part == "content" and i < len(items) and items[i] in _CONTENT_SHAPES:
            shape = items[i]
            i += 1
            if shape == "parts" and i < len(items) and isinstance(items[i], int):
                out.append(f"[{items[i]}]")
                i += 1
            if shape != "text" and i < len(items):
                i += 1  # the part's type tag
        elif part == "graders" and i < len(items) and items[i] in {"map", "list", "one"}:
            shape = items[i]
            i += 1
            if shape != "one" and i < len(items):
                key = items[i]
                out.append(f"[{key}]" if isinstance(key, int) else f".{key}")
                i += 1
            if i < len(items):
                i += 1  # the grader's type tag
    return "".join(out)
