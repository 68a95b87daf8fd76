"""The uploads API through the official openai SDK over real HTTP, on SQLite and PostgreSQL: a file sent in parts
becomes a normal File, assembled in the order given, checked, validated like a direct upload; a refused completion
stores nothing; cancelled and expired uploads take nothing more and lose their parts."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from app.db import sync_url
from app.kit.time import utcnow
from app.uploads.models import Upload, UploadPart
from tests.conftest import (
    TEST_MAX_UPLOAD_BYTES,
    Gateway,
    Tenant,
    gateway_settings,
    make_tenant,
    serve,
    wait_until_validated,
)
from tests.openai_schema import assert_matches

JSONL = "application/jsonl"


@pytest.fixture(autouse=True)
def no_parts_left(gateway: Gateway) -> Iterator[None]:
    """Each test ends the uploads it starts: the parts area goes with the last parts, so a quiet gateway's tmp
    folder is empty (tests/files checks that too)."""
    yield
    assert not (gateway.settings.tmp_dir / "uploads").exists()


def chat_rows(n: int) -> bytes:
    return b"".join(
        json.dumps(
            {"messages": [{"role": "user", "content": f"question {i}?"}, {"role": "assistant", "content": f"ans {i}"}]}
        ).encode()
        + b"\n"
        for i in range(n)
    )


def _parts_dir(gateway: Gateway, upload_id: str) -> Path:
    return gateway.settings.tmp_dir / "uploads" / upload_id


def _part_files(gateway: Gateway, upload_id: str) -> list[str]:
    folder = _parts_dir(gateway, upload_id)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _blobs(gateway: Gateway, tenant: Tenant) -> list[str]:
    folder = gateway.settings.files_dir / tenant.project_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _temps(gateway: Gateway) -> list[str]:
    return sorted(p.name for p in gateway.settings.tmp_dir.glob("upload-*"))


def _start(tenant: Tenant, size: int, purpose: str = "user_data", filename: str = "data.bin") -> str:
    upload = tenant.client.uploads.create(bytes=size, filename=filename, mime_type=JSONL, purpose=purpose)  # type: ignore[arg-type]
    assert (upload.status, upload.bytes, upload.file) == ("pending", size, None)
    return upload.id


def _add(tenant: Tenant, upload_id: str, data: bytes) -> str:
    part = tenant.client.uploads.parts.create(upload_id, data=data)
    assert (part.object, part.upload_id) == ("upload.part", upload_id)
    return part.id


def _error(exc: pytest.ExceptionInfo[openai.APIStatusError]) -> dict[str, Any]:
    body = exc.value.body
    assert isinstance(body, dict)
    return body


def test_chunked_sdk_upload_makes_the_same_file_as_a_direct_upload(
    gateway: Gateway, tenant: Tenant, tmp_path: Path
) -> None:
    content = chat_rows(60)
    path = tmp_path / "train.jsonl"
    path.write_bytes(content)
    assert len(content) > 5 * 1024  # six parts at least, their boundaries inside lines

    upload = tenant.client.uploads.upload_file_chunked(
        file=path,
        mime_type=JSONL,
        purpose="fine-tune",
        part_size=1024,
        md5=hashlib.md5(content).hexdigest(),
    )

    assert (upload.status, upload.filename, upload.bytes, upload.purpose) == (
        "completed",
        "train.jsonl",
        len(content),
        "fine-tune",
    )
    assert upload.file is not None and upload.file.id.startswith("file-")
    assert (upload.file.bytes, upload.file.filename, upload.file.purpose) == (len(content), "train.jsonl", "fine-tune")
    assert tenant.client.files.content(upload.file.id).content == content
    validated = wait_until_validated(tenant.client, upload.file.id)
    direct = wait_until_validated(tenant.client, tenant.client.files.create(file=path, purpose="fine-tune").id)
    assert (validated.status, validated.status_details) == (direct.status, direct.status_details) == ("processed", None)
    stored = gateway.settings.files_dir / tenant.project_id / upload.file.id
    assert stored.read_bytes() == content
    assert _part_files(gateway, upload.id) == [] and _temps(gateway) == []


def test_a_bad_dataset_sent_in_parts_fails_validation_like_a_direct_upload(tenant: Tenant, tmp_path: Path) -> None:
    content = chat_rows(20) + b'{"messages": "not a list"}\n' + chat_rows(20)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)

    upload = tenant.client.uploads.upload_file_chunked(file=path, mime_type=JSONL, purpose="fine-tune", part_size=512)

    assert upload.file is not None
    via_upload = wait_until_validated(tenant.client, upload.file.id)
    direct = wait_until_validated(tenant.client, tenant.client.files.create(file=path, purpose="fine-tune").id)
    assert via_upload.status == direct.status == "error"
    assert via_upload.status_details == direct.status_details
    assert "line 21" in (via_upload.status_details or "")


def test_parts_are_assembled_in_the_order_given_not_the_order_sent(gateway: Gateway, tenant: Tenant) -> None:
    pieces = [b"first|", bytes(range(256)) * 3, b"|third"]
    upload_id = _start(tenant, sum(map(len, pieces)), filename="blob.bin")
    first, second, third = (_add(tenant, upload_id, piece) for piece in pieces)
    assert _part_files(gateway, upload_id) == sorted([first, second, third])

    done = tenant.client.uploads.complete(upload_id, part_ids=[third, first, second])

    assert done.status == "completed" and done.file is not None
    assert tenant.client.files.content(done.file.id).content == pieces[2] + pieces[0] + pieces[1]
    assert tenant.client.files.retrieve(done.file.id).status == "processed"  # not a fine-tune file: nothing to check
    assert _part_files(gateway, upload_id) == [] and _part_rows(gateway, upload_id) == 0
    with pytest.raises(openai.BadRequestError) as again:
        tenant.client.uploads.complete(upload_id, part_ids=[third, first, second])
    assert _error(again)["code"] == "invalid_upload_state" and "completed" in _error(again)["message"]


def test_an_md5_mismatch_stores_nothing_and_the_upload_can_still_complete(gateway: Gateway, tenant: Tenant) -> None:
    data = b"0123456789" * 100
    upload_id = _start(tenant, len(data))
    part_ids = [_add(tenant, upload_id, data[:600]), _add(tenant, upload_id, data[600:])]
    files_before, blobs_before = tenant.client.files.list().data, _blobs(gateway, tenant)

    with pytest.raises(openai.BadRequestError) as mismatch:
        tenant.client.uploads.complete(upload_id, part_ids=part_ids, md5=hashlib.md5(b"something else").hexdigest())

    assert (_error(mismatch)["param"], _error(mismatch)["code"]) == ("md5", "md5_mismatch")
    assert tenant.client.files.list().data == files_before and _blobs(gateway, tenant) == blobs_before
    assert _temps(gateway) == [] and _part_files(gateway, upload_id) == sorted(part_ids)
    with pytest.raises(openai.BadRequestError) as malformed:
        tenant.client.uploads.complete(upload_id, part_ids=part_ids, md5="not-hex")
    assert _error(malformed)["param"] == "md5"

    done = tenant.client.uploads.complete(upload_id, part_ids=part_ids, md5=hashlib.md5(data).hexdigest().upper())

    assert done.file is not None and tenant.client.files.content(done.file.id).content == data


def test_completing_needs_exactly_the_declared_bytes_from_this_uploads_parts(tenant: Tenant) -> None:
    upload_id = _start(tenant, 30)
    a, b = _add(tenant, upload_id, b"a" * 10), _add(tenant, upload_id, b"b" * 10)
    other_id = _start(tenant, 10)
    elsewhere = _add(tenant, other_id, b"c" * 10)

    cases = {
        "upload_size_mismatch": [a, b],
        "invalid_part": [a, b, elsewhere],
        "invalid_value": [a, b, a],
    }
    for code, part_ids in cases.items():
        with pytest.raises(openai.BadRequestError) as refused:
            tenant.client.uploads.complete(upload_id, part_ids=part_ids)
        assert (_error(refused)["param"], _error(refused)["code"]) == ("part_ids", code), part_ids
        if code == "upload_size_mismatch":
            assert "hold 20 bytes" in _error(refused)["message"] and "for 30" in _error(refused)["message"]
    with pytest.raises(openai.BadRequestError) as empty:
        tenant.client.uploads.complete(upload_id, part_ids=[])
    assert _error(empty)["param"] == "part_ids"
    c = _add(tenant, upload_id, b"c" * 10)
    assert tenant.client.uploads.complete(upload_id, part_ids=[a, b, c]).status == "completed"
    tenant.client.uploads.cancel(other_id)


def test_parts_may_not_add_up_past_the_declared_size(gateway: Gateway, tenant: Tenant) -> None:
    upload_id = _start(tenant, 100)
    kept = _add(tenant, upload_id, b"x" * 60)

    with pytest.raises(openai.BadRequestError) as too_much:
        tenant.client.uploads.parts.create(upload_id, data=b"y" * 41)
    with pytest.raises(openai.BadRequestError) as way_too_much:  # cut off as it streams in, past the 40 bytes left
        tenant.client.uploads.parts.create(upload_id, data=b"z" * 100_000)

    for refused in (too_much, way_too_much):
        assert (_error(refused)["param"], _error(refused)["code"]) == ("data", "upload_too_large")
    assert _part_files(gateway, upload_id) == [kept] and _temps(gateway) == []
    last = _add(tenant, upload_id, b"y" * 40)
    assert tenant.client.uploads.complete(upload_id, part_ids=[kept, last]).status == "completed"


def test_parts_sent_side_by_side_never_add_up_past_the_declared_size(gateway: Gateway, tenant: Tenant) -> None:
    upload_id = _start(tenant, 100)

    def send(i: int) -> int:
        with gateway.http(tenant.key) as http:
            return http.post(f"/v1/uploads/{upload_id}/parts", files={"data": ("p", bytes([i]) * 30)}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(send, range(8)))

    assert statuses == [200] * 3 + [400] * 5  # 3 x 30 fit in 100, a fourth never does
    assert len(_part_files(gateway, upload_id)) == 3
    tenant.client.uploads.cancel(upload_id)


def test_creating_checks_purpose_size_and_mime_type(tenant: Tenant) -> None:
    client = tenant.client
    base: dict[str, Any] = {"bytes": 10, "filename": "a.jsonl", "mime_type": JSONL, "purpose": "fine-tune"}
    refusals: list[tuple[dict[str, Any], str, int]] = [
        ({"purpose": "fine-tune-results"}, "purpose", 400),
        ({"bytes": 0}, "bytes", 400),
        ({"bytes": TEST_MAX_UPLOAD_BYTES + 1}, "bytes", 413),
        ({"bytes": 10**30}, "bytes", 413),
        ({"mime_type": "jsonl"}, "mime_type", 400),
        ({"mime_type": "application/json l"}, "mime_type", 400),
        ({"filename": ""}, "filename", 400),
    ]
    for change, param, status in refusals:
        with pytest.raises(openai.APIStatusError) as refused:
            client.uploads.create(**{**base, **change})
        assert (refused.value.status_code, _error(refused)["param"]) == (status, param), change

    upload = client.uploads.create(**{**base, "mime_type": "text/plain; charset=utf-8", "bytes": TEST_MAX_UPLOAD_BYTES})
    assert upload.status == "pending"
    assert 3599 <= upload.expires_at - upload.created_at <= 3601  # OpenAI's hour


def test_a_part_needs_its_data(gateway: Gateway, tenant: Tenant) -> None:
    upload_id = _start(tenant, 10)
    with gateway.http(tenant.key) as http:
        missing = http.post(f"/v1/uploads/{upload_id}/parts", files={"other": ("p", b"12345")})
        empty = http.post(f"/v1/uploads/{upload_id}/parts", files={"data": ("p", b"")})
        not_multipart = http.post(f"/v1/uploads/{upload_id}/parts", content=b"12345")
        as_text_field = http.post(f"/v1/uploads/{upload_id}/parts", files={"data": (None, b"12345")})  # curl -F data=…

    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "data")
    assert (empty.status_code, empty.json()["error"]["param"]) == (400, "data")
    assert not_multipart.status_code == 400 and "'data'" in not_multipart.json()["error"]["message"]
    assert as_text_field.status_code == 200, as_text_field.text
    assert _part_files(gateway, upload_id) == [as_text_field.json()["id"]]
    tenant.client.uploads.cancel(upload_id)


def test_a_cancelled_upload_takes_nothing_more(gateway: Gateway, tenant: Tenant) -> None:
    upload_id = _start(tenant, 20)
    part = _add(tenant, upload_id, b"p" * 20)

    cancelled = tenant.client.uploads.cancel(upload_id)

    assert (cancelled.id, cancelled.status, cancelled.file) == (upload_id, "cancelled", None)
    assert _part_files(gateway, upload_id) == [] and _part_rows(gateway, upload_id) == 0
    attempts: list[Callable[[], object]] = [
        lambda: tenant.client.uploads.complete(upload_id, part_ids=[part]),
        lambda: tenant.client.uploads.parts.create(upload_id, data=b"q"),
        lambda: tenant.client.uploads.cancel(upload_id),
    ]
    for attempt in attempts:
        with pytest.raises(openai.BadRequestError) as refused:
            attempt()
        assert _error(refused)["code"] == "invalid_upload_state" and "cancelled" in _error(refused)["message"]
    assert tenant.client.files.list().data == []


def test_another_projects_upload_is_a_plain_404_everywhere(
    gateway: Gateway, tenant: Tenant, other_tenant: Tenant
) -> None:
    upload_id = _start(tenant, 10)
    part = _add(tenant, upload_id, b"m" * 10)
    theirs = other_tenant.client

    attempts: list[Callable[[], object]] = [
        lambda: theirs.uploads.parts.create(upload_id, data=b"x"),
        lambda: theirs.uploads.complete(upload_id, part_ids=[part]),
        lambda: theirs.uploads.cancel(upload_id),
        lambda: theirs.get(f"/uploads/{upload_id}", cast_to=httpx.Response),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError) as missing:
            attempt()
        assert _error(missing)["param"] == "upload_id"
    assert _part_files(gateway, upload_id) == [part]
    assert tenant.client.uploads.complete(upload_id, part_ids=[part]).status == "completed"


def test_wire_objects_match_openai_schemas(gateway: Gateway, tenant: Tenant) -> None:
    data = chat_rows(3)
    with gateway.http(tenant.key) as http:
        body = {"bytes": len(data), "filename": "t.jsonl", "mime_type": JSONL, "purpose": "fine-tune"}
        created = http.post("/v1/uploads", json=body).json()
        assert_matches(created, "Upload")
        assert created["object"] == "upload" and created["file"] is None
        part = http.post(f"/v1/uploads/{created['id']}/parts", files={"data": ("blob", data)}).json()
        assert_matches(part, "UploadPart")
        assert part["id"].startswith("part_") and created["id"].startswith("upload_")
        completed = http.post(f"/v1/uploads/{created['id']}/complete", json={"part_ids": [part["id"]]}).json()
        assert_matches(completed, "Upload")
        assert_matches(completed["file"], "OpenAIFile")
        assert completed["status"] == "completed" and "expires_at" not in completed["file"]
        assert http.get(f"/v1/uploads/{created['id']}").json() == completed
        expiring = {**body, "expires_after": {"anchor": "created_at", "seconds": 7200}}
        other = http.post("/v1/uploads", json=expiring).json()
        part = http.post(f"/v1/uploads/{other['id']}/parts", files={"data": ("blob", data)}).json()
        expires = http.post(f"/v1/uploads/{other['id']}/complete", json={"part_ids": [part["id"]]}).json()["file"]
        assert_matches(expires, "OpenAIFile")
        assert expires["expires_at"] - expires["created_at"] == 7200  # the File's expiry, as /v1/files sets it
        cancelled = http.post(f"/v1/uploads/{http.post('/v1/uploads', json=body).json()['id']}/cancel").json()
        assert_matches(cancelled, "Upload")
        assert cancelled["status"] == "cancelled"
        missing = http.post("/v1/uploads/upload_nope/cancel")
        assert missing.status_code == 404
        assert_matches(missing.json(), "ErrorResponse")


# --- expiry: the upkeep loop, run often by a gateway of its own on the same database -----------------------------


@pytest.fixture
def upkeep_gateway(database_url: str, tmp_path: Path, model_cache: Path) -> Iterator[Gateway]:
    with serve(gateway_settings(database_url, tmp_path / "data", model_cache, purge_interval_seconds=0.2)) as gw:
        yield gw


def _set_expiry(gateway: Gateway, upload_id: str, delta: timedelta) -> None:
    engine = sa.create_engine(sync_url(gateway.settings.resolved_database_url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(Upload).where(Upload.id == upload_id).values(expires_at=utcnow() + delta))
    finally:
        engine.dispose()


def _stored(gateway: Gateway, query: sa.Select[Any]) -> Any:
    engine = sa.create_engine(sync_url(gateway.settings.resolved_database_url))
    try:
        with engine.connect() as conn:
            return conn.execute(query).scalar_one()
    finally:
        engine.dispose()


def _stored_status(gateway: Gateway, upload_id: str) -> str:
    return str(_stored(gateway, sa.select(Upload.status).where(Upload.id == upload_id)))


def _part_rows(gateway: Gateway, upload_id: str) -> int:
    return int(_stored(gateway, sa.select(sa.func.count()).where(UploadPart.upload_id == upload_id)))


def test_an_unfinished_upload_expires_and_loses_its_parts(upkeep_gateway: Gateway) -> None:
    gateway = upkeep_gateway
    tenant = make_tenant(gateway)
    upload_id = _start(tenant, 20)
    part = _add(tenant, upload_id, b"e" * 10)
    kept_id = _start(tenant, 10)
    kept_part = _add(tenant, kept_id, b"k" * 10)
    assert _part_files(gateway, upload_id) == [part]

    _set_expiry(gateway, upload_id, timedelta(seconds=-1))

    deadline = time.monotonic() + 20
    while _part_files(gateway, upload_id) or _stored_status(gateway, upload_id) != "expired":
        assert time.monotonic() < deadline, "the upkeep did not expire the upload"
        time.sleep(0.1)
    assert not _parts_dir(gateway, upload_id).exists() and _part_rows(gateway, upload_id) == 0
    with gateway.http(tenant.key) as http:
        assert http.get(f"/v1/uploads/{upload_id}").json()["status"] == "expired"
    attempts: list[Callable[[], object]] = [
        lambda: tenant.client.uploads.parts.create(upload_id, data=b"e" * 10),
        lambda: tenant.client.uploads.complete(upload_id, part_ids=[part]),
    ]
    for attempt in attempts:
        with pytest.raises(openai.BadRequestError) as refused:
            attempt()
        assert _error(refused)["code"] == "invalid_upload_state" and "expired" in _error(refused)["message"]
    # A pending upload keeps its parts; parts no pending upload owns (left by a crash) go.
    assert _part_files(gateway, kept_id) == [kept_part]
    stray = _parts_dir(gateway, "upload_gone")
    stray.mkdir(parents=True)
    (stray / "part_x").write_bytes(b"left behind")
    deadline = time.monotonic() + 20
    while stray.exists():
        assert time.monotonic() < deadline, "the upkeep left parts of no pending upload"
        time.sleep(0.1)
    assert tenant.client.uploads.complete(kept_id, part_ids=[kept_part]).status == "completed"


def test_a_pending_upload_past_its_expiry_reads_expired_before_the_upkeep_runs(
    gateway: Gateway, tenant: Tenant
) -> None:
    upload_id = _start(tenant, 10)
    part = _add(tenant, upload_id, b"r" * 10)
    _set_expiry(gateway, upload_id, timedelta(seconds=-1))

    with gateway.http(tenant.key) as http:
        assert http.get(f"/v1/uploads/{upload_id}").json()["status"] == "expired"
    with pytest.raises(openai.BadRequestError) as refused:
        tenant.client.uploads.complete(upload_id, part_ids=[part])
    assert "expired" in _error(refused)["message"]
    assert tenant.client.files.list().data == []
    _set_expiry(gateway, upload_id, timedelta(hours=1))  # this gateway's upkeep is far off: end it here
    assert tenant.client.uploads.cancel(upload_id).status == "cancelled"
