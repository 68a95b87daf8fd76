"""Issue codes for dataset problems, and the one exception for input that cannot be read at all.

Problems in the data (a bad line, a missing key) are *reported* with these codes and a line number; only input
that cannot be treated as a dataset at all raises :class:`DatasetError`.
"""

from __future__ import annotations

from enum import StrEnum


class IssueCode(StrEnum):
    """Machine-readable code of an error or warning about a dataset (stable: clients match on it)."""

    # Whole file
    EMPTY_FILE = "empty_file"
    TOO_FEW_EXAMPLES = "too_few_examples"
    MIXED_FORMATS = "mixed_formats"
    # One line, before it is an example
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    LINE_TOO_LONG = "line_too_long"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_FORMAT = "unknown_format"
    # Structure of an example
    UNRECOGNIZED_KEY = "unrecognized_key"
    WRONG_TYPE = "wrong_type"
    MISSING_MESSAGES = "missing_messages"
    MISSING_ROLE = "missing_role"
    UNKNOWN_ROLE = "unknown_role"
    MISSING_CONTENT = "missing_content"
    INVALID_WEIGHT = "invalid_weight"
    NO_ASSISTANT_MESSAGE = "no_assistant_message"
    MISSING_PROMPT = "missing_prompt"
    MISSING_COMPLETION = "missing_completion"
    EMPTY_COMPLETION = "empty_completion"
    MISSING_INPUT = "missing_input"
    MISSING_PREFERRED_OUTPUT = "missing_preferred_output"
    MISSING_NON_PREFERRED_OUTPUT = "missing_non_preferred_output"
    INVALID_OUTPUT = "invalid_output"
    TOO_MANY_TOKENS = "too_many_tokens"
    # Warnings: the line is used, but something was off
    BOM = "bom"
    CRLF = "crlf"
    BLANK_LINE = "blank_line"
    FORMULA_CELL = "formula_cell"
    IGNORED_COLUMN = "ignored_column"


class DatasetError(ValueError):
    """Input that cannot be analysed at all (unsupported type, unreadable container). Data problems never raise."""

    def __init__(self, message: str, *, line: int | None = None, code: str = "invalid_file") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.code = code
