"""Webhook fixtures: gateways with their own databases and address policies, loopback receivers, a fake DNS.

``hooks_gateway`` is a private install (``webhook_allow_private_networks``), so it delivers to receivers on loopback;
``strict_gateway`` has the default policy (public addresses only). Both resolve names with ``FakeDNS``, which knows
only the names a test gives it: no test asks a real DNS server, and no test connects anywhere but loopback.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.kit.netguard import NetworkPolicy
from app.migrate import upgrade
from tests.conftest import Gateway, Tenant, gateway_settings, make_tenant, new_database, serve, wait_until_validated
from tests.datasets.factories import chat
from tests.loopback import FakeDNS


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback socket that listens and never accepts: a connection to it would wait in its backlog."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


def connections_to(sock: socket.socket) -> int:
    """How many connections reached a ``listener`` (accepting them now)."""
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def _gateway(
    database_url: str, folder: Path, model_cache: Path, policy: NetworkPolicy, **settings: Any
) -> Iterator[Gateway]:
    # Its own database: a dispatcher under another policy must never claim these deliveries.
    with new_database(database_url, folder) as url:
        upgrade(url)
        with serve(gateway_settings(url, folder / "data", model_cache, **settings), policy) as gateway:
            yield gateway


@pytest.fixture(scope="session")
def hooks_gateway(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Path, dns: FakeDNS
) -> Iterator[Gateway]:
    """A private install: webhooks may reach loopback, where the tests' receivers are."""
    folder = tmp_path_factory.mktemp("hooks")
    yield from _gateway(
        database_url,
        folder,
        model_cache,
        NetworkPolicy(allow_private=True, resolver=dns),
        webhook_allow_private_networks=True,
        webhook_timeout_seconds=1,
    )


@pytest.fixture(scope="session")
def strict_gateway(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Path, dns: FakeDNS
) -> Iterator[Gateway]:
    """The default policy (public addresses only), one try per delivery."""
    folder = tmp_path_factory.mktemp("strict")
    yield from _gateway(database_url, folder, model_cache, NetworkPolicy(resolver=dns), webhook_max_attempts=1)


@pytest.fixture
def hooks_tenant(hooks_gateway: Gateway) -> Tenant:
    return make_tenant(hooks_gateway)


@pytest.fixture
def strict_tenant(strict_gateway: Gateway) -> Tenant:
    return make_tenant(strict_gateway)


def cancelled_job(tenant: Tenant) -> str:
    """A job created and cancelled at once: its outcome is what the project's webhooks receive."""
    rows = b"".join(json.dumps(chat(i)).encode() + b"\n" for i in range(10))
    file = tenant.client.files.create(file=("t.jsonl", rows), purpose="fine-tune")
    wait_until_validated(tenant.client, file.id)
    job_id = tenant.client.fine_tuning.jobs.create(model="tiny-smollm2", training_file=file.id).id
    tenant.client.fine_tuning.jobs.cancel(job_id)
    return job_id


def deliveries_once(
    gateway: Gateway, tenant: Tenant, hook_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 15
) -> list[dict[str, Any]]:
    """The hook's deliveries, as soon as the newest one satisfies ``done``."""
    with gateway.http(tenant.key) as http:
        deadline = time.monotonic() + timeout
        while True:
            deliveries: list[dict[str, Any]] = http.get(f"/v1/webhooks/{hook_id}/deliveries").json()["data"]
            if deliveries and done(deliveries[0]):
                return deliveries
            assert time.monotonic() < deadline, f"deliveries of {hook_id} never got there: {deliveries}"
            time.sleep(0.05)
