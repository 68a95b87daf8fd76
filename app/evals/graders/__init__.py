"""Graders of ftgw's OpenAI-compatible Evals API: validate a grader, then grade a sample with it.

The face of the package; the work is in its private modules. ``parse_grader`` turns an eval's testing criterion
(or the graders API's ``grader``) into a typed :data:`Grader` or a 400 naming the field; ``references`` lists the
template paths it reads (to check them against the eval's item schema); ``grade`` grades one sample of one item,
asking a :class:`Judge` for the model graders.
"""

from app.evals.graders._grade import grade, references
from app.evals.graders._models import (
    AnyGrader,
    Grader,
    LabelModelGrader,
    MultiGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
)
from app.evals.graders._parse import UNSUPPORTED_CODE, parse_grader
from app.evals.graders._types import GradeResult, Judge, JudgeReply, Sample, TokenUsage

__all__ = [
    "UNSUPPORTED_CODE",
    "AnyGrader",
    "GradeResult",
    "Grader",
    "Judge",
    "JudgeReply",
    "LabelModelGrader",
    "MultiGrader",
    "Sample",
    "ScoreModelGrader",
    "StringCheckGrader",
    "TextSimilarityGrader",
    "TokenUsage",
    "grade",
    "parse_grader",
    "references",
]
