"""Grading without a model: string checks, similarity thresholds, multi formulas, errored results, result shape."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from app.evals.graders import GradeResult, JudgeReply, Sample, grade, parse_grader, references
from app.evals.graders._grade import parse_score
from tests.openai_schema import assert_matches


class NoJudge:
    """These graders never ask a model: any call is a failure of the test."""

    async def chat(self, model: str, messages: list[dict[str, str]], *, sampling: Mapping[str, Any]) -> JudgeReply:
        raise AssertionError("no model may be asked")

    async def choose(self, model: str, messages: list[dict[str, str]], labels: Sequence[str]) -> JudgeReply:
        raise AssertionError("no model may be asked")


async def run(spec: dict[str, Any], output: str, item: dict[str, Any] | None = None) -> GradeResult:
    grader = parse_grader(spec, "testing_criteria[0]", for_eval=False)
    result = await grade(grader, item or {}, Sample.of(output), NoJudge())
    assert_matches(result.as_dict(), "EvalRunOutputItemResult")
    return result


def check(operation: str, reference: str = "{{item.label}}") -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": "check",
        "input": "{{sample.output_text}}",
        "reference": reference,
        "operation": operation,
    }


@pytest.mark.parametrize(
    ("operation", "output", "label", "expected"),
    [
        ("eq", "positive", "positive", 1.0),
        ("eq", "Positive", "positive", 0.0),  # case-sensitive
        ("eq", "positive ", "positive", 0.0),  # nothing is stripped
        ("ne", "negative", "positive", 1.0),
        ("ne", "positive", "positive", 0.0),
        ("like", "it is positive.", "positive", 1.0),  # substring
        ("like", "it is Positive.", "positive", 0.0),  # case-sensitive
        ("ilike", "it is POSITIVE.", "positive", 1.0),
        ("ilike", "it is negative.", "positive", 0.0),
        ("ilike", "DIE STRASSE", "straße", 1.0),  # Unicode case folding: ß folds to ss
        ("ilike", "ΣΊΣΥΦΟΣ", "σίσυφος", 1.0),  # final sigma folds like sigma
        ("ilike", "ǅemal", "ǆ", 1.0),  # title-case digraph
    ],
)
async def test_string_check_operations(operation: str, output: str, label: str, expected: float) -> None:
    result = await run(check(operation), output, {"label": label})
    assert (result.score, result.passed) == (expected, expected == 1.0)
    assert result.sample is None and not result.errored


async def test_a_missing_template_variable_is_an_errored_result_not_an_exception() -> None:
    result = await run(check("eq", "{{item.absent}}"), "x", {"label": "x"})
    assert (result.score, result.passed, result.errors) == (0.0, False, frozenset({"invalid_variable_error"}))
    assert result.error is not None and "item.absent" in result.error
    assert result.as_dict()["metadata"]["error"] == result.error


async def test_sample_output_json_is_reachable_when_the_answer_is_json() -> None:
    spec = check("eq", "{{item.want}}") | {"input": "{{sample.output_json.answer}}"}
    assert (await run(spec, '{"answer": "42"}', {"want": "42"})).score == 1.0
    assert (await run(spec, "not json", {"want": "42"})).errors == {"invalid_variable_error"}


def similar(threshold: float | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "text_similarity",
        "name": "similar",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "evaluation_metric": "fuzzy_match",
    }
    return spec if threshold is None else spec | {"pass_threshold": threshold}


async def test_text_similarity_passes_at_or_above_its_threshold() -> None:
    item = {"reference": "sitting"}
    assert (await run(similar(8 / 13), "kitten", item)).passed  # equal to the threshold passes
    failing = await run(similar(0.62), "kitten", item)
    assert failing.score == pytest.approx(8 / 13) and not failing.passed
    # Without a threshold (a fine-tuning grader), only the top score passes.
    assert not (await run(similar(None), "kitten", item)).passed
    assert (await run(similar(None), "sitting", item)).passed


def multi(formula: str) -> dict[str, Any]:
    return {
        "type": "multi",
        "name": "combined",
        "graders": {
            "exact": check("eq", "sitting"),  # 0 for "kitten"
            "fuzzy": similar(None) | {"reference": "sitting"},  # 8/13 for "kitten"
            "near": check("ilike", "KITT"),  # 1 for "kitten"
        },
        "calculate_output": formula,
    }


F = 8 / 13  # fuzzy_match("kitten", "sitting")


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("0.5 * near + 0.5 * fuzzy", 0.5 + 0.5 * F),
        ("exact + fuzzy + near", F + 1),
        ("(near + fuzzy) / 2", (1 + F) / 2),
        ("near - fuzzy", 1 - F),
        ("fuzzy ^ 2 + 1", F**2 + 1),  # ^ is the power and binds before +
        ("-fuzzy ^ 2", -(F**2)),
        ("2 ^ 3 ^ 2", 2**9),  # right-associative, as in mathematics
        ("max(exact, fuzzy, near) - min(exact, fuzzy)", 1.0),
        ("abs(exact - fuzzy)", F),
        ("floor(fuzzy * 10) / 10", 0.6),
        ("ceil(fuzzy)", 1.0),
        ("sqrt(fuzzy)", math.sqrt(F)),
        ("exp(log(fuzzy))", F),
        ("log(near)", 0.0),
    ],
)
async def test_multi_combines_scores_by_name(formula: str, expected: float) -> None:
    result = await run(multi(formula), "kitten")
    assert result.score == pytest.approx(expected)
    assert result.sub_scores == pytest.approx({"exact": 0.0, "fuzzy": F, "near": 1.0})
    assert not result.errored


async def test_multi_graders_as_a_list_or_one_grader_are_named_by_their_name() -> None:
    listed = multi("check + similar") | {"graders": [check("ilike", "KITT"), similar(None) | {"reference": "sitting"}]}
    assert (await run(listed, "kitten")).score == pytest.approx(1 + F)
    single = multi("check * 3") | {"graders": check("ilike", "KITT")}
    assert (await run(single, "kitten")).score == 3.0


@pytest.mark.parametrize("formula", ["near / exact", "log(exact)", "sqrt(exact - 1)", "exp(1000 * near)"])
async def test_a_formula_without_a_value_for_these_scores_is_an_errored_result(formula: str) -> None:
    result = await run(multi(formula), "kitten")
    assert (result.score, result.passed, result.errors) == (0.0, False, frozenset({"other_error"}))
    assert result.sub_scores["near"] == 1.0


async def test_a_sub_grader_that_cannot_grade_fails_the_multi_grader() -> None:
    spec = multi("near + exact") | {"graders": {"near": check("ilike", "k"), "exact": check("eq", "{{item.nope}}")}}
    result = await run(spec, "kitten")
    assert result.errors == {"invalid_variable_error"} and result.score == 0.0
    assert result.error is not None and "'exact'" in result.error


def test_references_collects_every_template_path() -> None:
    label = {
        "type": "label_model",
        "name": "judge",
        "model": "m",
        "input": [
            {"role": "system", "content": "Classify {{item.topic}}"},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "{{ sample.output_text }}"}],
            },
        ],
        "labels": ["a", "b"],
        "passing_labels": ["a"],
    }
    assert references(parse_grader(label, "g")) == {"item.topic", "sample.output_text"}
    combined = multi("check + similar") | {"graders": [check("eq"), similar(None)]}
    assert references(parse_grader(combined, "g")) == {"sample.output_text", "item.label", "item.reference"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"result": 0.75}', 0.75),
        ("0.5", 0.5),
        ("  1 ", 1.0),
        ("The score is 0.8 out of 1.", 0.8),
        ("Score: -2.5e-1", -0.25),
        ('{"result": "x", "steps": []} 0.3', 0.3),
        ("no number here", None),
        ('{"result": true}', None),
        ("NaN", None),
    ],
)
def test_parse_score_reads_json_or_the_first_number(text: str, expected: float | None) -> None:
    assert parse_score(text) == expected


def test_sample_parses_json_answers_only() -> None:
    assert Sample.of('{"a": [1, 2]}').output_json == {"a": [1, 2]}
    assert Sample.of("plain").output_json is None
    assert Sample.of("NaN").output_json is None  # JSON has no NaN
    assert "output_json" not in Sample.of("plain").namespace()
