"""Webhooks over real HTTP: a receiver in the test process gets signed job outcomes, failures are retried."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.webhooks.signing import verify
from tests.conftest import Gateway, Tenant, wait_until_validated
from tests.datasets.factories import chat


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def wait(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < n:
            assert time.monotonic() < deadline, f"{len(self.calls)} of {n} webhook calls arrived"
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            state.calls.append((dict(self.headers.items()), body))
            failing = len(state.calls) <= state.fail_first
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()


def _job(tenant: Tenant) -> str:
    rows = b"".join(json.dumps(chat(i)).encode() + b"\n" for i in range(10))
    file = tenant.client.files.create(file=("t.jsonl", rows), purpose="fine-tune")
    wait_until_validated(tenant.client, file.id)
    return tenant.client.fine_tuning.jobs.create(model="tiny-smollm2", training_file=file.id).id


def test_signed_delivery_of_a_cancelled_job(gateway: Gateway, tenant: Tenant, receiver: Receiver) -> None:
    with gateway.http(tenant.key) as http:
        created = http.post("/v1/webhooks", json={"url": receiver.url}).json()
    assert created["secret"].startswith("whsec_")
    assert created["events"] == sorted(
        ["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]
    )
    job_id = _job(tenant)

    tenant.client.fine_tuning.jobs.cancel(job_id)

    receiver.wait(1)
    headers, body = receiver.calls[0]
    payload = json.loads(body)
    assert payload["type"] == "fine_tuning.job.cancelled"
    assert payload["data"]["id"] == job_id
    assert headers["ftgw-webhook-id"] == payload["id"]
    assert verify(
        created["secret"],
        headers["ftgw-webhook-id"],
        int(headers["ftgw-webhook-timestamp"]),
        body,
        headers["ftgw-signature"],
    )
    assert not verify(
        "whsec_wrong",
        headers["ftgw-webhook-id"],
        int(headers["ftgw-webhook-timestamp"]),
        body,
        headers["ftgw-signature"],
    )


def test_failed_deliveries_are_retried_with_backoff(gateway: Gateway, tenant: Tenant, receiver: Receiver) -> None:
    receiver.fail_first = 2
    with gateway.http(tenant.key) as http:
        hook = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["fine_tuning.job.cancelled"]}).json()
    tenant.client.fine_tuning.jobs.cancel(_job(tenant))

    receiver.wait(3)
    ids = {headers["ftgw-webhook-id"] for headers, _ in receiver.calls}
    assert len(ids) == 1  # the same event, retried
    with gateway.http(tenant.key) as http:
        deadline = time.monotonic() + 10
        while True:
            deliveries = http.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
            if deliveries[0]["status"] == "delivered" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert deliveries[0]["status"] == "delivered"
    assert deliveries[0]["attempts"] == 3


def test_webhooks_only_get_their_events_and_stay_in_their_project(
    gateway: Gateway, tenant: Tenant, other_tenant: Tenant, receiver: Receiver
) -> None:
    with gateway.http(tenant.key) as http:
        only_success = http.post(
            "/v1/webhooks", json={"url": receiver.url, "events": ["fine_tuning.job.succeeded"]}
        ).json()
        bad_event = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["job.exploded"]})
        bad_url = http.post("/v1/webhooks", json={"url": "not a url"})
    assert bad_event.status_code == 400
    assert bad_url.status_code == 400
    tenant.client.fine_tuning.jobs.cancel(_job(tenant))
    with gateway.http(other_tenant.key) as http:
        assert http.get("/v1/webhooks").json()["data"] == []
        assert http.delete(f"/v1/webhooks/{only_success['id']}").status_code == 404
    time.sleep(1.0)  # a dispatcher round: nothing may arrive
    assert receiver.calls == []
    with gateway.http(tenant.key) as http:
        assert http.delete(f"/v1/webhooks/{only_success['id']}").json()["deleted"] is True
        assert http.get("/v1/webhooks").json()["data"] == []
