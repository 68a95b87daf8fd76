"""API key secrets: how they are made, hashed and shown."""

from __future__ import annotations

import hashlib

from app.kit.ids import random_token

KEY_PREFIX = "sk-ftgw-"


def generate_secret() -> str:
    return KEY_PREFIX + random_token(40)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def redact(secret: str) -> str:
    head = secret[: len(KEY_PREFIX) + 4] if secret.startswith(KEY_PREFIX) else secret[:4]
    return f"{head}…{secret[-4:]}"
