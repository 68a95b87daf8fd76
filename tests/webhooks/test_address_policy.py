"""Webhooks reach public addresses only: refused at registration, re-checked at each try, no redirects, no oracle.

Every URL here is either a literal (nothing to resolve) or a name only ``FakeDNS`` knows; the only connections any
test allows are to loopback receivers on the private-install gateway.
"""

from __future__ import annotations

import socket

import pytest

from app.webhooks.service import CONNECTION_FAILED
from tests.conftest import Gateway, Tenant
from tests.loopback import FakeDNS, Receiver
from tests.webhooks.conftest import cancelled_job, connections_to, deliveries_once

# (URL with {port}, what the refusal must name). Loopback in every spelling a resolver or URL parser accepts.
REFUSED = [
    ("http://127.0.0.1:{port}/hook", "loopback address 127.0.0.1"),
    ("http://127.1:{port}/hook", "loopback address 127.0.0.1"),
    ("http://2130706433:{port}/hook", "loopback address 127.0.0.1"),
    ("http://0x7f000001:{port}/hook", "loopback address 127.0.0.1"),
    ("http://0177.0.0.1:{port}/hook", "loopback address 127.0.0.1"),
    ("http://0x7f.0.0.1:{port}/hook", "loopback address 127.0.0.1"),
    ("http://127.0.0.1.:{port}/hook", "loopback address 127.0.0.1"),
    ("http://127.255.255.254:{port}/hook", "loopback address 127.255.255.254"),
    ("http://[::1]:{port}/hook", "loopback address ::1"),
    ("http://[::ffff:127.0.0.1]:{port}/hook", "loopback address 127.0.0.1"),
    ("http://[0:0:0:0:0:ffff:7f00:1]:{port}/hook", "loopback address 127.0.0.1"),
    ("http://[64:ff9b::127.0.0.1]:{port}/hook", "loopback address 127.0.0.1"),
    ("http://[2002:7f00:1::]:{port}/hook", "loopback address 127.0.0.1"),
    ("http://[::127.0.0.1]:{port}/hook", "IPv4-compatible"),
    ("http://0.0.0.0:{port}/hook", "unspecified address 0.0.0.0"),
    ("http://0:{port}/hook", "unspecified address 0.0.0.0"),
    ("http://[::]:{port}/hook", "unspecified address ::"),
    ("http://localhost:{port}/hook", "local-only name"),
    ("http://LOCALHOST.:{port}/hook", "local-only name"),
    ("http://api.localhost:{port}/hook", "local-only name"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata name"),
    ("http://169.254.169.254/latest/meta-data/", "link-local address 169.254.169.254"),
    ("http://[::ffff:169.254.169.254]/latest/meta-data/", "link-local address 169.254.169.254"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata address fd00:ec2::254"),
    ("http://100.100.100.200/latest/meta-data/", "cloud metadata address 100.100.100.200"),
    ("http://10.0.0.1/", "private address 10.0.0.1"),
    ("http://172.31.255.1/", "private address 172.31.255.1"),
    ("http://192.168.1.1/", "private address 192.168.1.1"),
    ("http://100.64.0.1/", "shared (CGNAT) address 100.64.0.1"),
    ("http://[fc00::1]/", "unique-local address fc00::1"),
    ("http://[fe80::1]/", "link-local address fe80::1"),
    ("http://224.0.0.1/", "multicast address 224.0.0.1"),
    ("http://255.255.255.255/", "reserved address 255.255.255.255"),
]


@pytest.mark.parametrize(("template", "why"), REFUSED, ids=[t for t, _ in REFUSED])
def test_local_private_and_metadata_urls_are_refused_at_registration(
    strict_gateway: Gateway, strict_tenant: Tenant, dns: FakeDNS, listener: socket.socket, template: str, why: str
) -> None:
    asked = len(dns.asked)
    url = template.format(port=listener.getsockname()[1])

    with strict_gateway.http(strict_tenant.key) as http:
        answer = http.post("/v1/webhooks", json={"url": url})
        hooks = http.get("/v1/webhooks").json()["data"]

    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "url"
    assert error["type"] == "invalid_request_error"
    assert why in error["message"]
    assert hooks == []
    assert dns.asked[asked:] == []  # literals and local-only names are never resolved
    assert connections_to(listener) == 0


def test_the_gateways_own_api_is_refused(strict_gateway: Gateway, strict_tenant: Tenant) -> None:
    with strict_gateway.http(strict_tenant.key) as http:
        answer = http.post("/v1/webhooks", json={"url": f"{strict_gateway.base_url}/v1/projects"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "url"
    assert "loopback" in answer.json()["error"]["message"]


def test_a_name_is_refused_if_any_address_is_not_public_or_it_does_not_resolve(
    strict_gateway: Gateway, strict_tenant: Tenant, dns: FakeDNS
) -> None:
    dns.names["split.test"] = ["8.8.8.8", "10.0.0.7"]
    dns.names["intranet.test"] = ["192.168.10.20"]
    dns.names["v6.test"] = ["2606:4700:4700::1111", "fd12:3456::1"]
    cases = {
        "http://split.test/hook": "url host split.test resolves to a private address 10.0.0.7",
        "http://intranet.test/hook": "url host intranet.test resolves to a private address 192.168.10.20",
        "https://v6.test/hook": "url host v6.test resolves to a unique-local address fd12:3456::1",
        "http://nowhere.test/hook": "url host nowhere.test does not resolve",
    }
    with strict_gateway.http(strict_tenant.key) as http:
        for url, message in cases.items():
            answer = http.post("/v1/webhooks", json={"url": url})
            assert answer.status_code == 400, url
            assert answer.json()["error"]["param"] == "url"
            assert answer.json()["error"]["message"] == message


def test_credentials_and_other_schemes_are_refused(strict_gateway: Gateway, strict_tenant: Tenant) -> None:
    with strict_gateway.http(strict_tenant.key) as http:
        credentials = http.post("/v1/webhooks", json={"url": "https://user:secret@8.8.8.8/hook"})
        username = http.post("/v1/webhooks", json={"url": "https://user@8.8.8.8/hook"})
        schemes = [http.post("/v1/webhooks", json={"url": f"{scheme}://8.8.8.8/hook"}) for scheme in ("ftp", "file")]
    for answer in (credentials, username):
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == "url"
        assert "credentials" in answer.json()["error"]["message"]
    for answer in schemes:
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == "url"


def test_a_name_that_rebinds_to_loopback_after_registration_reaches_nothing(
    strict_gateway: Gateway, strict_tenant: Tenant, dns: FakeDNS, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    dns.names["rebind.test"] = ["8.8.8.8"]  # public when registered (registering connects to nothing)
    with strict_gateway.http(strict_tenant.key) as http:
        created = http.post("/v1/webhooks", json={"url": f"http://rebind.test:{port}/hook"})
    assert created.status_code == 200, created.text
    dns.names["rebind.test"] = ["127.0.0.1"]  # … and loopback by the time a delivery is tried
    asked = len(dns.asked)

    cancelled_job(strict_tenant)

    deliveries = deliveries_once(strict_gateway, strict_tenant, created.json()["id"], lambda d: d["status"] == "failed")
    assert deliveries[0]["attempts"] == 1
    assert deliveries[0]["last_error"] == CONNECTION_FAILED
    assert "rebind.test" in dns.asked[asked:]  # checked at delivery time, against a fresh answer
    assert connections_to(listener) == 0


def test_a_name_is_delivered_to_its_checked_address_under_its_own_host_header(
    hooks_gateway: Gateway, hooks_tenant: Tenant, dns: FakeDNS, receiver: Receiver
) -> None:
    dns.names["receiver.test"] = ["127.0.0.1"]
    with hooks_gateway.http(hooks_tenant.key) as http:
        created = http.post("/v1/webhooks", json={"url": f"http://receiver.test:{receiver.port}/hook"})
    assert created.status_code == 200, created.text

    cancelled_job(hooks_tenant)

    receiver.wait(1)
    headers, _ = receiver.calls[0]
    assert headers["Host"] == f"receiver.test:{receiver.port}"


def test_connection_failures_all_read_the_same_and_statuses_say_their_code(
    hooks_gateway: Gateway, hooks_tenant: Tenant, receiver: Receiver, listener: socket.socket
) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    receiver.status = 500
    urls = {
        "closed port": f"http://127.0.0.1:{closed_port}/hook",
        "never answers": f"http://127.0.0.1:{listener.getsockname()[1]}/hook",  # times out after 1 s
        "not TLS": f"https://127.0.0.1:{receiver.port}/hook",
        "HTTP 500": receiver.url,
    }
    with hooks_gateway.http(hooks_tenant.key) as http:
        hooks = {why: http.post("/v1/webhooks", json={"url": url}).json()["id"] for why, url in urls.items()}

    cancelled_job(hooks_tenant)

    errors = {
        why: deliveries_once(hooks_gateway, hooks_tenant, hook_id, lambda d: d["attempts"] >= 1)[0]["last_error"]
        for why, hook_id in hooks.items()
    }
    assert errors == {
        "closed port": CONNECTION_FAILED,
        "never answers": CONNECTION_FAILED,
        "not TLS": CONNECTION_FAILED,
        "HTTP 500": "could not deliver: HTTP 500",
    }


def test_redirects_are_not_followed(
    hooks_gateway: Gateway, hooks_tenant: Tenant, receiver: Receiver, other_receiver: Receiver
) -> None:
    receiver.status = 307
    receiver.headers = {"location": other_receiver.url}
    with hooks_gateway.http(hooks_tenant.key) as http:
        hook = http.post("/v1/webhooks", json={"url": receiver.url}).json()

    cancelled_job(hooks_tenant)

    deliveries = deliveries_once(hooks_gateway, hooks_tenant, hook["id"], lambda d: d["attempts"] >= 1)
    assert deliveries[0]["last_error"] == "could not deliver: HTTP 307"
    assert len(receiver.calls) >= 1
    assert other_receiver.calls == []
