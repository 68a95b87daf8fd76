"""Work stops when nobody waits: a client that disconnects cancels its generation, and `ftgw serve` drains in
a bounded time on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.providers.local.engine import Engine
from tests.conftest import BOOTSTRAP_KEY, Gateway, Tenant
from tests.platform.test_serve import serving

MODEL = "tiny-smollm2"
LONG_CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me everything."}], "n": 4}


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def local_engine(gateway: Gateway, tenant: Tenant) -> Engine:
    tenant.client.completions.create(model=MODEL, prompt="warm up", max_tokens=1)  # the engine exists from now
    engine: Engine = gateway.app.state.inference.backends.get("local").engine()
    return engine


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_disconnects_cancels_its_generation(gateway: Gateway, tenant: Tenant, stream: bool) -> None:
    engine = local_engine(gateway, tenant)
    assert wait_until(lambda: engine.active() == 0, 5)
    # Up to the model's whole context for four choices: a minute of CPU for nobody, unless it is cancelled.
    body = json.dumps({**LONG_CHAT, "max_tokens": 100_000, "stream": stream}).encode()
    host, port = gateway.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {tenant.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert wait_until(lambda: engine.running() == 4, 30), "the four choices never ran"
        started = engine.decode_steps
        assert wait_until(lambda: engine.decode_steps > started + 5, 30)
    # The connection is closed: the sequences go, and the decode steps stop.
    assert wait_until(lambda: engine.active() == 0, 5), f"{engine.active()} sequences still held"
    steps = engine.decode_steps
    time.sleep(0.5)
    assert engine.decode_steps == steps
    assert steps - started < 1000  # far from the ~2,000 steps the whole context takes
    # The gateway serves on.
    done = tenant.client.chat.completions.create(model=MODEL, messages=LONG_CHAT["messages"], max_tokens=2)  # type: ignore[arg-type]
    assert done.usage is not None and done.usage.completion_tokens == 2


def test_sigterm_drains_within_the_grace_period(tmp_path: Path, fresh_database_url: str, model_cache: Path) -> None:
    grace = 2
    env = {
        # Its own database (`serve` migrates it): an embedded worker on the shared one would claim other tests' jobs.
        "FTGW_DATABASE_URL": fresh_database_url,
        "FTGW_BOOTSTRAP_KEY": BOOTSTRAP_KEY,
        "FTGW_TEST_MODELS": "true",
        "FTGW_MODEL_CACHE_DIR": str(model_cache),
        "FTGW_SHUTDOWN_GRACE_SECONDS": str(grace),
    }
    outcome: list[httpx.Response | Exception] = []

    def long_request(base_url: str) -> None:
        # No max_tokens: FTGW_DEFAULT_MAX_TOKENS (1,024) for each of the four choices, far longer than the grace.
        try:
            outcome.append(
                httpx.post(
                    f"{base_url}/v1/chat/completions",
                    json=LONG_CHAT,
                    headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"},
                    timeout=120,
                )
            )
        except httpx.HTTPError as error:
            outcome.append(error)

    with serving(tmp_path, **env) as (base_url, process, lines):
        warm = httpx.post(
            f"{base_url}/v1/completions",
            json={"model": MODEL, "prompt": "warm up", "max_tokens": 1},
            headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"},
            timeout=60,
        )
        assert warm.status_code == 200, warm.text
        client = threading.Thread(target=long_request, args=(base_url,))
        client.start()
        time.sleep(1.5)  # generating by now (the model is loaded)
        assert client.is_alive() and not outcome
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=grace + 30)
        took = time.monotonic() - signalled
        client.join(timeout=10)
        output = "".join(lines) + (process.stdout.read() if process.stdout else "")
    assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert took < grace + 5, f"exited {took:.1f} s after SIGTERM (grace {grace} s)"
    assert took >= grace - 0.5, "the request in flight was not given its grace period"
    # The caller cut off by the shutdown is told to retry (the SDK does, on a 503), and nothing failed as a bug.
    assert outcome and isinstance(outcome[0], httpx.Response), outcome
    assert outcome[0].status_code == 503 and outcome[0].json()["error"]["code"] == "shutting_down"
    assert "Traceback" not in output, output
