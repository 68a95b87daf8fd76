"""The prompt format: detected from prompt-completion files, then applied to prompts, stops and generated text."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.datasets.prompt_format import PromptFormat, detect_prompt_format
from tests.datasets.factories import chat, pc, preference, write_jsonl

QUESTIONS = ["Where is my order?", "Can I get a refund?", "How do I reset my password?", "Do you ship abroad?"]


def detect(tmp_path: Path, rows: list[object]) -> PromptFormat | None:
    return detect_prompt_format(write_jsonl(tmp_path / "train.jsonl", rows))


@pytest.mark.parametrize("before_stop", [" ", "\n"])
def test_support_bot_with_a_separator_and_a_stop_marker(tmp_path: Path, before_stop: str) -> None:
    rows: list[object] = [
        pc(i, prompt=f"Customer: {q}\n\n###\n\n", completion=f" Thanks for asking about #{i}.{before_stop}**STOP**")
        for i, q in enumerate(QUESTIONS * 3)
    ]
    assert detect(tmp_path, rows) == PromptFormat(
        separator="\n\n###\n\n", stop=f"{before_stop}**STOP**", leading_space=True
    )


def test_generation_with_end(tmp_path: Path) -> None:
    rows: list[object] = [pc(i) for i in range(12)]  # "Describe item i\n\n###\n\n" -> " Item i is a widget. END"
    assert detect(tmp_path, rows) == PromptFormat(separator="\n\n###\n\n", stop=" END", leading_space=True)


def test_template_line_and_arrow_separators(tmp_path: Path) -> None:
    agent: list[object] = [
        pc(i, prompt=f"Customer: {q}\nAgent:", completion=f" Sure {i}\n") for i, q in enumerate(QUESTIONS)
    ]
    found = detect(tmp_path, agent)
    assert found is not None
    assert (found.separator, found.stop) == ("\nAgent:", "\n")
    arrow: list[object] = [pc(i, prompt=f"Count to {i} ->", completion=f" {i} items") for i in range(5)]
    assert detect(tmp_path, arrow) == PromptFormat(separator=" ->", stop=None, leading_space=True)


def test_sentiment_classifier_has_labels_and_no_stop(tmp_path: Path) -> None:
    rows: list[object] = [
        pc(
            i,
            prompt=f"Review {i}: {'great' if i % 2 else 'awful'} ->",
            completion=" positive" if i % 2 else " negative",
        )
        for i in range(20)
    ]
    assert detect(tmp_path, rows) == PromptFormat(
        separator=" ->", stop=None, leading_space=True, labels=["negative", "positive"]
    )


def test_labels_lose_their_stop_sequence(tmp_path: Path) -> None:
    rows: list[object] = [pc(i, completion=" SPAM END" if i % 3 else " HAM END") for i in range(12)]
    found = detect(tmp_path, rows)
    assert found is not None
    assert (found.stop, found.labels) == (" END", ["SPAM", "HAM"])


@pytest.mark.parametrize(
    ("prompt_end", "completion_end"),
    [("?", "."), (" please", "!"), (" now.", " 2024"), ("", "...")],
)
def test_ordinary_endings_are_not_a_format(tmp_path: Path, prompt_end: str, completion_end: str) -> None:
    words = ["apples", "pears", "plums", "figs", "limes", "kiwis"]
    rows: list[object] = [
        pc(i, prompt=f"Tell me about {w}{prompt_end}", completion=f"{w.title()} are fruit {i}{completion_end}")
        for i, w in enumerate(words)
    ]
    assert detect(tmp_path, rows) is None


def test_chat_and_preference_data_have_no_prompt_format(tmp_path: Path) -> None:
    assert detect(tmp_path, [chat(i) for i in range(12)]) is None
    assert detect(tmp_path, [preference(i) for i in range(12)]) is None
    assert detect(tmp_path, []) is None


def test_invalid_lines_are_ignored(tmp_path: Path) -> None:
    rows: list[object] = [b"{broken\n", "\n", {"prompt": "no completion"}, *(pc(i) for i in range(10))]
    found = detect(tmp_path, rows)
    assert found is not None
    assert (found.separator, found.stop) == ("\n\n###\n\n", " END")


def test_apply_stops_and_clean() -> None:
    fmt = PromptFormat(separator="\n\n###\n\n", stop=" END", leading_space=True)
    assert fmt.apply("Describe a cat") == "Describe a cat\n\n###\n\n"
    assert fmt.apply("Describe a cat\n\n###\n\n") == "Describe a cat\n\n###\n\n"
    assert fmt.stops(None) == [" END"]
    assert fmt.stops(["\n", " END", "x", "y", "z"]) == [" END", "\n", "x", "y"]
    assert fmt.clean(" A cat. END", first=True) == "A cat."
    assert fmt.clean(" more", first=False) == " more"
    bare = PromptFormat()
    assert (bare.apply("hi"), bare.stops(["x"]), bare.clean(" hi", first=True)) == ("hi", ["x"], " hi")
    assert PromptFormat.from_stored(fmt.model_dump()) == fmt
    assert PromptFormat.from_stored(None) is None
