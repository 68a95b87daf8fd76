"""The console's small pieces: where sign-in may send a person back to, how metadata filters are read, and sessions
that end by themselves."""

from __future__ import annotations

from contextlib import closing
from datetime import timedelta
from urllib.parse import urljoin

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, update

from app.auth.models import ConsoleSession
from app.console.job_pages import parse_metadata
from app.console.web import safe_next
from app.db import sync_url
from app.errors import InvalidRequest
from app.kit.time import utcnow
from tests.conftest import Gateway, Tenant
from tests.console.conftest import signed_in_client


@given(st.text())
def test_sign_in_only_sends_people_back_to_this_site(target: str) -> None:
    resolved = urljoin("http://127.0.0.1:8000/console/sign-in", safe_next(target))
    assert resolved.startswith("http://127.0.0.1:8000/")


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "https://evil.example",
        "/\\evil.example",
        "javascript:x",
        "/\t/evil.example",
        "/\n/evil.example",
    ],
)
def test_known_open_redirect_tricks_are_refused(target: str) -> None:
    assert safe_next(target) == "/console/jobs"


def test_local_targets_are_kept() -> None:
    assert safe_next("/console/jobs/ftjob-1?x=1") == "/console/jobs/ftjob-1?x=1"


def test_metadata_filters() -> None:
    assert parse_metadata("team=support, env = prod ,") == {"team": "support", "env": "prod"}
    assert parse_metadata("") == {}
    with pytest.raises(InvalidRequest):
        parse_metadata("team")


def test_an_expired_session_asks_to_sign_in_again(gateway: Gateway, tenant: Tenant) -> None:
    with closing(signed_in_client(gateway, tenant.key)) as client:
        assert client.get("/console/jobs").status_code == 200
        engine = create_engine(sync_url(gateway.settings.resolved_database_url))
        with engine.begin() as db:
            db.execute(
                update(ConsoleSession)
                .where(ConsoleSession.key_id.in_(_key_ids(gateway, tenant)))
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        engine.dispose()
        page = client.get("/console/jobs", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/console/sign-in")
        assert client.get("/v1/files").json()["error"]["code"] == "invalid_session"


def _key_ids(gateway: Gateway, tenant: Tenant) -> list[str]:
    with gateway.http(gateway.admin_key) as admin:
        return [k["id"] for k in admin.get(f"/v1/projects/{tenant.project_id}/api_keys").json()["data"]]


def test_a_long_jobs_first_render_is_thinned_but_keeps_its_shape() -> None:
    from app.console.job_pages import CHART_KEYS, MAX_POINTS, _thin

    step, train, valid = CHART_KEYS.index("step"), CHART_KEYS.index("train_loss"), CHART_KEYS.index("valid_loss")
    rows = []
    for i in range(1, 25_001):
        row: list[object] = [None] * len(CHART_KEYS)
        row[step], row[train] = i, 1 / i
        if i % 5_000 == 0:
            row[valid] = 2 / i
        rows.append(row)
    thin = _thin(rows)
    assert len(thin) <= MAX_POINTS + 5
    assert thin[0] is rows[0] and thin[-1] is rows[-1]
    assert [r[step] for r in thin if r[valid] is not None] == [5_000, 10_000, 15_000, 20_000, 25_000]
    assert [r[step] for r in thin] == sorted(r[step] for r in thin)  # type: ignore[type-var]
    assert _thin(rows[:MAX_POINTS]) == rows[:MAX_POINTS]
