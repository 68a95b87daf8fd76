"""Grading one sample with one grader, as OpenAI's graders guide defines each type.

A grader that cannot grade (a template variable with no value, a judge that failed or answered nonsense, a formula
with no value) gives an errored result (score 0, not passed, the reason and OpenAI's error flag), never an
exception: one bad item must not sink an eval run.

``passed``: string check and label model graders pass on a score of 1 (the check held, the label is a passing one);
the others pass at or above their ``pass_threshold``. Without one (the fine-tuning graders have none), a score
passes only at the top of its range: 1, or a score model's ``range`` high.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from app.errors import GatewayError
from app.evals.graders._formula import FormulaValueError
from app.evals.graders._models import (
    AnyGrader,
    GraderMessage,
    LabelModelGrader,
    MultiGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
)
from app.evals.graders._similarity import similarity
from app.evals.graders._types import GradeResult, Judge, JudgeReply, Sample, TokenUsage, failed, merge_usage
from app.evals.graders._wordnet import WordNetMissing
from app.evals.templates import TemplateError, render
from app.evals.templates import references as template_references

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def references(grader: AnyGrader) -> set[str]:
    """Every template path the grader (and its sub-graders) reads."""
    if isinstance(grader, StringCheckGrader | TextSimilarityGrader):
        return template_references(grader.input) | template_references(grader.reference)
    if isinstance(grader, LabelModelGrader | ScoreModelGrader):
        return set().union(*(template_references(m.template()) for m in grader.input))
    return set().union(*(references(g) for g in grader.named().values()))


async def grade(grader: AnyGrader, item: Mapping[str, Any], sample: Sample, judge: Judge) -> GradeResult:
    """``grader``'s result for ``sample`` of ``item``."""
    namespaces = {"item": item, "sample": sample.namespace()}
    if isinstance(grader, StringCheckGrader):
        return _string_check(grader, namespaces)
    if isinstance(grader, TextSimilarityGrader):
        return await _text_similarity(grader, namespaces)
    if isinstance(grader, LabelModelGrader):
        return await _label_model(grader, namespaces, judge)
    if isinstance(grader, ScoreModelGrader):
        return await _score_model(grader, namespaces, judge)
    return await _multi(grader, item, sample, judge)


def _passes(score: float, threshold: float | None, top: float = 1.0) -> bool:
    return score >= (threshold if threshold is not None else top)


def _string_check(grader: StringCheckGrader, namespaces: Mapping[str, Any]) -> GradeResult:
    try:
        text, reference = render(grader.input, namespaces), render(grader.reference, namespaces)
    except TemplateError as exc:
        return failed(grader.name, grader.type, "invalid_variable_error", str(exc))
    match grader.operation:
        case "eq":
            held = text == reference
        case "ne":
            held = text != reference
        case "like":
            held = reference in text
        case "ilike":
            held = reference.casefold() in text.casefold()
    return GradeResult(grader.name, grader.type, 1.0 if held else 0.0, held)


async def _text_similarity(grader: TextSimilarityGrader, namespaces: Mapping[str, Any]) -> GradeResult:
    try:
        text, reference = render(grader.input, namespaces), render(grader.reference, namespaces)
    except TemplateError as exc:
        return failed(grader.name, grader.type, "invalid_variable_error", str(exc))
    try:
        # A thread: METEOR's first call loads WordNet (seconds), and long texts take a while on any metric.
        score = await asyncio.to_thread(similarity, grader.evaluation_metric, text, reference)
    except WordNetMissing as exc:
        return failed(grader.name, grader.type, "other_error", str(exc))
    return GradeResult(grader.name, grader.type, score, _passes(score, grader.pass_threshold))


def rendered(messages: list[GraderMessage], namespaces: Mapping[str, Any]) -> list[dict[str, str]]:
    """A model grader's prompt for one item (``developer`` is said ``system``, as chat templates know it)."""
    return [
        {"role": "system" if m.role == "developer" else m.role, "content": render(m.template(), namespaces)}
        for m in messages
    ]


def _judge_sample(messages: list[dict[str, str]], reply: JudgeReply, **sampling: Any) -> dict[str, Any]:
    """The judge's exchange, as OpenAI reports a model grader's ``sample``."""
    return {
        "input": messages,
        "output": [{"role": "assistant", "content": reply.text}],
        "finish_reason": "stop",
        "model": reply.model,
        "usage": TokenUsage(reply.prompt_tokens, reply.completion_tokens).as_dict(),
        "error": None,
        **sampling,
    }


