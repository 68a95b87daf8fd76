"""Prepare: write a fixed copy of a dataset as JSONL, optionally split into train and validation files.

The source is never touched. Outputs are written to temp files in the output folder and moved into place with
``os.replace`` only once complete, so a failure leaves no partial file behind. The split is seeded and, for
classification data, stratified by class.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

from app.datasets.checks import SEPARATORS, STOP_SEQUENCES
from app.datasets.errors import DatasetError, IssueCode
from app.datasets.formats import Example, inspect_example
from app.datasets.reader import NOTHING, SourceInfo, SourceType, detect_source_type, iter_records
from app.datasets.report import MIN_EXAMPLES, analyse_file, resolve_tokenizer
from app.datasets.schemas import DatasetReport, Fix, Format, Issue, PrepareResult
from app.datasets.stats import count_example
from app.tokenizers import Tokenizer

MAX_WARNINGS = 50
_DROPS = (Fix.DROP_INVALID, Fix.DROP_EMPTY_COMPLETIONS, Fix.DROP_DUPLICATES, Fix.DROP_LONG_EXAMPLES)
_OWN_FIX_CODES = frozenset({IssueCode.EMPTY_COMPLETION, IssueCode.TOO_MANY_TOKENS})


def recommended_fixes(report: DatasetReport) -> set[Fix]:
    """The fixes the report's suggestions recommend (what ``fixes=None`` applies)."""
    return {s.fix for s in report.suggestions if s.fix is not None and s.recommended}


def _suggested_value(report: DatasetReport, fix: Fix, default: str) -> str:
    for suggestion in report.suggestions:
        if suggestion.fix is fix and suggestion.value is not None:
            return suggestion.value
    return default


class _Fixer:
    """Applies the chosen fixes to one example at a time and counts what each changed."""

    def __init__(self, report: DatasetReport, fixes: set[Fix], tokenizer: Tokenizer | None) -> None:
        self.report = report
        self.fixes = fixes
        self.tokenizer = tokenizer
        self.limit = report.hyperparameters.max_tokens_per_example if report.hyperparameters else None
        self.applied: dict[Fix, int] = dict.fromkeys(sorted(fixes), 0)
        self.separator = _suggested_value(report, Fix.ADD_SEPARATOR, SEPARATORS[0])
        self.stop = _suggested_value(report, Fix.ADD_STOP_SEQUENCE, STOP_SEQUENCES[0])
        self.seen: set[bytes] = set()

    def drop(self, key: bytes | None, ex: Example) -> Fix | None:
        """The fix that removes this example, if any."""
        codes = {code for code, _ in ex.issues}
        fixes = self.fixes
        if IssueCode.EMPTY_COMPLETION in codes and Fix.DROP_EMPTY_COMPLETIONS in fixes:
            return Fix.DROP_EMPTY_COMPLETIONS
        if codes - _OWN_FIX_CODES and Fix.DROP_INVALID in fixes:
            return Fix.DROP_INVALID
        if Fix.DROP_DUPLICATES in fixes and key is not None:
            digest = hashlib.blake2b(key, digest_size=8).digest()
            if digest in self.seen:
                return Fix.DROP_DUPLICATES
            self.seen.add(digest)
        if (
            Fix.DROP_LONG_EXAMPLES in fixes
            and self.tokenizer is not None
            and self.limit is not None
            and ex.countable
            and count_example(self.tokenizer, ex)[0] > self.limit
        ):
            return Fix.DROP_LONG_EXAMPLES
        return None

    def change(self, value: dict[str, object], fmt: Format | None) -> None:
        """Apply the editing fixes to ``value`` in place."""
        fixes = self.fixes
        prompt, completion = value.get("prompt"), value.get("completion")
        if fmt is Format.PROMPT_COMPLETION and isinstance(prompt, str) and isinstance(completion, str):
            if Fix.ADD_SEPARATOR in fixes and not prompt.endswith(self.separator):
                prompt += self.separator
                self.applied[Fix.ADD_SEPARATOR] += 1
            if Fix.ADD_LEADING_WHITESPACE in fixes and completion and not completion[0].isspace():
                completion = " " + completion
                self.applied[Fix.ADD_LEADING_WHITESPACE] += 1
            if Fix.ADD_STOP_SEQUENCE in fixes and not completion.endswith(self.stop):
                completion += self.stop
                self.applied[Fix.ADD_STOP_SEQUENCE] += 1
            if Fix.LOWERCASE in fixes and (prompt.lower() != prompt or completion.lower() != completion):
                prompt, completion = prompt.lower(), completion.lower()
                self.applied[Fix.LOWERCASE] += 1
            value["prompt"], value["completion"] = prompt, completion
        elif fmt is Format.CHAT and Fix.LOWERCASE in fixes:
            changed = False
            messages = value.get("messages")
            for message in messages if isinstance(messages, list) else []:
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    lowered = message["content"].lower()
                    changed = changed or lowered != message["content"]
                    message["content"] = lowered
            self.applied[Fix.LOWERCASE] += changed


def _temp(out_dir: Path, name: str) -> tuple[IO[bytes], Path]:
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by the caller, which owns the rename
        mode="wb", dir=out_dir, prefix=f".{name}.", suffix=".tmp", delete=False
    )
    return handle, Path(handle.name)


