"""Request values every backend can store, checked where they enter: no NUL, no lone surrogate, no infinity.

PostgreSQL refuses a NUL character in text, a lone surrogate is not UTF-8 (neither backend can encode it), and
JSON columns cannot hold ``Infinity``/``NaN``, which Python's JSON parser lets through. Such a value is a 400 at the
door, never a database error later: :class:`StorableTextMiddleware` checks the decoded path and query string of
every request, ``RequestSchema`` (app/kit/schemas.py) every JSON body, and the upload parser its form fields.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import error_response

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    what = "a NUL character" if found.group() == "\x00" else "a lone surrogate"
    return f"contains {what}, which cannot be stored"


def value_problems(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """``(location, why)`` of every string (keys included) and number in parsed JSON that cannot be stored."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            yield loc, problem
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield loc, "must be a finite number"
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := text_problem(key)) is not None:
                yield loc, f"a key {problem}"
            yield from value_problems(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from value_problems(item, (*loc, index))


class StorableTextMiddleware:
    """Refuse (400) a request whose decoded path or query string holds a character no backend can store."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = _refusal(scope)
            if refusal is not None:
                param, problem = refusal
                response = error_response(
                    400,
                    f"Invalid value for '{param}': it {problem}.",
                    type_="invalid_request_error",
                    param=param,
                    code="invalid_value",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refusal(scope: Scope) -> tuple[str, str] | None:
    problem = text_problem(scope.get("path", ""))
    if problem is not None:
        return "path", problem
    query = scope.get("query_string", b"")
    if not query:
        return None
    # Decoded as Starlette decodes it for the endpoints, so the check sees what they would.
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        problem = text_problem(name) or text_problem(value)
        if problem is not None:
            return name if text_problem(name) is None else "query", problem
    return None
