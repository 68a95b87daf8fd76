"""The dataset report, validation summary and prepare result: JSON-ready models shared by API and CLI."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field

from app.datasets.errors import IssueCode
from app.kit.schemas import Schema


class Format(StrEnum):
    """A fine-tuning file's shape, detected from its examples."""

    CHAT = "chat"
    PROMPT_COMPLETION = "prompt_completion"
    PREFERENCE = "preference"


class Fix(StrEnum):
    """A change :func:`app.datasets.prepare.prepare_file` can make while writing the prepared file."""

    DROP_INVALID = "drop_invalid"
    DROP_EMPTY_COMPLETIONS = "drop_empty_completions"
    DROP_DUPLICATES = "drop_duplicates"
    DROP_LONG_EXAMPLES = "drop_long_examples"
    ADD_SEPARATOR = "add_separator"
    ADD_LEADING_WHITESPACE = "add_leading_whitespace"
    ADD_STOP_SEQUENCE = "add_stop_sequence"
    LOWERCASE = "lowercase"


class SuggestionCode(StrEnum):
    DUPLICATES = "duplicates"
    EMPTY_COMPLETIONS = "empty_completions"
    INVALID_EXAMPLES = "invalid_examples"
    MISSING_SEPARATOR = "missing_separator"
    INCONSISTENT_SEPARATOR = "inconsistent_separator"
    NO_LEADING_WHITESPACE = "no_leading_whitespace"
    MISSING_STOP_SEQUENCE = "missing_stop_sequence"
    INCONSISTENT_STOP_SEQUENCE = "inconsistent_stop_sequence"
    ALL_LOWERCASE = "all_lowercase"
    ALL_UPPERCASE = "all_uppercase"
    LONG_EXAMPLES = "long_examples"
    CLASSIFICATION = "classification"
    NOT_JSONL = "not_jsonl"


class Issue(Schema):
    line: int | None = Field(description="1-based line (CSV/XLSX: row; JSON array: element); null for the file.")
    code: IssueCode
    message: str


class IssueSummary(Schema):
    """Every issue counted by code; ``items`` holds the first ``max_issues`` of them, in line order."""

    total: int = 0
    by_code: dict[str, int] = Field(default_factory=dict)
    items: list[Issue] = Field(default_factory=list)


class TokenBin(Schema):
    """Examples whose count lies in ``[start, end]``."""

    start: int
    end: int
    count: int


class TokenStats(Schema):
    """Distribution of a per-example token count."""

    min: int
    mean: float
    p50: float
    p95: float
    max: int
    total: int
    histogram: list[TokenBin] = Field(
        default_factory=list, description="Examples per equal-width range of counts, min to max (at most 20)."
    )


class Suggestion(Schema):
    code: SuggestionCode
    message: str
    count: int = Field(description="How many examples it concerns.")
    lines: list[int] = Field(default_factory=list, description="The first lines concerned.")
    fix: Fix | None = Field(default=None, description="The prepare fix that addresses it, if any.")
    recommended: bool = Field(default=False, description="Whether prepare applies the fix by default.")
    value: str | None = Field(default=None, description="The separator or stop sequence the fix would add.")


class ClassStat(Schema):
    label: str
    count: int
    single_token: bool


class Classification(Schema):
    """Present when the targets look like labels: few distinct, short completions."""

    classes: list[ClassStat]
    imbalance: float = Field(description="Examples of the most common class per example of the rarest.")
    all_single_token: bool


class Hyperparameters(Schema):
    """What OpenAI's ``auto`` settings would choose, and the tokens a job would train on."""

    n_epochs: int
    billing_tokens_per_epoch: int
    estimated_trained_tokens: int
    max_tokens_per_example: int


class DatasetReport(Schema):
    """Everything :func:`app.datasets.analyse_file` finds in one pass over a file."""

    format: Format | None
    source_type: str = Field(description="jsonl, csv, tsv, xlsx or json")
    model: str | None
    tokenizer: str
    context_limit: int | None
    n_lines: int = Field(description="Lines (rows) read, blank ones included.")
    n_examples: int = Field(description="Non-blank lines (rows): every candidate example.")
    n_valid: int = Field(description="Examples without any error.")
    n_duplicates: int
    errors: IssueSummary
    warnings: IssueSummary
    tokens: TokenStats | None = Field(description="Billing tokens per example, counted as the cookbook does.")
    target_tokens: TokenStats | None = Field(description="Assistant (chat) or completion tokens per example.")
    n_over_context: int = Field(description="Examples longer than the model's (or the default) example limit.")
    hyperparameters: Hyperparameters | None
    classification: Classification | None
    suggestions: list[Suggestion]
    ok: bool = Field(description="No errors: the file can be used for fine-tuning as it is.")


class ValidationSummary(Schema):
    """The short answer the upload pipeline needs."""

    ok: bool
    format: Format | None
    n_examples: int
    n_valid: int
    n_errors: int
    errors: list[Issue]


class PrepareResult(Schema):
    """What :func:`app.datasets.prepare_file` wrote and which fixes changed how many examples."""

    outputs: list[Path]
    train_path: Path | None = None
    valid_path: Path | None = None
    n_written: int
    n_train: int
    n_valid: int
    applied: dict[Fix, int] = Field(description="Examples changed or dropped by each applied fix.")
    fixes: list[Fix]
    warnings: list[Issue] = Field(default_factory=list)