def _usage(reply: JudgeReply) -> dict[str, TokenUsage]:
    return {reply.model: TokenUsage(reply.prompt_tokens, reply.completion_tokens)}


async def _label_model(grader: LabelModelGrader, namespaces: Mapping[str, Any], judge: Judge) -> GradeResult:
    try:
        messages = rendered(grader.input, namespaces)
    except TemplateError as exc:
        return failed(grader.name, grader.type, "invalid_variable_error", str(exc))
    try:
        reply = await judge.choose(grader.model, messages, grader.labels)
    except GatewayError as exc:
        return failed(grader.name, grader.type, "model_grader_server_error", exc.message)
    sample, usage = _judge_sample(messages, reply), _usage(reply)
    if reply.refused:
        return failed(grader.name, grader.type, "model_grader_refusal_error", reply.text, sample=sample, usage=usage)
    if reply.text not in grader.labels:
        error = f"The judge answered {reply.text!r}, which is none of the labels {grader.labels}."
        return failed(grader.name, grader.type, "model_grader_parse_error", error, sample=sample, usage=usage)
    passed = reply.text in grader.passing_labels
    return GradeResult(
        grader.name, grader.type, 1.0 if passed else 0.0, passed, sample, {"label": reply.text}, usage=usage
    )


def score_instruction(low: float, high: float) -> str:
    return (
        f"Grade the above with a score from {low:g} to {high:g}. Reply with the score alone, "
        f'as JSON: {{"result": <score>}}.'
    )


def parse_score(text: str) -> float | None:
    """The judge's score: ``{"result": x}``, a bare JSON number, else the first number in the text."""
    value: Any = None
    with contextlib.suppress(ValueError):
        value = json.loads(text.strip())
    if isinstance(value, dict):
        value = value.get("result")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    found = _NUMBER.search(text)
    if found is None:
        return None
    number = float(found.group())
    return number if math.isfinite(number) else None


async def _score_model(grader: ScoreModelGrader, namespaces: Mapping[str, Any], judge: Judge) -> GradeResult:
    low, high = grader.bounds()
    try:
        messages = rendered(grader.input, namespaces)
    except TemplateError as exc:
        return failed(grader.name, grader.type, "invalid_variable_error", str(exc))
    prompt = [*messages, {"role": "user", "content": score_instruction(low, high)}]
    sampling = grader.sampling_params.model_dump(exclude_none=True) if grader.sampling_params else {}
    try:
        reply = await judge.chat(grader.model, prompt, sampling=sampling)
    except GatewayError as exc:
        return failed(grader.name, grader.type, "model_grader_server_error", exc.message)
    sample, usage = _judge_sample(prompt, reply, **sampling), _usage(reply)
    if reply.refused:
        return failed(grader.name, grader.type, "model_grader_refusal_error", reply.text, sample=sample, usage=usage)
    score = parse_score(reply.text)
    if score is None or not low <= score <= high:
        said = "no number" if score is None else f"{score:g}, outside [{low:g}, {high:g}]"
        error = f"The judge's answer holds {said}: {reply.text[:200]!r}"
        return failed(grader.name, grader.type, "model_grader_parse_error", error, sample=sample, usage=usage)
    return GradeResult(
        grader.name, grader.type, score, _passes(score, grader.pass_threshold, high), sample, usage=usage
    )


async def _multi(grader: MultiGrader, item: Mapping[str, Any], sample: Sample, judge: Judge) -> GradeResult:
    named = grader.named()
    parts = await asyncio.gather(*(grade(g, item, sample, judge) for g in named.values()))
    scores = {name: part.score for name, part in zip(named, parts, strict=True)}
    usage = merge_usage(*(part.usage for part in parts))
    broken = [(name, part) for name, part in zip(named, parts, strict=True) if part.errored]
    if broken:
        name, part = broken[0]
        error = f"The grader '{name}' could not grade: {part.error}"
        flags = frozenset().union(*(p.errors for _, p in broken))
        return GradeResult(
            grader.name, grader.type, 0.0, False, sub_scores=scores, usage=usage, errors=flags, error=error
        )
    try:
        score = grader.formula().evaluate(scores)
    except FormulaValueError as exc:
        return failed(grader.name, grader.type, "other_error", str(exc), sub_scores=scores, usage=usage)
    return GradeResult(
        grader.name, grader.type, score, _passes(score, grader.pass_threshold), sub_scores=scores, usage=usage
    )
