"""Every error and warning code, reported on the line where it occurs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.datasets import IssueCode, analyse_file, validate_file
from app.datasets.schemas import DatasetReport, Format
from tests.datasets.factories import chat, pc, preference, write_jsonl

BAD_LINE = 6  # the bad row goes after five good ones


def issue_lines(report: DatasetReport, code: IssueCode, *, warnings: bool = False) -> list[int | None]:
    summary = report.warnings if warnings else report.errors
    return [i.line for i in summary.items if i.code == code]


def with_bad_line(tmp_path: Path, good: list[object], bad: object) -> Path:
    raw = bad if isinstance(bad, (str, bytes)) else json.dumps(bad) + "\n"
    return write_jsonl(tmp_path / "data.jsonl", [*good[:5], raw, *good[5:]])


CHAT_CASES = [
    ("{not json\n", IssueCode.INVALID_JSON),
    (b'{"messages": "caf\xe9"}\n', IssueCode.INVALID_UTF8),
    ('["an", "array"]\n', IssueCode.NOT_AN_OBJECT),
    ("42\n", IssueCode.NOT_AN_OBJECT),
    ({"text": "hello"}, IssueCode.MISSING_MESSAGES),
    ({"messages": []}, IssueCode.MISSING_MESSAGES),
    ({"messages": "hi"}, IssueCode.WRONG_TYPE),
    ({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]}, IssueCode.WRONG_TYPE),
    ({"messages": ["hi", {"role": "assistant", "content": "a"}]}, IssueCode.WRONG_TYPE),
    ({"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]}, IssueCode.MISSING_ROLE),
    ({"messages": [{"role": "bot", "content": "q"}, {"role": "assistant", "content": "a"}]}, IssueCode.UNKNOWN_ROLE),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}, IssueCode.MISSING_CONTENT),
    (
        {"messages": [{"role": "user", "content": "q", "mood": "x"}, {"role": "assistant", "content": "a"}]},
        IssueCode.UNRECOGNIZED_KEY,
    ),
    ({"messages": [{"role": "assistant", "content": "a"}], "extra": 1}, IssueCode.UNRECOGNIZED_KEY),
    (
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]},
        IssueCode.INVALID_WEIGHT,
    ),
    (
        {"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}]},
        IssueCode.INVALID_WEIGHT,
    ),
    ({"messages": [{"role": "user", "content": "q"}]}, IssueCode.NO_ASSISTANT_MESSAGE),
    (
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]},
        IssueCode.EMPTY_COMPLETION,
    ),
    ({"prompt": "p", "completion": " c"}, IssueCode.MIXED_FORMATS),
    ({"foo": 1}, IssueCode.MISSING_MESSAGES),
]


@pytest.mark.parametrize(("bad", "code"), CHAT_CASES)
def test_chat_error_codes_name_their_line(tmp_path: Path, bad: object, code: IssueCode) -> None:
    path = with_bad_line(tmp_path, [chat(i) for i in range(12)], bad)

    report = analyse_file(path)

    assert report.format is Format.CHAT
    assert issue_lines(report, code) == [BAD_LINE]
    assert report.errors.by_code[code] == 1
    assert report.n_examples == 13
    assert report.n_valid == 12
    assert not report.ok


PC_CASES = [
    ({"completion": " c"}, IssueCode.MISSING_PROMPT),
    ({"prompt": "p"}, IssueCode.MISSING_COMPLETION),
    ({"prompt": "p", "completion": ""}, IssueCode.EMPTY_COMPLETION),
    ({"prompt": 3, "completion": " c"}, IssueCode.WRONG_TYPE),
    ({"prompt": "p", "completion": ["c"]}, IssueCode.WRONG_TYPE),
    ({"prompt": "p", "completion": " c", "label": 1}, IssueCode.UNRECOGNIZED_KEY),
    ({"title": "no known key"}, IssueCode.MISSING_PROMPT),
]


@pytest.mark.parametrize(("bad", "code"), PC_CASES)
def test_prompt_completion_error_codes(tmp_path: Path, bad: object, code: IssueCode) -> None:
    path = with_bad_line(tmp_path, [pc(i) for i in range(12)], bad)

    report = analyse_file(path)

    assert report.format is Format.PROMPT_COMPLETION
    assert issue_lines(report, code) == [BAD_LINE]


def _pref(**changes: object) -> dict[str, object]:
    row = preference(99)
    for key, value in changes.items():
        if value is None:
            del row[key]
        else:
            row[key] = value
    return row


PREFERENCE_CASES = [
    (_pref(input=None), IssueCode.MISSING_INPUT),
    (_pref(preferred_output=None), IssueCode.MISSING_PREFERRED_OUTPUT),
    (_pref(non_preferred_output=None), IssueCode.MISSING_NON_PREFERRED_OUTPUT),
    (_pref(preferred_output=[{"role": "user", "content": "x"}]), IssueCode.INVALID_OUTPUT),
    (_pref(non_preferred_output=[]), IssueCode.INVALID_OUTPUT),
    (_pref(input={"messages": []}), IssueCode.MISSING_MESSAGES),
    (_pref(input="text"), IssueCode.WRONG_TYPE),
]


@pytest.mark.parametrize(("bad", "code"), PREFERENCE_CASES)
def test_preference_error_codes(tmp_path: Path, bad: object, code: IssueCode) -> None:
    path = with_bad_line(tmp_path, [preference(i) for i in range(12)], bad)

    report = analyse_file(path)

    assert report.format is Format.PREFERENCE
    assert issue_lines(report, code) == [BAD_LINE]


def test_valid_files_of_each_format_are_ok(tmp_path: Path) -> None:
    for name, rows in (
        ("chat", [chat(i) for i in range(10)]),
        ("pc", [pc(i) for i in range(10)]),
        ("pref", [preference(i) for i in range(10)]),
    ):
        report = analyse_file(write_jsonl(tmp_path / f"{name}.jsonl", rows))
        assert report.ok, report.errors
        assert report.n_valid == 10


def test_weight_zero_and_names_are_valid_chat(tmp_path: Path) -> None:
    row = {
        "messages": [
            {"role": "user", "content": "q", "name": "ann"},
            {"role": "assistant", "content": "draft", "weight": 0},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": "final", "weight": 1},
        ]
    }
    report = analyse_file(write_jsonl(tmp_path / "w.jsonl", [row] * 1 + [chat(i) for i in range(10)]))
    assert report.errors.total == 0


def test_line_too_long_is_skipped_with_its_line(tmp_path: Path) -> None:
    huge = json.dumps({"prompt": "x" * (10 * 1024 * 1024), "completion": " y"}) + "\n"
    path = write_jsonl(tmp_path / "huge.jsonl", [*[pc(i) for i in range(3)], huge, *[pc(i) for i in range(3, 12)]])

    report = analyse_file(path)

    assert issue_lines(report, IssueCode.LINE_TOO_LONG) == [4]
    assert report.n_valid == 12
    assert report.n_lines == 13


def test_too_many_tokens_for_the_model(tmp_path: Path) -> None:
    long_row = chat(0, answer="word " * 9000)  # ~9000 tokens; gpt-4-0613 takes 8192 per example
    path = write_jsonl(
        tmp_path / "long.jsonl", [*[chat(i) for i in range(1, 4)], long_row, *[chat(i) for i in range(4, 14)]]
    )

    report = analyse_file(path, model="gpt-4-0613")

    assert report.context_limit == 8192
    assert issue_lines(report, IssueCode.TOO_MANY_TOKENS) == [4]
    assert report.n_over_context == 1
    assert report.n_valid == 13


def test_too_few_examples_and_empty_file(tmp_path: Path) -> None:
    few = analyse_file(write_jsonl(tmp_path / "few.jsonl", [chat(i) for i in range(9)]))
    assert issue_lines(few, IssueCode.TOO_FEW_EXAMPLES) == [None]

    empty = analyse_file(write_jsonl(tmp_path / "empty.jsonl", []))
    assert issue_lines(empty, IssueCode.EMPTY_FILE) == [None]
    assert empty.n_examples == 0
    assert empty.tokens is None


def test_unknown_format_when_no_line_has_a_known_key(tmp_path: Path) -> None:
    report = analyse_file(write_jsonl(tmp_path / "x.jsonl", [{"text": f"t{i}"} for i in range(3)]))
    assert issue_lines(report, IssueCode.UNKNOWN_FORMAT) == [1, 2, 3]
    assert report.format is None


def test_bom_crlf_and_blank_lines_are_warnings(tmp_path: Path) -> None:
    lines = [json.dumps(chat(i)) for i in range(11)]
    data = b"\xef\xbb\xbf" + "\r\n".join(lines[:4]).encode() + b"\r\n\r\n" + "\r\n".join(lines[4:]).encode()
    path = tmp_path / "win.jsonl"
    path.write_bytes(data)

    report = analyse_file(path)

    assert report.errors.total == 0
    assert report.n_valid == 11
    assert issue_lines(report, IssueCode.BOM, warnings=True) == [1]
    assert issue_lines(report, IssueCode.CRLF, warnings=True) == [1]
    assert issue_lines(report, IssueCode.BLANK_LINE, warnings=True) == [5]


def test_issue_lists_are_capped_but_counted(tmp_path: Path) -> None:
    rows: list[Any] = (
        [chat(i) for i in range(10)] + ["{bad\n"] * 30 + [{"messages": [{"role": "user", "content": "q"}]}] * 5
    )
    report = analyse_file(write_jsonl(tmp_path / "many.jsonl", rows), max_issues=10)

    assert report.errors.total == 35
    assert report.errors.by_code == {"invalid_json": 30, "no_assistant_message": 5}
    # capped at 10, plus the first of each code so every code has an example
    assert len(report.errors.items) == 11
    assert [i.line for i in report.errors.items if i.code == IssueCode.NO_ASSISTANT_MESSAGE] == [41]


def test_validate_file_summarises(tmp_path: Path) -> None:
    path = with_bad_line(tmp_path, [chat(i) for i in range(12)], {"messages": [{"role": "user", "content": "q"}]})

    summary = validate_file(path, "gpt-4o-mini")

    assert not summary.ok
    assert summary.format is Format.CHAT
    assert (summary.n_examples, summary.n_valid, summary.n_errors) == (13, 12, 1)
    assert summary.errors[0].line == BAD_LINE
    assert summary.errors[0].code is IssueCode.NO_ASSISTANT_MESSAGE
