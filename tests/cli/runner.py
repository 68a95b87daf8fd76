"""Running the real ``ftgw`` as a user does: a subprocess of this checkout (``python -m app.cli``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import Gateway

ROOT = Path(__file__).resolve().parents[2]


def cli_env(gateway: Gateway | None = None, key: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: this checkout first on the path, no FTGW/OPENAI variables but ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FTGW_", "OPENAI_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("COLUMNS", "200")
    if gateway is not None:
        env["FTGW_BASE_URL"] = gateway.base_url
    if key is not None:
        env["FTGW_API_KEY"] = key
    env.update(extra)
    return env


def ftgw(
    *args: str,
    gateway: Gateway | None = None,
    key: str | None = None,
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=cli_env(gateway, key, **env),
        capture_output=True,
        text=True,
        input=input,
        cwd=cwd,
        timeout=timeout,
    )


def popen(*args: str, gateway: Gateway, key: str) -> subprocess.Popen[str]:
    """The CLI running on, as a user's foreground command: Ctrl-C (SIGINT) reaches it. A child inherits its
    parent's ignored and blocked signals: a test run started in the background of a non-interactive shell ignores
    SIGINT, so the CLI would never see the test's Ctrl-C."""
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        env=cli_env(gateway, key),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def short_error(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The error lines; fails unless they are one or two and hold no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("Error: "), result.stderr
    return lines
