"""Logs: ``ftgw serve`` writes JSON lines (uvicorn's access lines and ours) carrying the request id and no secret;
the same formatter renders readable lines for development and masks credentials wherever they appear."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from app.observability.context import RequestContext, current
from app.observability.logging import LogFormat, formatter
from tests.conftest import BOOTSTRAP_KEY
from tests.platform.test_serve import serving


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_serve_logs_json_lines_with_the_request_id_and_no_secret(database_url: str, tmp_path: Path) -> None:
    unknown_key = "sk-ftgw-" + secrets.token_hex(20)
    cookie = "console-session-" + secrets.token_hex(16)
    env = {
        "FTGW_DATABASE_URL": database_url,
        "FTGW_BOOTSTRAP_KEY": BOOTSTRAP_KEY,
        "FTGW_EMBEDDED_WORKER": "false",  # the database is the test session's: train nothing of other tests
        "FTGW_LOG_FORMAT": "json",
        "FTGW_LOG_LEVEL": "info",
    }
    with serving(tmp_path, **env) as (base_url, process, lines):
        with httpx.Client(base_url=base_url) as http:
            admin = {"Authorization": f"Bearer {BOOTSTRAP_KEY}", "X-Request-ID": "trace-admin-1"}
            assert http.get("/v1/models", headers=admin).status_code == 200
            refused = http.get(
                f"/v1/files?api_key={unknown_key}",
                headers={"Authorization": f"Bearer {unknown_key}", "Cookie": f"ftgw_session={cookie}"},
            )
            assert refused.status_code == 401
            made = refused.headers["x-request-id"]
        process.terminate()
        assert process.stdout is not None
        output = "".join(lines) + process.stdout.read()

    started = output.index("Application startup complete")
    after_start = output[output.rindex("\n", 0, started) + 1 :]
    assert all(line.startswith("{") for line in after_start.splitlines() if line), after_start
    records = _json_lines(output)
    assert all({"event", "level", "logger", "timestamp"} <= r.keys() for r in records)
    by_id = {r.get("request_id"): r for r in records if r.get("logger") == "uvicorn.access"}
    ok = by_id["trace-admin-1"]
    assert (ok["method"], ok["path"], ok["status"], ok["level"]) == ("GET", "/v1/models", 200, "info")
    assert by_id[made]["status"] == 401
    assert "api_key=sk-[redacted]" in by_id[made]["path"]
    for secret in (BOOTSTRAP_KEY, unknown_key, cookie):
        assert secret not in output


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(f"ftgw.test.{secrets.token_hex(4)}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("renderer", ["json", "console"])
def test_credentials_are_masked_wherever_they_appear(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler], renderer: LogFormat
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(formatter(renderer))
    key, webhook_secret = "sk-ftgw-" + secrets.token_hex(20), "whsec_" + secrets.token_hex(24)
    token = current.set(RequestContext("req-in-context"))
    try:
        logger.info("calling upstream with Authorization: Bearer %s", key)
        logger.warning(
            "Redis unavailable at redis://:hunter2-password@127.0.0.1:6379/0, signing with %s", webhook_secret
        )
        try:
            raise RuntimeError(f"refused {key}")
        except RuntimeError:
            logger.exception("a failure")
        structlog.get_logger(logger.name).info("bound values", api_key=key, authorization=key, prompt_tokens=7)
    finally:
        current.reset(token)
    text = stream.getvalue()
    for secret in (key, webhook_secret, "hunter2-password"):
        assert secret not in text
    assert "[redacted]" in text and "req-in-context" in text and "RuntimeError" in text
    if renderer == "json":
        records = _json_lines(text)
        assert len(records) == 4 and all(r["request_id"] == "req-in-context" for r in records)
        assert records[3]["prompt_tokens"] == 7 and records[3]["api_key"] == "[redacted]"
    else:
        assert not text.lstrip().startswith("{")
