"""`ftgw serve` as an operator runs it: migrations applied, first admin key bootstrapped, uploads streamed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from openai import OpenAI

from tests.conftest import new_database

FTGW = [sys.executable, "-m", "app.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(data_dir: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[str], list[str]]]:
    port = _free_port()
    environment = {**os.environ, "FTGW_DATA_DIR": str(data_dir), "FTGW_PORT": str(port), **env}
    environment.pop("FTGW_BOOTSTRAP_KEY", None) if "FTGW_BOOTSTRAP_KEY" not in env else None
    if "FTGW_DATABASE_URL" not in env:
        environment.pop("FTGW_DATABASE_URL", None)
    process = subprocess.Popen(
        [*FTGW, "serve"], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Application startup complete" in line:
                break
        assert httpx.get(f"{base_url}/health").status_code == 200, "".join(lines)
        yield base_url, process, lines
    finally:
        process.terminate()
        process.wait(timeout=30)


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match
    return int(match.group(1))


def test_first_start_prints_a_working_admin_key_once(tmp_path: Path) -> None:
    with serving(tmp_path) as (base_url, _, lines):
        output = "".join(lines)
        keys = re.findall(r"sk-ftgw-[A-Za-z0-9]{40}", output)
        assert len(keys) == 1, output
        client = OpenAI(base_url=f"{base_url}/v1", api_key=keys[0], max_retries=0)
        assert client.files.list().data == []
        assert httpx.get(f"{base_url}/ready").json() == {"status": "ready"}
    assert (tmp_path / "ftgw.db").is_file()

    with serving(tmp_path) as (_, _, lines):
        assert not re.findall(r"sk-ftgw-[A-Za-z0-9]{40}", "".join(lines))


def test_bootstrap_key_from_the_environment_and_uploads_stream(tmp_path: Path) -> None:
    key = "sk-ftgw-operator-chosen-bootstrap-key"
    with serving(tmp_path, FTGW_BOOTSTRAP_KEY=key) as (base_url, process, lines):
        assert key not in "".join(lines)
        client = OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=120)
        before = _peak_rss_kib(process.pid)
        size = 96 * 1024 * 1024

        def chunks() -> Iterator[bytes]:
            block = b'{"prompt": "p", "completion": " c"}\n' * 1800
            sent = 0
            while sent < size:
                yield block
                sent += len(block)

        boundary = "ftgwstream"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
        ).encode()

        def body() -> Iterator[bytes]:
            yield head
            yield from chunks()
            yield f"\r\n--{boundary}--\r\n".encode()

        response = httpx.post(
            f"{base_url}/v1/files",
            content=body(),
            headers={
                "Authorization": f"Bearer {key}",
                "content-type": f"multipart/form-data; boundary={boundary}",
            },
            timeout=120,
        )
        assert response.status_code == 200, response.text
        uploaded = response.json()
        assert uploaded["bytes"] >= size
        grown_mib = (_peak_rss_kib(process.pid) - before) / 1024
        assert grown_mib < 32, f"server memory grew {grown_mib:.0f} MiB for a 96 MiB upload"
        assert client.files.retrieve(uploaded["id"]).bytes == uploaded["bytes"]


def test_migrate_never_prints_the_database_password(database_url: str, tmp_path: Path) -> None:
    with new_database(database_url, tmp_path / "db") as url:
        # PostgreSQL's trust auth here accepts any password, so a URL carrying one still works.
        url = url.replace("postgresql://postgres@", "postgresql://postgres:hunter2-secret@")
        environment = {**os.environ, "FTGW_DATABASE_URL": url, "FTGW_DATA_DIR": str(tmp_path)}
        done = subprocess.run([*FTGW, "migrate"], env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shown = done.stdout.split("database at head: ", 1)[1].strip()
    assert "hunter2-secret" not in done.stdout + done.stderr
    if url.startswith("postgresql"):
        assert shown == url.replace("hunter2-secret", "***")
    else:
        assert shown == url  # nothing to hide in a SQLite path
