"""One streaming pass over a dataset file that produces the whole :class:`DatasetReport`.

Memory stays bounded whatever the file size: lines are read one at a time, token counts and duplicate digests
are kept in flat arrays (16 bytes per example in all), issue lists are capped.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from pathlib import Path

import numpy as np

from app.datasets.checks import MAX_LINES, Checks, LineCounter
from app.datasets.errors import DatasetError, IssueCode
from app.datasets.formats import Example, inspect_example
from app.datasets.hyperparams import DEFAULT_MAX_TOKENS_PER_EXAMPLE, estimate
from app.datasets.reader import SourceInfo, SourceType, detect_source_type, iter_records
from app.datasets.schemas import (
    DatasetReport,
    Fix,
    Format,
    Issue,
    IssueSummary,
    Suggestion,
    SuggestionCode,
    ValidationSummary,
)
from app.datasets.stats import TokenTally, summarize
from app.tokenizers import Tokenizer, TokenizerUnavailable, UnknownModel, context_limit, tokenizer_for_model

MIN_EXAMPLES = 10
# Errors that prepare's DROP_INVALID does not cover: each has its own fix.
_OWN_FIX = frozenset({IssueCode.EMPTY_COMPLETION, IssueCode.TOO_MANY_TOKENS})


class IssueLog:
    """Counts every issue by code, keeps the first ``cap`` (and always the first of each code)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: Counter[IssueCode] = Counter()
        self.items: list[tuple[int | None, IssueCode, str]] = []

    def add(self, line: int | None, code: IssueCode, message: str) -> None:
        self.counts[code] += 1
        if len(self.items) < self.cap or self.counts[code] == 1:
            self.items.append((line, code, message))

    def summary(self) -> IssueSummary:
        items = sorted(self.items, key=lambda item: (item[0] or 0, item[1]))
        return IssueSummary(
            total=sum(self.counts.values()),
            by_code={str(code): n for code, n in sorted(self.counts.items())},
            items=[Issue(line=line, code=code, message=message) for line, code, message in items],
        )


def resolve_tokenizer(model: str | None) -> Tokenizer:
    """The model's tokenizer; an unknown model is the caller's mistake, reported as :class:`DatasetError`."""
    try:
        return tokenizer_for_model(model)
    except UnknownModel as exc:
        raise DatasetError(str(exc), code="unknown_model") from exc
    except TokenizerUnavailable as exc:
        raise DatasetError(str(exc), code="tokenizer_unavailable") from exc


