"""The files API through the official openai SDK over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import socket

import openai
import pytest

from tests.conftest import TEST_MAX_UPLOAD_BYTES, Gateway, Tenant, wait_until_validated
from tests.openai_schema import assert_matches

JSONL = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


def _blobs(gateway: Gateway) -> list[str]:
    return sorted(p.name for p in gateway.settings.files_dir.rglob("*") if p.is_file())


def _temps(gateway: Gateway) -> list[str]:
    return sorted(p.name for p in gateway.settings.tmp_dir.glob("*"))


def test_upload_retrieve_download_delete(gateway: Gateway, tenant: Tenant) -> None:
    created = tenant.client.files.create(file=("train.jsonl", JSONL * 10), purpose="fine-tune")

    assert created.id.startswith("file-") and len(created.id) > 20
    assert (created.object, created.filename, created.purpose, created.bytes) == (
        "file",
        "train.jsonl",
        "fine-tune",
        len(JSONL) * 10,
    )
    assert created.status == "uploaded"  # validation runs in the background
    fetched = wait_until_validated(tenant.client, created.id)
    assert fetched.status == "processed"
    assert fetched.model_dump() == {**created.model_dump(), "status": "processed"}
    assert tenant.client.files.content(created.id).content == JSONL * 10
    assert created.id in _blobs(gateway)

    deleted = tenant.client.files.delete(created.id)

    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "file")
    assert created.id not in _blobs(gateway)
    with pytest.raises(openai.NotFoundError) as err:
        tenant.client.files.retrieve(created.id)
    assert err.value.body["param"] == "file_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        tenant.client.files.delete(created.id)


def test_wire_objects_match_openai_schemas(gateway: Gateway, tenant: Tenant) -> None:
    with gateway.http(tenant.key) as http:
        created = http.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("a.jsonl", JSONL)})
        assert created.status_code == 200
        assert_matches(created.json(), "OpenAIFile")
        file_id = created.json()["id"]
        assert_matches(http.get(f"/v1/files/{file_id}").json(), "OpenAIFile")
        listed = http.get("/v1/files").json()
        assert_matches(listed, "ListFilesResponse")
        assert listed["first_id"] == listed["last_id"] == file_id
        assert_matches(http.delete(f"/v1/files/{file_id}").json(), "DeleteFileResponse")
        missing = http.get(f"/v1/files/{file_id}")
        assert missing.status_code == 404
        assert_matches(missing.json(), "ErrorResponse")


def test_upload_records_size_and_sha256_of_binary_content(gateway: Gateway, tenant: Tenant) -> None:
    payload = bytes(range(256)) * 700  # 179,200 bytes, every byte value, crosses many read chunks
    created = tenant.client.files.create(file=("blob.bin", payload), purpose="user_data")

    assert created.bytes == len(payload)
    stored = gateway.settings.files_dir / tenant.project_id / created.id
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert tenant.client.files.content(created.id).content == payload


def test_expires_after_sets_expires_at(tenant: Tenant) -> None:
    created = tenant.client.files.create(
        file=("a.jsonl", JSONL), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert created.expires_at == created.created_at + 3600


def test_list_paginates_in_order_with_purpose_filter(tenant: Tenant) -> None:
    ids = [
        tenant.client.files.create(file=(f"f{i}.jsonl", JSONL), purpose="fine-tune" if i % 2 else "user_data").id
        for i in range(5)
    ]

    first = tenant.client.files.list(limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2]
    assert first.has_more is True
    assert [f.id for f in tenant.client.files.list(limit=2)] == ids[::-1]  # the SDK follows `after` cursors
    assert [f.id for f in tenant.client.files.list(order="asc", limit=3)] == ids
    assert [f.id for f in tenant.client.files.list(purpose="fine-tune")] == [ids[3], ids[1]]
    last = tenant.client.files.list(limit=10, after=ids[1])
    assert [f.id for f in last.data] == [ids[0]]
    assert last.has_more is False


def test_other_projects_files_are_plain_404s(gateway: Gateway, tenant: Tenant, other_tenant: Tenant) -> None:
    mine = tenant.client.files.create(file=("mine.jsonl", JSONL), purpose="fine-tune")
    never_existed = "file-" + "x" * 24
    theirs = other_tenant.client

    for file_id in (mine.id, never_existed):
        with pytest.raises(openai.NotFoundError) as err:
            theirs.files.retrieve(file_id)
        with pytest.raises(openai.NotFoundError):
            theirs.files.content(file_id)
        with pytest.raises(openai.NotFoundError):
            theirs.files.delete(file_id)
        # Indistinguishable: same message shape for a foreign id as for a missing one.
        assert err.value.body["message"] == f"No such File object: {file_id}"  # type: ignore[index]
    assert [f.id for f in theirs.files.list()] == []
    with pytest.raises(openai.BadRequestError):
        theirs.files.list(after=mine.id)
    assert tenant.client.files.retrieve(mine.id).id == mine.id


@pytest.mark.parametrize(
    ("data", "files", "param", "fragment"),
    [
        ({"purpose": "fine-tune"}, None, "file", "Missing required parameter: 'file'"),
        ({}, {"file": ("a.jsonl", JSONL)}, "purpose", "Missing required parameter: 'purpose'"),
        ({"purpose": "fine-tune"}, {"file": ("empty.jsonl", b"")}, "file", "empty"),
        (
            {"purpose": "training"},
            {"file": ("a.jsonl", JSONL)},
            "purpose",
            "'training' is not a valid purpose",
        ),
        ({"purpose": "fine-tune-results"}, {"file": ("a.jsonl", JSONL)}, "purpose", "not a valid purpose"),
        (
            {"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "60"},
            {"file": ("a.jsonl", JSONL)},
            "expires_after.seconds",
            "between 3600",
        ),
    ],
)
def test_bad_uploads_are_400s_that_say_why(
    gateway: Gateway,
    tenant: Tenant,
    data: dict[str, str],
    files: dict[str, tuple[str, bytes]] | None,
    param: str,
    fragment: str,
) -> None:
    with gateway.http(tenant.key) as http:
        # httpx only sends multipart when there is a file; send an explicit multipart body for the no-file case.
        if files is None:
            response = http.post("/v1/files", data=data, files={"other": ("x", b"1")})
        else:
            response = http.post("/v1/files", data=data, files=files)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in error["message"]
    assert _temps(gateway) == []
    assert tenant.client.files.list().data == []


def test_empty_file_through_the_sdk_is_a_bad_request(tenant: Tenant) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        tenant.client.files.create(file=("empty.jsonl", b""), purpose="fine-tune")
    assert err.value.code == "empty_file"


def test_oversized_upload_is_413_and_leaves_nothing(gateway: Gateway, tenant: Tenant) -> None:
    too_big = b"x" * (TEST_MAX_UPLOAD_BYTES + 1)
    with pytest.raises(openai.APIStatusError) as err:
        tenant.client.files.create(file=("big.jsonl", too_big), purpose="fine-tune")
    assert err.value.status_code == 413
    assert err.value.body["param"] == "file"  # type: ignore[index]

    # Exactly at the limit is fine.
    ok = tenant.client.files.create(file=("max.jsonl", too_big[:-1]), purpose="fine-tune")
    assert ok.bytes == TEST_MAX_UPLOAD_BYTES
    assert [f.id for f in tenant.client.files.list()] == [ok.id]
    assert _temps(gateway) == []


def test_oversized_chunked_upload_is_stopped_mid_stream(gateway: Gateway, tenant: Tenant) -> None:
    boundary = "ftgwboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
    ).encode()

    def body():  # no Content-Length: the gateway can only find out while reading
        yield head
        for _ in range(TEST_MAX_UPLOAD_BYTES // 65536 + 2):
            yield b"y" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    with gateway.http(tenant.key) as http:
        response = http.post(
            "/v1/files", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert tenant.client.files.list().data == []
    assert _temps(gateway) == []


def test_interrupted_upload_leaves_no_file_row_or_blob(gateway: Gateway, tenant: Tenant) -> None:
    boundary = "cut"
    partial = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
    ).encode() + JSONL * 50
    host, port = gateway.base_url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/files HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {tenant.key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(partial) + 10_000}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request + partial)
        sock.shutdown(socket.SHUT_WR)  # the client goes away mid-body
        sock.settimeout(10)
        while sock.recv(65536):
            pass

    assert tenant.client.files.list().data == []
    assert not (gateway.settings.files_dir / tenant.project_id).exists()
    assert _temps(gateway) == []


def test_malformed_multipart_is_400(gateway: Gateway, tenant: Tenant) -> None:
    with gateway.http(tenant.key) as http:
        not_multipart = http.post("/v1/files", json={"purpose": "fine-tune"})
        truncated = http.post(
            "/v1/files",
            content=b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune',
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
    assert not_multipart.status_code == 400
    assert "multipart/form-data" in not_multipart.json()["error"]["message"]
    assert truncated.status_code == 400
    assert _temps(gateway) == []


@pytest.mark.parametrize(
    ("query", "param"),
    [("limit=0", "limit"), ("limit=10001", "limit"), ("limit=abc", "limit"), ("order=sideways", "order")],
)
def test_bad_list_parameters_are_400(gateway: Gateway, tenant: Tenant, query: str, param: str) -> None:
    with gateway.http(tenant.key) as http:
        response = http.get(f"/v1/files?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_bad_limit_through_the_sdk_raises_bad_request(tenant: Tenant) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        tenant.client.files.list(limit=0)
    assert err.value.param == "limit"  # type: ignore[attr-defined]


def test_unknown_purpose_filter_is_400(tenant: Tenant) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        tenant.client.files.list(purpose="nonsense")
    assert "nonsense" in err.value.message


def test_content_streams_large_files(tenant: Tenant) -> None:
    payload = io.BytesIO(b"0123456789abcdef" * 16_000)  # 256,000 bytes from a file-like object
    created = tenant.client.files.create(file=("big.txt", payload), purpose="user_data")
    with tenant.client.files.with_streaming_response.content(created.id) as response:
        chunks = list(response.iter_bytes(8192))
    assert len(chunks) > 1
    assert b"".join(chunks) == payload.getvalue()


async def test_expired_files_vanish_and_are_purged(gateway: Gateway, tenant: Tenant) -> None:
    from datetime import timedelta

    import sqlalchemy as sa

    from app.db import create_engine_from_url, create_sessionmaker
    from app.files.models import StoredFile
    from app.files.storage import BlobStore
    from app.files.tasks import purge_expired_once
    from app.kit.time import utcnow

    keep = tenant.client.files.create(file=("keep.jsonl", JSONL), purpose="user_data")
    gone = tenant.client.files.create(
        file=("gone.jsonl", JSONL), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    engine = create_engine_from_url(gateway.settings.resolved_database_url)
    try:
        async with engine.begin() as connection:
            past = utcnow() - timedelta(seconds=1)
            await connection.execute(sa.update(StoredFile).where(StoredFile.id == gone.id).values(expires_at=past))
        with pytest.raises(openai.NotFoundError):
            tenant.client.files.retrieve(gone.id)
        assert [f.id for f in tenant.client.files.list()] == [keep.id]
        assert gone.id in _blobs(gateway)

        store = BlobStore(gateway.settings.files_dir, gateway.settings.tmp_dir)
        assert await purge_expired_once(create_sessionmaker(engine), store) >= 1
    finally:
        await engine.dispose()
    assert gone.id not in _blobs(gateway)
    assert keep.id in _blobs(gateway)
