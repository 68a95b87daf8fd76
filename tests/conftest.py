"""Shared fixtures: a real database per backend (SQLite and PostgreSQL), a real gateway over HTTP, tenants.

Every test that takes ``gateway`` runs once per backend: SQLite in a temp folder, and a PostgreSQL database that
this run creates and drops. ``FTGW_TEST_BACKENDS=sqlite`` narrows the run while developing; CI runs both.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from openai import OpenAI
from openai.types import FileObject

from app.config import Settings
from app.kit.netguard import NetworkPolicy
from app.main import create_app
from app.migrate import upgrade
from tests.loopback import FakeDNS, Receiver, receiving

PG_ADMIN_URL = os.environ.get("FTGW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = [b for b in os.environ.get("FTGW_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
BOOTSTRAP_KEY = "sk-ftgw-test-bootstrap-" + secrets.token_hex(8)
TEST_MAX_UPLOAD_BYTES = 256 * 1024


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The schemathesis figures (cases and answers by status class, per backend), when it ran."""
    from tests.platform.test_schemathesis import TALLY

    for backend, counts in TALLY.items():
        classes = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k != "cases")
        terminalreporter.write_line(f"schemathesis on {backend}: {counts['cases']} cases ({classes})")


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database of each backend, dropped after the run."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'ftgw.db'}"
        upgrade(url)
        yield url
        return
    name = f"ftgw_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = _pg_url(name)
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def new_database(like: str, folder: Path) -> Iterator[str]:
    """An empty (unmigrated) database of the same backend as ``like``, dropped afterwards."""
    if like.startswith("sqlite"):
        folder.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{folder / f'db-{secrets.token_hex(4)}.db'}"
        return
    name = f"ftgw_fresh_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty (unmigrated) database of the same backend as ``database_url``, for migration tests."""
    with new_database(database_url, tmp_path) as url:
        yield url


class ServerThread:
    """uvicorn serving an app on a free loopback port, in a thread of the test process: real HTTP."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test gateway did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@dataclass
class Gateway:
    base_url: str
    settings: Settings
    admin_key: str
    app: FastAPI

    def http(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def openai(self, key: str) -> OpenAI:
        return OpenAI(base_url=f"{self.base_url}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Converted base models, built once: FTGW_TEST_MODEL_CACHE keeps them across runs (SmolLM2 takes ~20 s)."""
    configured = os.environ.get("FTGW_TEST_MODEL_CACHE")
    return Path(configured) if configured else tmp_path_factory.mktemp("models")


def gateway_settings(database_url: str, data_dir: Path, model_cache: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "data_dir": data_dir,
        "database_url": database_url,
        "bootstrap_key": BOOTSTRAP_KEY,
        "max_upload_bytes": TEST_MAX_UPLOAD_BYTES,
        "model_cache_dir": model_cache,
        "test_models": True,
        # The API gateway trains nothing: training tests start their own workers (embedded or `ftgw worker`).
        "embedded_worker": False,
        "worker_lease_seconds": 4,
        "worker_heartbeat_seconds": 0.5,
        "worker_poll_seconds": 0.2,
        "webhook_backoff_seconds": 0.2,
        # A private install: webhooks reach the tests' receivers on loopback. The public-only default has its own
        # gateway in tests/webhooks (strict_gateway).
        "webhook_allow_private_networks": True,
    }
    values.update(overrides)
    return Settings(**values, _env_file=None)  # type: ignore[arg-type]


@contextmanager
def serve(settings: Settings, policy: NetworkPolicy | None = None) -> Iterator[Gateway]:
    """``settings`` served over HTTP. Names resolve through a :class:`FakeDNS` unless ``policy`` says otherwise:
    no test gateway ever asks a real DNS server (a user-given URL, fuzzed by schemathesis say, is resolved)."""
    policy = policy or NetworkPolicy(allow_private=settings.webhook_allow_private_networks, resolver=FakeDNS())
    server = ServerThread(create_app(settings, policy=policy))
    server.start()
    try:
        yield Gateway(server.base_url, settings, BOOTSTRAP_KEY, server.app)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gateway(database_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Gateway]:
    """The shared gateway of API tests: no worker, so jobs stay where the API puts them."""
    with serve(gateway_settings(database_url, tmp_path_factory.mktemp("data"), model_cache)) as gw:
        yield gw


@pytest.fixture(scope="session")
def training_gateway(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[Gateway]:
    """A gateway with its own database and an embedded worker that trains for real."""
    folder = tmp_path_factory.mktemp("training")
    with new_database(database_url, folder) as url:
        upgrade(url)
        with serve(gateway_settings(url, folder / "data", model_cache, embedded_worker=True)) as gw:
            yield gw


@dataclass
class Tenant:
    project_id: str
    key: str
    client: OpenAI


def make_tenant(gateway: Gateway, role: str = "member") -> Tenant:
    with gateway.http(gateway.admin_key) as http:
        project = http.post("/v1/projects", json={"name": f"p-{secrets.token_hex(6)}"})
        project.raise_for_status()
        project_id = project.json()["id"]
        key = http.post(f"/v1/projects/{project_id}/api_keys", json={"name": "test", "role": role})
        key.raise_for_status()
    secret = key.json()["value"]
    return Tenant(project_id, secret, gateway.openai(secret))


@pytest.fixture
def tenant(gateway: Gateway) -> Tenant:
    """A new project with a member key: tests stay independent by living in their own tenant."""
    return make_tenant(gateway)


@pytest.fixture
def other_tenant(gateway: Gateway) -> Tenant:
    return make_tenant(gateway)


@pytest.fixture(scope="session")
def dns() -> FakeDNS:
    """The names tests map for gateways that share it (tests/webhooks); unknown names do not resolve."""
    return FakeDNS()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback."""
    with receiving() as state:
        yield state


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    with receiving() as state:
        yield state


def wait_until_validated(client: OpenAI, file_id: str, timeout: float = 60) -> FileObject:
    """Poll a fine-tune file until its background validation has finished."""
    deadline = time.monotonic() + timeout
    while True:
        file = client.files.retrieve(file_id)
        if file.status != "uploaded":
            return file
        if time.monotonic() > deadline:
            raise AssertionError(f"{file_id} still not validated after {timeout} s")
        time.sleep(0.05)
