"""Failures end in one or two lines and a documented exit code, never a traceback (unless --debug); the gateway's
address and key are read as the SDK reads them."""

from __future__ import annotations

import socket
import time

import pytest

from tests.cli.runner import ftgw, short_error
from tests.conftest import Gateway, Tenant


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_wrong_key_is_one_line_and_a_hint(gateway: Gateway) -> None:
    result = ftgw("fine-tunes", "list", gateway=gateway, key="sk-ftgw-wrong")

    assert result.returncode == 1
    message, hint = short_error(result)
    assert "401" in message and "API key" in message
    assert "ftgw keys create --project default --role admin --local" in hint


def test_stopped_gateway_fails_fast_with_exit_3() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()

    result = ftgw("models", "list", FTGW_BASE_URL=url, FTGW_API_KEY="sk-ftgw-x")

    assert result.returncode == 3
    assert time.monotonic() - started < 8  # no 13 s of retries
    message, hint = short_error(result)
    assert f"Cannot reach the gateway at {url}" in message
    assert "make run" in hint


def test_debug_shows_the_traceback() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"

    result = ftgw("--debug", "models", "list", FTGW_BASE_URL=url, FTGW_API_KEY="sk-ftgw-x")

    assert result.returncode == 3
    assert "Traceback" in result.stderr and "ConnectError" in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("fine-tunes", "get", "-i", "ftjob-nope"), "ftjob-nope"),
        (("files", "get", "-i", "file-nope"), "file-nope"),
        (("models", "get", "-i", "ft:nope"), "nope"),
        (("chat", "create", "-m", "no-such-model", "-g", "user", "hi"), "no-such-model"),
        (("fine-tunes", "create", "-t", "file-nope", "-m", "tiny-smollm2", "--no-follow"), "file-nope"),
    ],
)
def test_a_refused_request_shows_the_servers_message(
    gateway: Gateway, tenant: Tenant, args: tuple[str, ...], words: str
) -> None:
    result = ftgw(*args, gateway=gateway, key=tenant.key)

    assert result.returncode == 1
    message = short_error(result)[0]
    assert words in message
    assert "(404)" in message or "(400)" in message


def test_a_bad_file_is_a_usage_error(gateway: Gateway, tenant: Tenant) -> None:
    result = ftgw("fine-tunes", "create", "-t", "nope.jsonl", "-m", "tiny-smollm2", gateway=gateway, key=tenant.key)

    assert result.returncode == 2
    assert "neither a file on disk nor a file id" in short_error(result)[0]


def test_no_key_is_a_usage_error(gateway: Gateway) -> None:
    result = ftgw("files", "list", gateway=gateway)

    assert result.returncode == 2
    assert "No API key" in short_error(result)[0]


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_with_or_without_v1_and_openai_variables(gateway: Gateway, tenant: Tenant, suffix: str) -> None:
    ftgw_vars = ftgw("models", "list", "--json", FTGW_BASE_URL=gateway.base_url + suffix, FTGW_API_KEY=tenant.key)
    openai_vars = ftgw("models", "list", "--json", OPENAI_BASE_URL=gateway.base_url + suffix, OPENAI_API_KEY=tenant.key)
    flags = ftgw("--base-url", gateway.base_url + suffix, "--api-key", tenant.key, "models", "list", "--json")

    for result in (ftgw_vars, openai_vars, flags):
        assert result.returncode == 0, result.stderr
        assert '"tiny-smollm2"' in result.stdout


def test_usage_errors_exit_2() -> None:
    assert ftgw("fine-tunes", "get").returncode == 2  # missing -i
    assert ftgw("no-such-command").returncode == 2
    assert ftgw("chat", "create", "-m", "x", "-g", "robot", "hi", FTGW_API_KEY="k").returncode == 2
