"""Two API replicas and a standalone worker, as processes on PostgreSQL and Redis: one limit, one truth.

Every process is a real ``ftgw serve`` or ``ftgw worker`` on loopback, sharing a fresh PostgreSQL database, a
data folder and Redis (under a key prefix of this module's own). Caches are kept for a minute
(``FTGW_AUTH_CACHE_SECONDS``, ``FTGW_ROUTE_CACHE_SECONDS``) and usage written every minute
(``FTGW_USAGE_FLUSH_SECONDS``), so a change seen on the other replica within a second is the broadcast's doing.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from app.migrate import upgrade
from tests.conftest import BOOTSTRAP_KEY, PG_ADMIN_URL, new_database
from tests.loopback import free_port
from tests.shared.conftest import REDIS_URL

FTGW = [sys.executable, "-m", "app.cli"]
CACHE_SECONDS = "60"
TINY, SMOLLM2 = "tiny-smollm2", "smollm2-135m-instruct"


@dataclass
class Topology:
    replicas: tuple[str, str]  # base URLs of replica A and replica B
    database_url: str
    prefix: str

    def http(self, replica: int, key: str = BOOTSTRAP_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.replicas[replica], headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([*FTGW, *command.split()], env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not start:\n{log.read_text()}")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Topology]:
    folder = tmp_path_factory.mktemp("replicas")
    prefix = f"ftgw-test-{secrets.token_hex(6)}:"
    processes: list[subprocess.Popen[bytes]] = []
    with new_database(PG_ADMIN_URL, folder) as url:
        upgrade(url)
        env = {
            **os.environ,
            "FTGW_ENV": "test",
            "FTGW_DATABASE_URL": url,
            "FTGW_DATA_DIR": str(folder / "data"),
            "FTGW_MODEL_CACHE_DIR": str(model_cache),
            "FTGW_TEST_MODELS": "true",
            "FTGW_BOOTSTRAP_KEY": BOOTSTRAP_KEY,
            "FTGW_EMBEDDED_WORKER": "false",
            "FTGW_REDIS_URL": REDIS_URL,
            "FTGW_REDIS_PREFIX": prefix,
            "FTGW_AUTH_CACHE_SECONDS": CACHE_SECONDS,
            "FTGW_ROUTE_CACHE_SECONDS": CACHE_SECONDS,
            "FTGW_USAGE_FLUSH_SECONDS": CACHE_SECONDS,
            "FTGW_LOG_LEVEL": "warning",
        }
        try:
            urls = []
            for name in ("a", "b"):
                port = free_port()
                log = folder / f"replica-{name}.log"
                process = _start("serve --no-migrate", {**env, "FTGW_PORT": str(port)}, log)
                processes.append(process)
                urls.append(f"http://127.0.0.1:{port}")
                _wait_healthy(urls[-1], process, log)  # one at a time: the first bootstraps the admin key
            processes.append(_start("worker", env, folder / "worker.log"))
            with redis.Redis.from_url(REDIS_URL) as client:
                deadline = time.monotonic() + 120
                # The worker listens too: a usage read anywhere includes its eval runs.
                while dict(client.pubsub_numsub(f"{prefix}broadcast")).get(f"{prefix}broadcast".encode()) != 3:
                    assert processes[-1].poll() is None, (folder / "worker.log").read_text()
                    assert time.monotonic() < deadline, "the worker did not subscribe to broadcasts"
                    time.sleep(0.1)
            yield Topology((urls[0], urls[1]), url, prefix)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            with redis.Redis.from_url(REDIS_URL) as client:
                keys = list(client.scan_iter(match=f"{prefix}*"))
                if keys:
                    client.delete(*keys)


def new_key(topology: Topology, **limits: int) -> tuple[str, str, str]:
    """A project of its own and a member key in it, made through replica A: (project id, key id, secret)."""
    with topology.http(0) as admin:
        project = admin.post("/v1/projects", json={"name": f"p-{secrets.token_hex(6)}"})
        project.raise_for_status()
        project_id = project.json()["id"]
        key = admin.post(f"/v1/projects/{project_id}/api_keys", json={"name": "k", "role": "member", **limits})
        key.raise_for_status()
    return project_id, key.json()["id"], key.json()["value"]


def chat(client: httpx.Client, model: str) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0},
    )


def seconds_until(check: object, limit: float = 5.0) -> float:
    """Seconds from now until ``check()`` holds (polled back to back), failing after ``limit``."""
    assert callable(check)
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < limit, f"not within {limit} s"
    return time.monotonic() - start


def test_a_key_limited_to_20_a_minute_gets_20_across_both_replicas(topology: Topology) -> None:
    _, _, secret = new_key(topology, max_requests_per_minute=20)
    with topology.http(0, secret) as a, topology.http(1, secret) as b:
        statuses = [chat((a, b)[i % 2], TINY).status_code for i in range(30)]
    assert statuses.count(200) == 20, statuses
    assert statuses.count(429) == 10, statuses


def test_a_revocation_on_one_replica_is_401_on_the_other_within_a_second(topology: Topology) -> None:
    project_id, key_id, secret = new_key(topology)
    _, quiet_id, quiet = new_key(topology)
    with topology.http(1, secret) as b, topology.http(1, quiet) as b_quiet, topology.http(0) as admin:
        assert b.get("/v1/models").status_code == 200  # B now trusts the key for a minute
        assert b_quiet.get("/v1/models").status_code == 200
        revoked = admin.delete(f"/v1/projects/{project_id}/api_keys/{key_id}")
        assert revoked.status_code == 200, revoked.text
        assert seconds_until(lambda: b.get("/v1/models").status_code == 401) < 1
        # The control: a key revoked behind the gateway's back (no announcement) is still trusted by B's cache,
        # so only the broadcast explains the revocation above.
        with psycopg.connect(topology.database_url, autocommit=True) as db:
            db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", (quiet_id,))
        time.sleep(1.5)
        assert b_quiet.get("/v1/models").status_code == 200


def test_an_alias_promoted_on_one_replica_routes_on_the_other_within_a_second(topology: Topology) -> None:
    _, _, secret = new_key(topology)
    name = f"bot-{secrets.token_hex(3)}"
    with topology.http(0, secret) as a, topology.http(1, secret) as b:
        assert a.post("/v1/registry/aliases", json={"name": name}).status_code == 200
        first = a.post(f"/v1/registry/aliases/{name}/versions", json={"targets": [{"model": TINY}]})
        assert first.status_code == 200, first.text
        second = a.post(
            f"/v1/registry/aliases/{name}/versions", json={"targets": [{"model": SMOLLM2}], "activate": False}
        )
        assert second.status_code == 200, second.text
        assert chat(b, SMOLLM2).status_code == 200  # both models loaded on B: only routing is timed below
        answered = chat(b, name)
        assert (answered.status_code, answered.headers["x-ftgw-model"]) == (200, TINY)  # B caches version 1

        def routes_to(model: str) -> bool:
            response = chat(b, name)
            assert response.status_code == 200, response.text
            return response.headers["x-ftgw-model"] == model and response.json()["model"] == model

        assert a.post(f"/v1/registry/aliases/{name}/promote", json={"version": 2}).status_code == 200
        assert seconds_until(lambda: routes_to(SMOLLM2)) < 1
        assert a.post(f"/v1/registry/aliases/{name}/rollback").status_code == 200
        assert seconds_until(lambda: routes_to(TINY)) < 1


def test_usage_read_on_one_replica_counts_requests_the_other_answered(topology: Topology) -> None:
    _, key_id, secret = new_key(topology)
    started = int(time.time()) - 60
    with topology.http(0, secret) as a, topology.http(1, secret) as b:
        answers = [chat(b, TINY) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [200] * 3
        # B writes usage once a minute: A's read asks every process to write what it holds first.
        usage = a.get("/v1/usage/completions", params={"start_time": started, "group_by": ["api_key_id"]})
    assert usage.status_code == 200, usage.text
    results = [r for bucket in usage.json()["data"] for r in bucket["results"] if r["api_key_id"] == key_id]
    assert sum(r["num_model_requests"] for r in results) == 3
    assert sum(r["input_tokens"] for r in results) == sum(x.json()["usage"]["prompt_tokens"] for x in answers)
    assert sum(r["output_tokens"] for r in results) == sum(x.json()["usage"]["completion_tokens"] for x in answers)
