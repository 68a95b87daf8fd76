"""Hostile or broken input gets an issue on its line, or a DatasetError; never another exception."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from app.datasets import DatasetError, IssueCode, analyse_file, prepare_file
from app.datasets.convert import MAX_XLSX_RATIO
from tests.datasets.factories import chat, write_jsonl


def codes_at(path: Path) -> dict[int | None, IssueCode]:
    report = analyse_file(path)
    return {issue.line: issue.code for issue in report.errors.items}


def test_invalid_utf8_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "u.jsonl", [chat(1), b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}\n', chat(2)]
    )
    report = analyse_file(path)
    bad = [i for i in report.errors.items if i.line is not None]
    assert [(i.line, i.code) for i in bad] == [(2, IssueCode.INVALID_UTF8)]
    assert "byte" in bad[0].message


def test_deeply_nested_json_is_an_invalid_line(tmp_path: Path) -> None:
    nested = "[" * 100_000 + "]" * 100_000 + "\n"
    deep_object = '{"messages": ' + "[" * 5000 + "]" * 5000 + "}\n"
    path = write_jsonl(tmp_path / "deep.jsonl", [chat(1), nested, deep_object, chat(2)])

    assert codes_at(path) == {2: IssueCode.INVALID_JSON, 3: IssueCode.INVALID_JSON, None: IssueCode.TOO_FEW_EXAMPLES}


def test_binary_garbage_is_reported_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(bytes(range(256)) * 40)
    report = analyse_file(path)
    assert report.n_examples >= 1
    assert set(report.errors.by_code) <= {"invalid_utf8", "invalid_json", "empty_file", "too_few_examples"}
    assert report.errors.by_code.get("invalid_utf8", 0) + report.errors.by_code.get("invalid_json", 0) >= 1


def test_empty_and_whitespace_only_files(tmp_path: Path) -> None:
    for name, data in (("empty.jsonl", b""), ("blank.jsonl", b"\n\n  \n"), ("bom.jsonl", b"\xef\xbb\xbf")):
        path = tmp_path / name
        path.write_bytes(data)
        report = analyse_file(path)
        assert report.errors.by_code == {"empty_file": 1}, name


def test_xlsx_zip_bomb_is_refused_before_decompressing(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (40 * 1024 * 1024))
    assert bomb.stat().st_size < 40 * 1024 * 1024 / MAX_XLSX_RATIO

    with pytest.raises(DatasetError) as caught:
        analyse_file(bomb)
    assert caught.value.code == "xlsx_too_large"


def test_not_a_workbook(tmp_path: Path) -> None:
    # Content that names no format goes by the name: an .xlsx that is no zip, or a zip that is no workbook.
    fake = tmp_path / "fake.xlsx"
    fake.write_text("just some words\n")
    plain_zip = tmp_path / "archive"
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("notes.txt", "prompt,completion")
    for path in (fake, plain_zip):
        with pytest.raises(DatasetError) as caught:
            analyse_file(path)
        assert caught.value.code == "invalid_xlsx", path.name


def test_content_wins_over_a_misleading_name(tmp_path: Path) -> None:
    csv_named_xlsx = tmp_path / "fake.xlsx"
    csv_named_xlsx.write_text("prompt,completion\nq,a\n")
    assert analyse_file(csv_named_xlsx).source_type == "csv"


def test_csv_with_formula_cells_keeps_them_as_text(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "completion"])
        for i in range(10):
            writer.writerow([f"q{i}", f" a{i}"])
        writer.writerow(['=HYPERLINK("http://x","y")', " -5 is fine"])
        writer.writerow(["@SUM(A1)", "+cmd|' /C calc'!A0"])

    report = analyse_file(path)

    assert [w.line for w in report.warnings.items] == [12, 13, 13]  # both cells of line 13
    assert report.warnings.by_code == {"formula_cell": 3}
    assert report.n_valid == 12


def test_csv_with_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(
        b"prompt,completion\n"
        + b"".join(f"q{i}, a{i}\n".encode() for i in range(10))
        + b"only one cell\n"
        + b"q\xff, a\n"
        + b'"multi\nline prompt", a\n'
    )
    report = analyse_file(path)
    assert [(i.line, i.code) for i in report.errors.items] == [(12, IssueCode.WRONG_TYPE), (13, IssueCode.INVALID_UTF8)]
    assert report.n_valid == 11


def test_csv_without_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("question,answer\nq,a\n")
    with pytest.raises(DatasetError) as caught:
        analyse_file(path)
    assert (caught.value.code, caught.value.line) == ("missing_columns", 1)


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(b"%PDF-1.7 binary")
    with pytest.raises(DatasetError) as caught:
        analyse_file(path)
    assert caught.value.code == "unsupported_file"
    assert isinstance(caught.value, ValueError)


def test_unknown_model_is_a_dataset_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ok.jsonl", [chat(i) for i in range(10)])
    with pytest.raises(DatasetError) as caught:
        analyse_file(path, model="my-local-llama")
    assert caught.value.code == "unknown_model"


def test_prepare_survives_every_bad_line(tmp_path: Path) -> None:
    rows: list[object] = [chat(i) for i in range(10)]
    rows += [b"\xff\n", "[1, 2]\n", "{\n", "[" * 3000 + "\n", "\n"]
    source = write_jsonl(tmp_path / "mess.jsonl", rows)

    result = prepare_file(source, split=None, seed=0, out_dir=tmp_path, stem="mess")

    assert result.n_written == 10
    assert [(w.line, w.code) for w in result.warnings] == [
        (11, IssueCode.INVALID_UTF8),
        (13, IssueCode.INVALID_JSON),
        (14, IssueCode.INVALID_JSON),
    ]
