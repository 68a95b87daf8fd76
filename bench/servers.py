"""Processes for the benchmarks: start a server in its own session, wait until it answers, kill its whole group.

Shared by ``routed_inference.py`` (nginx, LiteLLM, ftgw), ``local_inference.py --http`` (ftgw) and the benchmarks
that build on them; also the temporary RUN_DIR their logs go to.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class BenchError(RuntimeError):
    """A server did not start or answer as expected; the message says why."""


@dataclass(frozen=True)
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def started(name: str, args: list[str], run_dir: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run ``args`` in its own session with output to RUN_DIR/NAME.log; kill its whole process group on exit."""
    log = run_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    try:
        yield Server(name, process, log)
    finally:
        # A second Ctrl-C must not cut the clean-up short: hold the signals until the group is gone.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            _kill_group(process)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


@contextmanager
def temporary_run_dir(prefix: str, keep: bool) -> Iterator[Path]:
    """A fresh temporary folder for a run's logs, printed as RUN_DIR; removed on exit unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    print(f"RUN_DIR {path}", flush=True)
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            # The leader is gone; children that outlive it still hold the group: one more round kills them.
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
        break


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_ready(server: Server, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check`` until it holds; fail with the log's tail if the server exits or the time runs out."""
    deadline = time.monotonic() + timeout
    problem = f"not ready after {timeout:.0f} s"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            problem = f"exited with status {server.process.returncode}"
            break
        if check():
            return
        time.sleep(0.2)
    tail = server.log.read_text(errors="replace")[-3000:]
    raise BenchError(f"{server.name} {problem}\n--- {server.log} (last 3000 chars) ---\n{tail}")


def ftgw_command() -> list[str]:
    """``.venv/bin/ftgw``, or the same CLI through the venv's interpreter where the entry point is missing."""
    venv_bin = REPO / ".venv" / "bin"
    if (venv_bin / "ftgw").exists():
        return [str(venv_bin / "ftgw")]
    python = venv_bin / "python" if (venv_bin / "python").exists() else Path(sys.executable)
    return [str(python), "-m", "app.cli"]


@contextmanager
def served_gateway(cache: Path, env: dict[str, str] | None = None, ready_timeout: float = 180) -> Iterator[Gateway]:
    """``ftgw serve`` on a free port, a fresh data folder and the converted models in ``cache``, with its embedded
    worker unless ``env`` says otherwise; ``env`` overrides the rest of the gateway's settings."""
    key = "sk-bench-" + secrets.token_hex(16)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="ftgw-bench-") as data:
        settings = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FTGW_")},
            "PYTHONPATH": str(REPO),
            "FTGW_DATA_DIR": data,
            "FTGW_MODEL_CACHE_DIR": str(cache),
            "FTGW_PORT": str(port),
            "FTGW_BOOTSTRAP_KEY": key,
            "FTGW_LOG_LEVEL": "warning",
            **(env or {}),
        }
        base = f"http://127.0.0.1:{port}"
        with started("ftgw", [*ftgw_command(), "serve"], Path(data), settings) as server:
            wait_ready(server, lambda: http_status(f"{base}/health") == 200, ready_timeout)
            yield Gateway(f"{base}/v1", key, server.log)


@dataclass(frozen=True)
class Gateway:
    base_url: str  # with /v1
    key: str  # its admin key
    log: Path


def fine_tuned(client: Any, rows: list[dict[str, Any]], model: str, method: dict[str, Any] | None = None) -> str:
    """Upload ``rows`` as a fine-tuning file, train ``model`` on them through the gateway ``client`` (an
    ``openai.OpenAI``) and return the fine-tuned model's id once the job has succeeded."""
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    file = client.files.create(file=("train.jsonl", data), purpose="fine-tune")
    while client.files.retrieve(file.id).status not in ("processed", "error"):
        time.sleep(0.2)
    job = client.fine_tuning.jobs.create(model=model, training_file=file.id, **({"method": method} if method else {}))
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(1)
        job = client.fine_tuning.jobs.retrieve(job.id)
    if job.status != "succeeded" or job.fine_tuned_model is None:
        raise SystemExit(f"fine-tuning job {job.id} {job.status}: {job.error}")
    return str(job.fine_tuned_model)
