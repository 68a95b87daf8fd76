"""parse_grader: every bad grader is a 400 naming the field at fault; nothing else ever escapes it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import InvalidRequest
from app.evals.graders import (
    LabelModelGrader,
    MultiGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
    parse_grader,
)

P = "testing_criteria[0]"
CHECK = {"type": "string_check", "name": "c", "input": "{{sample.output_text}}", "reference": "x", "operation": "eq"}
SIMILAR = {
    "type": "text_similarity",
    "name": "s",
    "input": "{{sample.output_text}}",
    "reference": "{{item.ref}}",
    "evaluation_metric": "bleu",
    "pass_threshold": 0.5,
}
LABEL = {
    "type": "label_model",
    "name": "l",
    "model": "tiny-smollm2",
    "input": [{"role": "user", "content": "{{item.text}}"}],
    "labels": ["good", "bad"],
    "passing_labels": ["good"],
}
SCORE = {
    "type": "score_model",
    "name": "sc",
    "model": "tiny-smollm2",
    "input": [{"type": "message", "role": "user", "content": {"type": "input_text", "text": "{{item.text}}"}}],
    "range": [0, 10],
    "sampling_params": {"temperature": 0, "max_completions_tokens": 8},
    "pass_threshold": 7,
}
MULTI = {"type": "multi", "name": "m", "graders": {"a": CHECK, "b": SIMILAR}, "calculate_output": "(a + b) / 2"}


def refused(spec: Any, *, for_eval: bool = True) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        parse_grader(spec, P, for_eval=for_eval)
    assert raised.value.status_code == 400
    return raised.value


def test_valid_graders_parse_into_their_types() -> None:
    assert isinstance(parse_grader(CHECK, P), StringCheckGrader)
    assert isinstance(parse_grader(SIMILAR, P), TextSimilarityGrader)
    assert isinstance(parse_grader(LABEL, P), LabelModelGrader)
    score = parse_grader(SCORE, P)
    assert isinstance(score, ScoreModelGrader) and score.bounds() == (0, 10)
    assert isinstance(parse_grader(MULTI, P), MultiGrader)


@pytest.mark.parametrize(
    ("spec", "param", "code"),
    [
        ({**CHECK, "type": "regex"}, f"{P}.type", "invalid_value"),
        ({k: v for k, v in CHECK.items() if k != "type"}, f"{P}.type", "missing_required_parameter"),
        ({**CHECK, "type": 3}, f"{P}.type", "invalid_value"),
        ({**CHECK, "operation": "contains"}, f"{P}.operation", "invalid_value"),
        ({k: v for k, v in CHECK.items() if k != "input"}, f"{P}.input", "missing_required_parameter"),
        ({**CHECK, "name": "nul\x00"}, f"{P}.name", "invalid_value"),
        ({**SIMILAR, "evaluation_metric": "bleurt"}, f"{P}.evaluation_metric", "invalid_value"),
        ({**SIMILAR, "evaluation_metric": "cosine"}, f"{P}.evaluation_metric", "unsupported_grader"),
        (
            {k: v for k, v in SIMILAR.items() if k != "pass_threshold"},
            f"{P}.pass_threshold",
            "missing_required_parameter",
        ),
        ({**SIMILAR, "pass_threshold": "high"}, f"{P}.pass_threshold", "invalid_value"),
        ({**LABEL, "passing_labels": ["great"]}, f"{P}.passing_labels", "invalid_value"),
        ({**LABEL, "labels": ["good"]}, f"{P}.labels", "invalid_value"),
        ({**LABEL, "labels": ["good", "good"], "passing_labels": ["good"]}, f"{P}.labels", "invalid_value"),
        ({**LABEL, "input": []}, f"{P}.input", "invalid_value"),
        ({**LABEL, "input": [{"role": "judge", "content": "x"}]}, f"{P}.input[0].role", "invalid_value"),
        ({**LABEL, "input": [{"role": "user", "content": 5}]}, f"{P}.input[0].content", "invalid_value"),
        (
            {**LABEL, "input": [{"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "x"}]}]},
            f"{P}.input[0].content[1]",
            "invalid_value",
        ),
        (
            {**LABEL, "input": [{"role": "user", "content": {"type": "input_image", "image_url": "https://x/y.png"}}]},
            f"{P}.input[0].content",
            "invalid_value",
        ),
        ({**SCORE, "range": [1, 0]}, f"{P}.range", "invalid_value"),
        ({**SCORE, "range": [0, 1, 2]}, f"{P}.range", "invalid_value"),
        ({**SCORE, "sampling_params": {"temperature": 3}}, f"{P}.sampling_params.temperature", "invalid_value"),
        ({**SCORE, "model": ""}, f"{P}.model", "invalid_value"),
        ({**MULTI, "calculate_output": "(a + b) /"}, f"{P}.calculate_output", "invalid_value"),
        ({**MULTI, "calculate_output": "a + c"}, f"{P}.calculate_output", "invalid_value"),
        ({**MULTI, "calculate_output": "__import__('os')"}, f"{P}.calculate_output", "invalid_value"),
        ({**MULTI, "calculate_output": "a.real"}, f"{P}.calculate_output", "invalid_value"),
        ({**MULTI, "calculate_output": "a if b else 1"}, f"{P}.calculate_output", "invalid_value"),
        ({**MULTI, "calculate_output": "'a'"}, f"{P}.calculate_output", "invalid_value"),
        ({**MULTI, "calculate_output": "max(a, key=b)"}, f"{P}.calculate_output", "invalid_value"),
        ({**MULTI, "calculate_output": "a; b"}, f"{P}.calculate_output", "invalid_value"),
        ({**MULTI, "calculate_output": "-" * 4000 + "a"}, f"{P}.calculate_output", "invalid_value"),
        ({**MULTI, "calculate_output": "a" + " + a" * 1000}, f"{P}.calculate_output", "invalid_value"),
        ({**MULTI, "graders": {"a": {**CHECK, "operation": "x"}}}, f"{P}.graders.a.operation", "invalid_value"),
        ({**MULTI, "graders": [CHECK, {**SIMILAR, "input": 1}]}, f"{P}.graders[1].input", "invalid_value"),
        ({**MULTI, "graders": {"a": MULTI}}, f"{P}.graders.a.type", "invalid_value"),
        ({**MULTI, "graders": {"a": {"type": "python", "source": "x"}}}, f"{P}.graders.a.type", "unsupported_grader"),
        ({**MULTI, "graders": [CHECK, CHECK], "calculate_output": "c"}, f"{P}.graders", "invalid_value"),
        ({**MULTI, "graders": {}}, f"{P}.graders", "invalid_value"),
        ({**MULTI, "graders": 7}, f"{P}.graders", "invalid_value"),
        ("string_check", P, "invalid_value"),
    ],
)
def test_bad_graders_are_400s_naming_the_param(spec: Any, param: str, code: str) -> None:
    error = refused(spec)
    assert (error.param, error.code) == (param, code), error.message
    assert param in error.message or code == "unsupported_grader"


def test_python_graders_are_refused_because_ftgw_runs_no_user_code() -> None:
    error = refused({"type": "python", "name": "p", "source": "def grade(sample, item): return 1.0"})
    assert (error.param, error.code) == (f"{P}.type", "unsupported_grader")
    assert "does not run user code" in error.message


def test_fine_tuning_graders_need_no_pass_threshold() -> None:
    spec = {k: v for k, v in SIMILAR.items() if k != "pass_threshold"}
    assert parse_grader(spec, "grader", for_eval=False).pass_threshold is None  # type: ignore[union-attr]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "type", "name", "input", "reference", "operation", "evaluation_metric", "pass_threshold", "model", "labels",
        "passing_labels", "range", "sampling_params", "graders", "calculate_output", "role", "content", "text",
    ]
)  # fmt: skip
TYPES = st.sampled_from(["string_check", "text_similarity", "label_model", "score_model", "multi", "python", "x"])
GRADERS = st.recursive(
    st.fixed_dictionaries({"type": TYPES}, optional={"name": st.text(max_size=4)}).flatmap(
        lambda base: st.dictionaries(FIELDS, JSON, max_size=6).map(lambda extra: {**extra, **base})
    ),
    lambda inner: st.fixed_dictionaries(
        {
            "type": st.just("multi"),
            "name": st.text(max_size=4),
            "graders": st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
            "calculate_output": st.text(alphabet="ab+-*/^()., 0123456789maxlog", max_size=12),
        }
    ),
    max_leaves=4,
)


@settings(max_examples=300, deadline=None)
@given(spec=JSON | GRADERS, for_eval=st.booleans())
def test_any_json_parses_or_is_an_invalid_request(spec: Any, for_eval: bool) -> None:
    problem: InvalidRequest | None = None
    try:
        parse_grader(spec, P, for_eval=for_eval)
    except InvalidRequest as exc:
        problem = exc
    if problem is not None:
        assert problem.param is not None and problem.param.startswith(P)