def _split_indices(
    labels: list[int] | None, n: int, fraction: float, seed: int, minimum: int = MIN_EXAMPLES
) -> set[int]:
    """Indices of the validation examples: a seeded sample, per class when labels are given, topped up to
    ``minimum`` when the training part keeps at least that many (a smaller file is refused by fine-tuning)."""
    rng = random.Random(seed)
    groups: dict[int, list[int]] = {}
    if labels is None:
        groups[0] = list(range(n))
    else:
        for index, label in enumerate(labels):
            groups.setdefault(label, []).append(index)
    chosen: set[int] = set()
    for members in groups.values():
        rng.shuffle(members)
        take = round(len(members) * fraction)
        if len(members) >= 2:
            take = min(max(take, 1), len(members) - 1)
        chosen.update(members[:take])
    if n >= 2 and not chosen:
        chosen.add(rng.randrange(n))
    if n >= 2 and len(chosen) == n:
        chosen.discard(next(iter(chosen)))
    if len(chosen) < minimum <= n - minimum:
        rest = sorted(set(range(n)) - chosen)
        rng.shuffle(rest)
        chosen.update(rest[: minimum - len(chosen)])
    return chosen


def prepare_file(
    path: Path,
    *,
    fixes: set[Fix] | None = None,
    split: float | None = None,
    seed: int = 0,
    out_dir: Path,
    stem: str,
    model: str | None = None,
    name: str | None = None,
    report: DatasetReport | None = None,
) -> PrepareResult:
    """Write ``<stem>_prepared.jsonl`` (or ``_prepared_train``/``_prepared_valid`` with ``split``) in ``out_dir``.

    The format is detected from the content, ``name`` (the upload's name) being the hint for content that
    does not say. ``fixes=None`` applies the recommended ones; ``split`` is the validation share in (0, 1). Pass the
    ``report`` of ``path`` when already computed to skip a second read. Lines that cannot be parsed are never
    written (there is no JSON to write) and are listed in ``warnings``.
    """
    if split is not None and not 0 < split < 1:
        raise DatasetError("split must be between 0 and 1 (the validation share)", code="invalid_split")
    kind = detect_source_type(path, name)
    report = report or analyse_file(path, model=model, name=name)
    chosen = recommended_fixes(report) if fixes is None else set(fixes)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{stem}_prepared_train.jsonl", f"{stem}_prepared_valid.jsonl"] if split else [f"{stem}_prepared.jsonl"]
    targets = [out_dir / name for name in names]
    if any(t.resolve() == path.resolve() for t in targets):
        raise DatasetError("the prepared file would overwrite its source; choose another stem", code="invalid_stem")
    tokenizer = resolve_tokenizer(model) if Fix.DROP_LONG_EXAMPLES in chosen and report.n_over_context else None
    fixer = _Fixer(report, chosen, tokenizer)
    stratify = split is not None and report.classification is not None

    temps: list[Path] = []
    try:
        handle, all_path = _temp(out_dir, names[0])
        temps.append(all_path)
        warnings: list[Issue] = []
        labels: list[int] | None = [] if stratify else None
        classes: dict[str, int] = {}
        written = 0
        with handle:
            for value, key, ex in _examples(path, kind, report.format, warnings):
                dropped = fixer.drop(key, ex)
                if dropped is not None:
                    fixer.applied[dropped] += 1
                    continue
                if labels is not None:
                    labels.append(classes.setdefault(ex.label or "", len(classes)))
                if isinstance(value, dict):
                    fixer.change(value, report.format)
                handle.write(orjson.dumps(value) + b"\n")
                written += 1
        if split is None:
            os.replace(all_path, targets[0])
            temps.remove(all_path)
            return PrepareResult(
                outputs=targets,
                n_written=written,
                n_train=written,
                n_valid=0,
                applied=fixer.applied,
                fixes=sorted(chosen),
                warnings=warnings,
            )
        valid = _split_indices(labels, written, split, seed)
        if min(len(valid), written - len(valid)) < MIN_EXAMPLES:
            raise DatasetError(
                f"a {split:.0%} split of {written} examples leaves {written - len(valid)} for training and "
                f"{len(valid)} for validation; fine-tuning needs at least {MIN_EXAMPLES} in each file",
                code="split_too_small",
            )
        train_handle, train_tmp = _temp(out_dir, names[0])
        temps.append(train_tmp)
        valid_handle, valid_tmp = _temp(out_dir, names[1])
        temps.append(valid_tmp)
        with all_path.open("rb") as source, train_handle, valid_handle:
            for index, raw in enumerate(source):
                (valid_handle if index in valid else train_handle).write(raw)
        os.replace(train_tmp, targets[0])
        os.replace(valid_tmp, targets[1])
        temps.remove(train_tmp)
        temps.remove(valid_tmp)
        return PrepareResult(
            outputs=targets,
            train_path=targets[0],
            valid_path=targets[1],
            n_written=written,
            n_train=written - len(valid),
            n_valid=len(valid),
            applied=fixer.applied,
            fixes=sorted(chosen),
            warnings=warnings,
        )
    finally:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()


def _examples(
    path: Path, kind: SourceType, fmt: Format | None, warnings: list[Issue]
) -> Iterator[tuple[object, bytes | None, Example]]:
    """Parsed examples with their inspection; unparsable lines go to ``warnings``."""
    info = SourceInfo(kind)
    for record in iter_records(path, kind, info):
        if record.blank:
            continue
        if record.error is not None or record.value is NOTHING:
            if len(warnings) < MAX_WARNINGS:
                code, message = record.error or (IssueCode.INVALID_JSON, "unreadable")
                warnings.append(Issue(line=record.line, code=code, message=f"not written: {message}"))
            continue
        key = record.key if isinstance(record.value, dict) else None
        yield record.value, key, inspect_example(record.value, fmt)
