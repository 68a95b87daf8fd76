"""The console's assets: npm packages served from node_modules at the pinned versions, nothing else of that tree,
and pages that say what is wrong instead of failing when the packages are missing."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import pytest

from app.console.assets import missing_packages
from tests.conftest import Gateway, Tenant
from tests.console.conftest import signed_in_client

REPO = Path(__file__).resolve().parents[2]


def test_the_packages_are_installed_at_the_pinned_versions() -> None:
    pinned = json.loads((REPO / "package.json").read_text())["dependencies"]
    locked = json.loads((REPO / "package-lock.json").read_text())["packages"]
    assert missing_packages(REPO / "node_modules") == []
    for name, version in pinned.items():
        installed = json.loads((REPO / "node_modules" / name / "package.json").read_text())["version"]
        assert installed == version == locked[f"node_modules/{name}"]["version"]


@pytest.mark.parametrize(
    "path",
    [
        "/console/vendor/pico/pico.min.css",
        "/console/vendor/chart.js/chart.umd.min.js",
        "/console/vendor/swagger-ui/swagger-ui-bundle.js",
        "/console/static/console.js",
    ],
)
def test_assets_are_served_locally(gateway: Gateway, path: str) -> None:
    with gateway.http() as http:
        response = http.get(path)
    assert response.status_code == 200
    assert len(response.content) > 1000


@pytest.mark.parametrize(
    "path",
    [
        "/console/vendor/pico/../../package.json",
        "/console/vendor/pico/%2e%2e/%2e%2e/package.json",
        "/console/vendor/chart.js/../package.json",
        "/console/vendor/nonexistent/x.js",
        "/console/static/../web.py",
    ],
)
def test_nothing_else_is_served(gateway: Gateway, path: str) -> None:
    with gateway.http() as http:
        response = http.get(path)
    assert response.status_code in (303, 404)
    assert '"dependencies"' not in response.text and "def " not in response.text


def test_unknown_console_pages_are_html_404s(gateway: Gateway, tenant: Tenant) -> None:
    with gateway.http() as http:
        # Not signed in: sign in first, and come back here afterwards.
        anonymous = http.get("/console/nowhere", follow_redirects=False)
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fnowhere"
    with closing(signed_in_client(gateway, tenant.key)) as client:
        page = client.get("/console/nowhere")
        assert page.status_code == 404
        assert "text/html" in page.headers["content-type"]
        assert "There is no console page at this address." in page.text
        bad = client.get("/console/jobs?status=nonsense")
        assert bad.status_code == 400
        assert "text/html" in bad.headers["content-type"]
        assert "status" in bad.text