class _Analysis:
    def __init__(self, *, model: str | None, max_issues: int, tokenizer: Tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_limit = context_limit(model) if model else None
        self.limit = self.model_limit or DEFAULT_MAX_TOKENS_PER_EXAMPLE
        self.errors = IssueLog(max_issues)
        self.warnings = IssueLog(max_issues)
        self.checks = Checks()
        self.format: Format | None = None
        self.n_examples = 0
        self.n_valid = 0
        self.digests = array("Q")
        self.digest_lines = array("I")
        self.valid = bytearray()  # per counted example, in count order
        self.over = LineCounter()
        self.empty = LineCounter()
        self.invalid = LineCounter()
        self.tally = TokenTally(tokenizer, limit=self.limit, on_over=self._on_over)

    def _on_over(self, index: int, line: int, total: int) -> None:
        self.over.add(line)
        if self.model_limit is not None:
            self.errors.add(
                line,
                IssueCode.TOO_MANY_TOKENS,
                f"{total} tokens, over the {self.model_limit} one example of {self.model} may have",
            )
            if self.valid[index]:
                self.valid[index] = 0
                self.n_valid -= 1

    def run(self, path: Path, source_type: SourceType) -> SourceInfo:
        info = SourceInfo(source_type)
        errors = self.errors
        blake2b = hashlib.blake2b
        digests = self.digests
        try:
            for record in iter_records(path, source_type, info):
                line = record.line
                if record.warnings:
                    for code, message in record.warnings:
                        self.warnings.add(line, code, message)
                if record.blank:
                    self.warnings.add(line, IssueCode.BLANK_LINE, "blank line (skipped)")
                    continue
                self.n_examples += 1
                if record.error is not None:
                    errors.add(line, *record.error)
                    self.invalid.add(line)
                    continue
                value = record.value
                if record.key is not None and isinstance(value, dict):
                    # 8-byte digests: a false duplicate needs ~4e9 examples; halves the memory of 16.
                    digests.frombytes(blake2b(record.key, digest_size=8).digest())
                    self.digest_lines.append(line)
                self._example(line, inspect_example(value, self.format))
            self.tally.finish()
        except BaseException:
            self.tally.close()
            raise
        return info

    def _example(self, line: int, ex: Example) -> None:
        if self.format is None and ex.format is not None:
            self.format = ex.format
        valid = not ex.issues
        if not valid:
            own_fix_only = True
            for code, message in ex.issues:
                self.errors.add(line, code, message)
                if code not in _OWN_FIX:
                    own_fix_only = False
            if own_fix_only:
                self.empty.add(line)
            else:
                self.invalid.add(line)
        if ex.countable:
            self.valid.append(valid)
            self.tally.add(line, ex)
        if valid:
            self.n_valid += 1
            self.checks.observe(line, ex)

    def duplicates(self) -> LineCounter:
        """Later copies of an earlier example (the first stays), in line order."""
        found = LineCounter()
        if len(self.digests) < 2:
            return found
        digests = np.frombuffer(self.digests, dtype=np.uint64)
        order = np.argsort(digests, kind="stable")
        ordered = digests[order]
        repeat = np.zeros(len(ordered), dtype=bool)
        repeat[1:] = ordered[1:] == ordered[:-1]
        lines = np.frombuffer(self.digest_lines, dtype=np.uint32)[order[repeat]]
        lines.sort()
        found.count = len(lines)
        found.lines = [int(x) for x in lines[:MAX_LINES]]
        return found

    def report(self, info: SourceInfo) -> DatasetReport:
        for line, code, message in info.warnings:
            self.warnings.add(line, code, message)
        if self.n_examples == 0:
            self.errors.add(None, IssueCode.EMPTY_FILE, "the file holds no examples")
        elif self.n_valid < MIN_EXAMPLES:
            self.errors.add(
                None,
                IssueCode.TOO_FEW_EXAMPLES,
                f"{self.n_valid} valid examples; fine-tuning needs at least {MIN_EXAMPLES}",
            )
        totals = np.frombuffer(self.tally.totals, dtype=np.uint32)
        valid_mask = np.frombuffer(bytes(self.valid), dtype=np.bool_)
        duplicates = self.duplicates()
        classification = self.checks.classification(self.tokenizer)
        suggestions = self._suggestions(info, duplicates)
        suggestions += self.checks.suggestions(self.format, classification)
        return DatasetReport(
            format=self.format,
            source_type=info.type,
            model=self.model,
            tokenizer=self.tokenizer.name,
            context_limit=self.model_limit,
            n_lines=info.n_lines,
            n_examples=self.n_examples,
            n_valid=self.n_valid,
            n_duplicates=duplicates.count,
            errors=self.errors.summary(),
            warnings=self.warnings.summary(),
            tokens=summarize(self.tally.totals),
            target_tokens=summarize(self.tally.targets),
            n_over_context=self.over.count,
            hyperparameters=estimate(totals[valid_mask], max_tokens_per_example=self.limit) if self.n_valid else None,
            classification=classification,
            suggestions=suggestions,
            ok=not self.errors.counts,
        )

    def _suggestions(self, info: SourceInfo, duplicates: LineCounter) -> list[Suggestion]:
        out: list[Suggestion] = []
        if info.type != "jsonl":
            out.append(
                Suggestion(
                    code=SuggestionCode.NOT_JSONL,
                    message=f"the file is {info.type.upper()}; fine-tuning takes JSONL, prepare converts it",
                    count=self.n_examples,
                    recommended=True,
                )
            )
        if self.invalid.count:
            out.append(
                Suggestion(
                    code=SuggestionCode.INVALID_EXAMPLES,
                    message=f"{self.invalid.count} examples have errors; drop them",
                    count=self.invalid.count,
                    lines=self.invalid.lines,
                    fix=Fix.DROP_INVALID,
                    recommended=True,
                )
            )
        if self.empty.count:
            out.append(
                Suggestion(
                    code=SuggestionCode.EMPTY_COMPLETIONS,
                    message=f"{self.empty.count} examples have an empty completion; drop them",
                    count=self.empty.count,
                    lines=self.empty.lines,
                    fix=Fix.DROP_EMPTY_COMPLETIONS,
                    recommended=True,
                )
            )
        if duplicates.count:
            out.append(
                Suggestion(
                    code=SuggestionCode.DUPLICATES,
                    message=f"{duplicates.count} examples repeat an earlier one; drop the copies",
                    count=duplicates.count,
                    lines=duplicates.lines,
                    fix=Fix.DROP_DUPLICATES,
                    recommended=True,
                )
            )
        if self.over.count:
            out.append(
                Suggestion(
                    code=SuggestionCode.LONG_EXAMPLES,
                    message=f"{self.over.count} examples are longer than {self.limit} tokens and would be "
                    "truncated or refused; drop them",
                    count=self.over.count,
                    lines=self.over.lines,
                    fix=Fix.DROP_LONG_EXAMPLES,
                    recommended=True,
                )
            )
        return out


def analyse_file(
    path: Path, *, model: str | None = None, max_issues: int = 50, name: str | None = None
) -> DatasetReport:
    """Validate and report on a dataset file in one streaming pass (synchronous, CPU-bound).

    ``model`` picks the tokenizer and the per-example limit (None: ``cl100k_base``, no model limit).
    The format is detected from the content; ``name`` (the name it was uploaded as: stored blobs have none) is
    the hint for content that does not say.
    Data problems are in the report; :class:`DatasetError` only for a file that cannot be read as a dataset.
    """
    tokenizer = resolve_tokenizer(model)
    kind = detect_source_type(path, name)
    analysis = _Analysis(model=model, max_issues=max_issues, tokenizer=tokenizer)
    try:
        info = analysis.run(path, kind)
    except OSError as exc:
        raise DatasetError(f"cannot read {path.name}: {exc.strerror or exc}", code="unreadable_file") from exc
    return analysis.report(info)


def validate_file(
    path: Path, model: str | None = None, *, max_errors: int = 20, name: str | None = None
) -> ValidationSummary:
    """The upload pipeline's check: is the file usable for fine-tuning, and if not, its first errors."""
    report = analyse_file(path, model=model, max_issues=max_errors, name=name)
    return summarize_validation(report)


def summarize_validation(report: DatasetReport) -> ValidationSummary:
    """The short form of a report."""
    return ValidationSummary(
        ok=report.ok,
        format=report.format,
        n_examples=report.n_examples,
        n_valid=report.n_valid,
        n_errors=report.errors.total,
        errors=report.errors.items,
    )
