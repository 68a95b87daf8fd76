"""Webhooks over real HTTP: a receiver in the test process gets signed job outcomes, failures are retried."""

from __future__ import annotations

import json
import time

from app.webhooks.signing import verify
from tests.conftest import Gateway, Tenant, make_tenant
from tests.loopback import Receiver
from tests.webhooks.conftest import cancelled_job, deliveries_once


def test_signed_delivery_of_a_cancelled_job(hooks_gateway: Gateway, hooks_tenant: Tenant, receiver: Receiver) -> None:
    with hooks_gateway.http(hooks_tenant.key) as http:
        created = http.post("/v1/webhooks", json={"url": receiver.url}).json()
    assert created["secret"].startswith("whsec_")
    assert created["events"] == sorted(
        ["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]
    )

    job_id = cancelled_job(hooks_tenant)

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


def test_failed_deliveries_are_retried_with_backoff(
    hooks_gateway: Gateway, hooks_tenant: Tenant, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    with hooks_gateway.http(hooks_tenant.key) as http:
        hook = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["fine_tuning.job.cancelled"]}).json()
    cancelled_job(hooks_tenant)

    receiver.wait(3)
    ids = {headers["ftgw-webhook-id"] for headers, _ in receiver.calls}
    assert len(ids) == 1  # the same event, retried
    deliveries = deliveries_once(hooks_gateway, hooks_tenant, hook["id"], lambda d: d["status"] == "delivered")
    assert deliveries[0]["attempts"] == 3
    assert deliveries[0]["last_error"] is None


def test_webhooks_only_get_their_events_and_stay_in_their_project(
    hooks_gateway: Gateway, hooks_tenant: Tenant, receiver: Receiver
) -> None:
    other_tenant = make_tenant(hooks_gateway)
    with hooks_gateway.http(hooks_tenant.key) as http:
        only_success = http.post(
            "/v1/webhooks", json={"url": receiver.url, "events": ["fine_tuning.job.succeeded"]}
        ).json()
        bad_event = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["job.exploded"]})
        bad_url = http.post("/v1/webhooks", json={"url": "not a url"})
    assert bad_event.status_code == 400
    assert bad_url.status_code == 400
    cancelled_job(hooks_tenant)
    with hooks_gateway.http(other_tenant.key) as http:
        assert http.get("/v1/webhooks").json()["data"] == []
        assert http.delete(f"/v1/webhooks/{only_success['id']}").status_code == 404
    time.sleep(1.0)  # a dispatcher round: nothing may arrive
    assert receiver.calls == []
    with hooks_gateway.http(hooks_tenant.key) as http:
        assert http.delete(f"/v1/webhooks/{only_success['id']}").json()["deleted"] is True
        assert http.get("/v1/webhooks").json()["data"] == []
