"""Logs as structured lines through structlog: JSON (one object a line, the default) or readable (development).

Standard-library records (ours, ``logging.getLogger(__name__)``, and uvicorn's, access log included) go through
structlog's ``ProcessorFormatter``, so every line has the same shape: ``timestamp``, ``level``, ``logger``,
``event``, the ``request_id`` of the request being served when there is one (from
:data:`app.observability.context.current`; values bound with ``structlog.contextvars`` join too), and an
access line's ``method``, ``path``, ``status`` and ``client``.

No line carries a secret: values under names such as ``authorization``, ``cookie`` or ``api_key`` are replaced,
and in any text a bearer credential, an ``sk-…`` or ``whsec_…`` key, or a password in a URL is masked.
``ftgw serve`` hands :func:`logging_config` to uvicorn, which applies it in each server process; ``ftgw worker``
applies it itself (:func:`configure_logging`).
"""

from __future__ import annotations

import logging
import logging.config
import re
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from app.observability.context import request_id

LogFormat = Literal["json", "console"]

REDACTED = "[redacted]"
_SECRET_NAMES = frozenset(
    {"authorization", "proxy_authorization", "cookie", "set_cookie", "password", "secret", "token", "api_key", "apikey"}
)
_SECRET_SUFFIXES = ("_secret", "_password", "_token", "_api_key", "_key")
_SECRET_TEXT = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;]+"), r"\1 " + REDACTED),
    (re.compile(r"\b(sk|whsec)[-_][A-Za-z0-9_\-]{8,}"), r"\1-" + REDACTED),
    (re.compile(r"(\w+://)[^/\s:@]*:[^/\s@]*@"), r"\1" + REDACTED + "@"),  # user:password@ in a URL
)


def _secret_name(name: str) -> bool:
    name = name.lower().replace("-", "_")
    return name in _SECRET_NAMES or name.endswith(_SECRET_SUFFIXES)


def scrub(text: str) -> str:
    """``text`` with credentials masked."""
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask secrets: whole values under secret-sounding names, credentials inside any text."""
    for name, value in event_dict.items():
        if _secret_name(name):
            event_dict[name] = REDACTED
        elif isinstance(value, str):
            event_dict[name] = scrub(value)
    return event_dict


def add_request_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    found = request_id()
    if found is not None:
        event_dict.setdefault("request_id", found)
    return event_dict


def access_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """uvicorn's access line as fields too (its arguments: client, method, path, HTTP version, status); other
    records' arguments are already in their ``event``."""
    args = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    is_access = isinstance(record, logging.LogRecord) and record.name == "uvicorn.access"
    if is_access and isinstance(args, tuple) and len(args) == 5:
        client, method, path, _version, status = args
        event_dict.update(method=method, path=path, status=status, client=client)
    return event_dict


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    add_request_id,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter(renderer: LogFormat = "json") -> structlog.stdlib.ProcessorFormatter:
    """The formatter of every handler; named in :func:`logging_config`, so building it (in each server process)
    also points structlog's own loggers at the standard library."""
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    render: Processor = (
        structlog.processors.JSONRenderer() if renderer == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, access_fields],
        pass_foreign_args=True,  # for access_fields
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            render,
        ],
    )


def logging_config(level: str, renderer: LogFormat) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` document: every record, uvicorn's included, through one handler."""
    uvicorn: MutableMapping[str, Any] = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"ftgw": {"()": f"{__name__}.formatter", "renderer": renderer}},
        "handlers": {"ftgw": {"class": "logging.StreamHandler", "formatter": "ftgw", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["ftgw"], "level": level.upper()},
        "loggers": {name: dict(uvicorn) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


def configure_logging(level: str, renderer: LogFormat) -> None:
    """Apply :func:`logging_config` to this process (what uvicorn does for ``ftgw serve``)."""
    logging.config.dictConfig(logging_config(level, renderer))
