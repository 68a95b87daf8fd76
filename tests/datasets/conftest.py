"""Dataset tests run offline: tiktoken reads a cache seeded from the shipped encodings, never the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.tokenizers import seed_tiktoken_cache


@pytest.fixture(scope="session", autouse=True)
def tiktoken_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("tiktoken")
    seed_tiktoken_cache(cache)
    return cache
