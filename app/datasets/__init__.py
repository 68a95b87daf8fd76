"""Datasets: formats, validation, token statistics, suggestions, and prepare (fix, convert, split).

The same code serves the API and the ``ftgw prepare-data`` CLI. Everything here is synchronous and pure: it
takes a path, reads it once (streaming) and returns pydantic models; data problems are reported, never raised.
"""

from app.datasets.errors import DatasetError, IssueCode
from app.datasets.prepare import prepare_file, recommended_fixes
from app.datasets.report import analyse_file, summarize_validation, validate_file
from app.datasets.schemas import (
    DatasetReport,
    Fix,
    Format,
    Issue,
    PrepareResult,
    Suggestion,
    SuggestionCode,
    ValidationSummary,
)

__all__ = [
    "DatasetError",
    "DatasetReport",
    "Fix",
    "Format",
    "Issue",
    "IssueCode",
    "PrepareResult",
    "Suggestion",
    "SuggestionCode",
    "ValidationSummary",
    "analyse_file",
    "prepare_file",
    "recommended_fixes",
    "summarize_validation",
    "validate_file",
]
