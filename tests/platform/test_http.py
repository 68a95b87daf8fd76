"""Health probes and the error envelope for everything that can go wrong at the HTTP layer."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import Gateway
from tests.openai_schema import assert_matches


def test_health_and_ready_need_no_auth(gateway: Gateway) -> None:
    with gateway.http() as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/ready").json() == {"status": "ready"}


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("PUT", "/v1/files", 405, "method_not_allowed"),
        ("PATCH", "/health", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_are_envelopes(gateway: Gateway, method: str, path: str, status: int, code: str) -> None:
    with gateway.http(gateway.admin_key) as http:
        response = http.request(method, path)
    assert response.status_code == status
    assert_matches(response.json(), "ErrorResponse")
    assert response.json()["error"]["code"] == code


def test_body_validation_errors_name_the_param(gateway: Gateway) -> None:
    with gateway.http(gateway.admin_key) as http:
        no_name = http.post("/v1/projects", json={})
        bad_json = http.post("/v1/projects", content=b"{not json", headers={"content-type": "application/json"})
        bad_role = http.post("/v1/projects/proj-x/api_keys", json={"role": "owner"})
    assert no_name.status_code == 400
    assert no_name.json()["error"]["param"] == "name"
    assert no_name.json()["error"]["code"] == "missing_required_parameter"
    assert bad_json.status_code == 400
    assert bad_role.status_code == 400
    assert bad_role.json()["error"]["param"] == "role"


def test_unhandled_errors_are_500_envelopes_without_internals(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/x.db", _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    from app.migrate import upgrade

    upgrade(settings.resolved_database_url)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert_matches(response.json(), "ErrorResponse")
    assert response.json()["error"]["type"] == "server_error"
    assert "secret" not in response.text and "Traceback" not in response.text


def test_ready_reports_503_when_the_database_is_gone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "gone.db"
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{db}", _env_file=None)  # type: ignore[call-arg]
    from app.migrate import upgrade

    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        assert client.get("/ready").status_code == 200
        db.unlink()
        (tmp_path / "gone.db-wal").unlink(missing_ok=True)
        db.mkdir()  # a directory where the database was: new connections fail
        assert client.portal is not None
        client.portal.call(client.app.state.engine.dispose)  # type: ignore[attr-defined]  # drop pooled connections, in the app's loop
        response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
