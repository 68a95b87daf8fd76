"""Projects, API keys and authentication over real HTTP."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import Gateway, Tenant, make_tenant
from tests.openai_schema import assert_matches


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("Basic dXNlcjpwYXNz", "invalid_authorization_header"),
        ("Bearer", "invalid_authorization_header"),
        ("Bearer two words", "invalid_authorization_header"),
        ("Bearer sk-ftgw-not-a-real-key-at-all", "invalid_api_key"),
        ("\u00e9\u00e9\u00e9", "invalid_authorization_header"),
    ],
)
def test_bad_credentials_are_401_envelopes(gateway: Gateway, header: str | None, code: str) -> None:
    headers = {"Authorization": header.encode("utf-8")} if header else {}
    with gateway.http() as http:
        response = http.get("/v1/files", headers=headers)
    assert response.status_code == 401
    assert_matches(response.json(), "ErrorResponse")
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.json()["error"]["code"] == code


def test_sdk_raises_authentication_error_for_unknown_key(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        gateway.openai("sk-ftgw-unknown-key-000000000000").files.list()
    assert err.value.status_code == 401


def test_admin_creates_projects_and_keys_shown_once(gateway: Gateway) -> None:
    with gateway.http(gateway.admin_key) as http:
        project = http.post("/v1/projects", json={"name": "acme-support"}).json()
        assert project["object"] == "organization.project"
        assert project["id"].startswith("proj-")
        created = http.post(f"/v1/projects/{project['id']}/api_keys", json={"name": "bot", "role": "member"})
        assert created.status_code == 200
        key = created.json()
        assert key["value"].startswith("sk-ftgw-")
        assert key["redacted_value"].endswith(key["value"][-4:]) and key["value"] not in key["redacted_value"]
        listed = http.get(f"/v1/projects/{project['id']}/api_keys").json()
        assert [k["id"] for k in listed["data"]] == [key["id"]]
        assert "value" not in listed["data"][0]
        assert project["id"] in [p["id"] for p in http.get("/v1/projects", params={"limit": 100}).json()["data"]]
        assert http.get(f"/v1/projects/{project['id']}").json()["name"] == "acme-support"
        duplicate = http.post("/v1/projects", json={"name": "acme-support"})
        assert duplicate.status_code == 409
        assert duplicate.json()["error"]["param"] == "name"

    member = gateway.openai(key["value"])
    assert member.files.list().data == []


def test_keys_are_stored_only_as_hashes(gateway: Gateway, tenant: Tenant) -> None:
    import sqlalchemy as sa

    from app.db import sync_url

    engine = sa.create_engine(sync_url(gateway.settings.resolved_database_url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT * FROM api_keys")).mappings().all()
    finally:
        engine.dispose()
    dumped = repr(rows)
    assert tenant.key not in dumped
    assert gateway.admin_key not in dumped
    assert len(rows) >= 2


def test_members_cannot_manage_projects_or_keys(gateway: Gateway, tenant: Tenant) -> None:
    with gateway.http(tenant.key) as http:
        for response in (
            http.post("/v1/projects", json={"name": "sneaky"}),
            http.get("/v1/projects"),
            http.post(f"/v1/projects/{tenant.project_id}/api_keys", json={"role": "admin"}),
        ):
            assert response.status_code == 403
            assert response.json()["error"]["type"] == "permission_error"


def test_revoked_key_gets_401_at_once(gateway: Gateway, tenant: Tenant) -> None:
    assert tenant.client.files.list().data == []
    key_id = _key_id(gateway, tenant)
    with gateway.http(gateway.admin_key) as http:
        revoked = http.delete(f"/v1/projects/{tenant.project_id}/api_keys/{key_id}")
        assert revoked.json() == {
            "id": key_id,
            "object": "organization.project.api_key.deleted",
            "deleted": True,
        }
        listed = http.get(f"/v1/projects/{tenant.project_id}/api_keys").json()["data"]
        assert listed[0]["revoked_at"] is not None
    with pytest.raises(openai.AuthenticationError):
        tenant.client.files.list()


def test_keys_of_unknown_or_mismatched_projects_are_404(gateway: Gateway, tenant: Tenant) -> None:
    other = make_tenant(gateway)
    key_id = _key_id(gateway, tenant)
    with gateway.http(gateway.admin_key) as http:
        assert http.post("/v1/projects/proj-nope/api_keys", json={}).status_code == 404
        assert http.get("/v1/projects/proj-nope").status_code == 404
        assert http.delete(f"/v1/projects/{other.project_id}/api_keys/{key_id}").status_code == 404
    assert tenant.client.files.list().data == []  # still valid


def test_last_admin_key_cannot_be_revoked(gateway: Gateway) -> None:
    with gateway.http(gateway.admin_key) as http:
        default = next(p for p in http.get("/v1/projects").json()["data"] if p["name"] == "default")
        keys = http.get(f"/v1/projects/{default['id']}/api_keys").json()["data"]
        admins = [k for k in keys if k["role"] == "admin" and k["revoked_at"] is None]
        assert len(admins) == 1
        response = http.delete(f"/v1/projects/{default['id']}/api_keys/{admins[0]['id']}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_admin_key"


def test_admin_of_one_project_is_admin_of_the_gateway(gateway: Gateway) -> None:
    admin_tenant = make_tenant(gateway, role="admin")
    with gateway.http(admin_tenant.key) as http:
        assert http.post("/v1/projects", json={"name": "made-by-second-admin"}).status_code == 200


def _key_id(gateway: Gateway, tenant: Tenant) -> str:
    with gateway.http(gateway.admin_key) as http:
        keys = http.get(f"/v1/projects/{tenant.project_id}/api_keys").json()["data"]
    assert len(keys) == 1
    return str(keys[0]["id"])
