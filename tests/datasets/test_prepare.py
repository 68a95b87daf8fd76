"""prepare_file: every input format, each fix, the split, and outputs that are all-or-nothing."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.datasets import DatasetError, Fix, IssueCode, analyse_file, prepare_file, recommended_fixes
from app.datasets.prepare import _split_indices
from app.datasets.report import MIN_EXAMPLES
from tests.datasets.factories import chat, pc, read_jsonl, write_jsonl

RAW_ROWS = [(f"Describe item {i}", f"Widget number {i}") for i in range(12)]
PREPARED = [{"prompt": f"{p}\n\n###\n\n", "completion": f" {c}\n"} for p, c in RAW_ROWS]


def write_delimited(path: Path, delimiter: str) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(["Prompt", "Completion", "notes"])
        for prompt, completion in RAW_ROWS:
            writer.writerow([prompt, completion, "n/a"])
    return path


def write_xlsx(path: Path, rows: list[tuple[object, ...]]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["prompt", "completion"])
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)
    return path


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_delimited_files_are_converted_and_fixed(tmp_path: Path, delimiter: str) -> None:
    source = write_delimited(tmp_path / ("data.csv" if delimiter == "," else "data.tsv"), delimiter)
    before = source.read_bytes()

    result = prepare_file(source, fixes=None, split=None, seed=0, out_dir=tmp_path / "out", stem="data")

    assert result.outputs == [tmp_path / "out" / "data_prepared.jsonl"]
    assert read_jsonl(result.outputs[0]) == PREPARED
    assert result.applied == {Fix.ADD_SEPARATOR: 12, Fix.ADD_LEADING_WHITESPACE: 12, Fix.ADD_STOP_SEQUENCE: 12}
    assert source.read_bytes() == before  # the original is never modified
    report = analyse_file(source)
    assert report.source_type == ("csv" if delimiter == "," else "tsv")
    assert [(w.line, w.code) for w in report.warnings.items] == [(1, IssueCode.IGNORED_COLUMN)]


def test_xlsx_is_converted_and_formulas_are_flagged(tmp_path: Path) -> None:
    rows: list[tuple[object, ...]] = [*RAW_ROWS[:11], ("=1+1", RAW_ROWS[11][1])]
    source = write_xlsx(tmp_path / "data.xlsx", rows)

    report = analyse_file(source)
    result = prepare_file(source, split=None, seed=0, out_dir=tmp_path, stem="data")

    assert report.source_type == "xlsx"
    assert [(w.line, w.code) for w in report.warnings.items] == [(13, IssueCode.FORMULA_CELL)]
    written = read_jsonl(result.outputs[0])
    assert written[:11] == PREPARED[:11]
    assert written[11]["prompt"] == "=1+1\n\n###\n\n"  # kept as text, never evaluated


def test_xlsx_numbers_become_text(tmp_path: Path) -> None:
    source = write_xlsx(tmp_path / "n.xlsx", [(f"q{i}", i) for i in range(12)])
    result = prepare_file(source, fixes=set(), split=None, seed=0, out_dir=tmp_path, stem="n")
    assert read_jsonl(result.outputs[0])[3] == {"prompt": "q3", "completion": "3"}


def test_json_array_is_converted(tmp_path: Path) -> None:
    source = tmp_path / "data.json"
    source.write_text(json.dumps([{"prompt": p, "completion": c} for p, c in RAW_ROWS]))

    result = prepare_file(source, split=None, seed=0, out_dir=tmp_path, stem="data")

    assert read_jsonl(result.outputs[0]) == PREPARED
    assert analyse_file(source).source_type == "json"


def test_jsonl_named_json_is_read_as_jsonl(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "lines.json", [chat(i) for i in range(10)])
    report = analyse_file(source)
    assert (report.n_valid, report.errors.total) == (10, 0)


def test_drops_are_counted_and_only_chosen_fixes_apply(tmp_path: Path) -> None:
    rows: list[object] = [chat(i) for i in range(12)]
    rows += [chat(3), chat(4), chat(50, answer=""), {"messages": [{"role": "user", "content": "q"}]}, "{oops\n"]
    source = write_jsonl(tmp_path / "chat.jsonl", rows)
    report = analyse_file(source)
    assert recommended_fixes(report) == {Fix.DROP_DUPLICATES, Fix.DROP_EMPTY_COMPLETIONS, Fix.DROP_INVALID}

    result = prepare_file(source, split=None, seed=0, out_dir=tmp_path, stem="all")
    assert result.applied == {Fix.DROP_DUPLICATES: 2, Fix.DROP_EMPTY_COMPLETIONS: 1, Fix.DROP_INVALID: 1}
    assert read_jsonl(result.outputs[0]) == [chat(i) for i in range(12)]
    assert [(w.line, w.code) for w in result.warnings] == [(17, IssueCode.INVALID_JSON)]

    only = prepare_file(source, fixes={Fix.DROP_DUPLICATES}, split=None, seed=0, out_dir=tmp_path, stem="dups")
    assert only.applied == {Fix.DROP_DUPLICATES: 2}
    assert only.n_written == 14  # empty and invalid examples stay; the unparsable line cannot be written


def test_lowercase_and_long_example_fixes(tmp_path: Path) -> None:
    rows = [chat(i, answer=f"ITEM {i}.") for i in range(12)] + [chat(99, answer="word " * 9000)]
    source = write_jsonl(tmp_path / "u.jsonl", rows)

    result = prepare_file(
        source,
        fixes={Fix.LOWERCASE, Fix.DROP_LONG_EXAMPLES},
        split=None,
        seed=0,
        out_dir=tmp_path,
        stem="u",
        model="gpt-4-0613",
    )

    assert result.applied == {Fix.DROP_LONG_EXAMPLES: 1, Fix.LOWERCASE: 12}
    written = read_jsonl(result.outputs[0])
    assert len(written) == 12
    assert written[0]["messages"][2] == {"role": "assistant", "content": "item 0."}


def classification_file(tmp_path: Path) -> Path:
    labels = [" red"] * 40 + [" green"] * 20 + [" blue"] * 10
    rows = [pc(i, prompt=f"Colour {i}\n\n###\n\n", completion=label) for i, label in enumerate(labels)]
    return write_jsonl(tmp_path / "colours.jsonl", rows)


def test_split_is_stratified_by_class(tmp_path: Path) -> None:
    source = classification_file(tmp_path)

    result = prepare_file(source, fixes=set(), split=0.25, seed=7, out_dir=tmp_path / "a", stem="colours")

    assert result.train_path == tmp_path / "a" / "colours_prepared_train.jsonl"
    assert result.valid_path == tmp_path / "a" / "colours_prepared_valid.jsonl"
    valid = Counter(r["completion"] for r in read_jsonl(result.valid_path))
    train = Counter(r["completion"] for r in read_jsonl(result.train_path))
    assert valid == {" red": 10, " green": 5, " blue": 2}
    assert train == {" red": 30, " green": 15, " blue": 8}
    assert (result.n_train, result.n_valid, result.n_written) == (53, 17, 70)


def test_split_is_reproducible_with_its_seed(tmp_path: Path) -> None:
    source = classification_file(tmp_path)

    first = prepare_file(source, fixes=set(), split=0.25, seed=7, out_dir=tmp_path / "a", stem="c")
    again = prepare_file(source, fixes=set(), split=0.25, seed=7, out_dir=tmp_path / "b", stem="c")
    other = prepare_file(source, fixes=set(), split=0.25, seed=8, out_dir=tmp_path / "c", stem="c")

    assert first.valid_path and again.valid_path and other.valid_path
    assert first.valid_path.read_bytes() == again.valid_path.read_bytes()
    assert first.valid_path.read_bytes() != other.valid_path.read_bytes()


def test_unstratified_split_of_generation_data(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "g.jsonl", [chat(i) for i in range(50)])
    result = prepare_file(source, fixes=set(), split=0.2, seed=1, out_dir=tmp_path, stem="g")
    assert (result.n_train, result.n_valid) == (40, 10)
    assert result.valid_path is not None and result.train_path is not None
    lines = read_jsonl(result.train_path) + read_jsonl(result.valid_path)
    assert sorted(json.dumps(x) for x in lines) == sorted(json.dumps(chat(i)) for i in range(50))


def test_a_small_validation_share_is_topped_up_to_an_acceptable_file(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "g.jsonl", [chat(i) for i in range(30)])
    result = prepare_file(source, fixes=set(), split=0.2, seed=1, out_dir=tmp_path, stem="g")
    assert (result.n_train, result.n_valid) == (20, MIN_EXAMPLES)


def test_a_split_that_would_leave_a_file_too_small_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "g.jsonl", [chat(i) for i in range(15)])
    with pytest.raises(DatasetError) as refused:
        prepare_file(source, fixes=set(), split=0.2, seed=1, out_dir=tmp_path / "out", stem="g")
    assert refused.value.code == "split_too_small"
    assert "12 for training and 3 for validation" in refused.value.message
    assert list((tmp_path / "out").iterdir()) == []


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=2 * MIN_EXAMPLES, max_size=300),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32),
)
def test_split_indices_leave_both_files_big_enough_when_they_can_be(
    labels: list[int], fraction: float, seed: int
) -> None:
    n = len(labels)
    chosen = _split_indices(labels, n, fraction, seed)
    assert chosen <= set(range(n))
    assert len(chosen) >= MIN_EXAMPLES
    if n - round(n * fraction) >= MIN_EXAMPLES + 5:  # a share that leaves room for training (rounding per class)
        assert n - len(chosen) >= MIN_EXAMPLES


def test_failure_leaves_no_partial_output(tmp_path: Path) -> None:
    source = write_xlsx(tmp_path / "data.xlsx", list(RAW_ROWS))
    report = analyse_file(source)
    out = tmp_path / "out"
    out.mkdir()
    previous = out / "data_prepared.jsonl"
    previous.write_text("an earlier good output\n")
    source.write_bytes(b"PK\x03\x04 this is no longer a workbook")  # breaks while prepare is reading it

    with pytest.raises(DatasetError):
        prepare_file(source, split=None, seed=0, out_dir=out, stem="data", report=report)

    assert sorted(p.name for p in out.iterdir()) == ["data_prepared.jsonl"]
    assert previous.read_text() == "an earlier good output\n"


def test_refuses_to_overwrite_its_source_and_bad_split(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "x_prepared.jsonl", [chat(i) for i in range(10)])
    with pytest.raises(DatasetError) as caught:
        prepare_file(source, split=None, seed=0, out_dir=tmp_path, stem="x")
    assert caught.value.code == "invalid_stem"
    with pytest.raises(DatasetError):
        prepare_file(source, split=1.5, seed=0, out_dir=tmp_path, stem="y")
