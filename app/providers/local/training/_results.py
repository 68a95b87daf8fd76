"""``results.csv``: one row per optimizer step, in OpenAI's fine-tuning results format.

Columns: ``step, elapsed_tokens, elapsed_examples, training_loss, training_sequence_accuracy,
training_token_accuracy``; then ``validation_loss, validation_sequence_accuracy, validation_token_accuracy`` when
the run has a validation file (filled on the steps validation ran, empty elsewhere); then the classification
columns when they were requested (filled on epoch ends). Binary classification uses OpenAI's legacy names,
``classification/f1.0`` included (F-beta with beta 1).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

BASE_COLUMNS = [
    "step",
    "elapsed_tokens",
    "elapsed_examples",
    "training_loss",
    "training_sequence_accuracy",
    "training_token_accuracy",
]
VALIDATION_COLUMNS = ["validation_loss", "validation_sequence_accuracy", "validation_token_accuracy"]
BINARY_COLUMNS = [
    "classification/accuracy",
    "classification/precision",
    "classification/recall",
    "classification/auroc",
    "classification/auprc",
    "classification/f1.0",
]
MULTICLASS_COLUMNS = ["classification/accuracy", "classification/weighted_f1_score"]

Row = Mapping[str, float | int | None]


def columns(*, validation: bool, classification: str | None) -> list[str]:
    """The header for a run; ``classification`` is ``"binary"``, ``"multiclass"`` or None."""
    cols = list(BASE_COLUMNS)
    if validation:
        cols += VALIDATION_COLUMNS
    if classification == "binary":
        cols += BINARY_COLUMNS
    elif classification == "multiclass":
        cols += MULTICLASS_COLUMNS
    return cols


def _cell(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


class ResultsWriter:
    """Appends rows; opening it on a resumed run keeps only the rows up to the step resumed from."""

    def __init__(self, path: Path, header: list[str], *, keep_through_step: int) -> None:
        self.path = path
        self.header = header
        kept: list[list[str]] = []
        if keep_through_step > 0 and path.is_file():
            with path.open(newline="") as handle:
                reader = csv.reader(handle)
                if next(reader, None) == header:
                    kept = [row for row in reader if row and row[0].isdigit() and int(row[0]) <= keep_through_step]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(kept)
        os.replace(tmp, path)

    def append(self, row: Row) -> None:
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([_cell(row.get(col)) for col in self.header])


def read_results(path: Path) -> list[dict[str, str]]:
    """The rows of a results.csv as dicts (column -> cell text)."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
