"""File names in any script through the openai SDK, ``filename*`` (RFC 5987/6266), and ASCII-only numbers.

Names are UTF-8 (RFC 7578): kept exactly, returned exactly by every files route, and named exactly in the
download's ``Content-Disposition``. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Gateway, Tenant

DATA = b'{"prompt": "a", "completion": "b"}\n'
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# What browsers and httpx percent-encode in a quoted name is decoded back, so a name that literally holds such an
# escape cannot be told apart (WHATWG's multipart encoding has the same ambiguity).
FORM_ESCAPE = re.compile(r"%(22|[01][0-9A-Fa-f])")

names = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00/\\"), min_size=1, max_size=40
).filter(lambda n: n.strip() == n and FORM_ESCAPE.search(n) is None)


def _disposition_name(response: httpx.Response) -> str:
    header = response.headers["content-disposition"]
    found = re.search(r"filename\*=UTF-8''([^;]+)", header)
    assert found is not None, header
    return unquote(found.group(1), errors="strict")


def _assert_round_trip(gateway: Gateway, tenant: Tenant, name: str) -> None:
    created = tenant.client.files.create(file=(name, DATA), purpose="user_data")
    assert created.filename == name
    assert tenant.client.files.retrieve(created.id).filename == name
    assert [f.filename for f in tenant.client.files.list() if f.id == created.id] == [name]
    with gateway.http(tenant.key) as http:
        content = http.get(f"/v1/files/{created.id}/content")
    assert content.status_code == 200 and content.content == DATA
    assert _disposition_name(content) == name
    content.headers["content-disposition"].encode("ascii")  # the header itself stays ASCII


@pytest.mark.parametrize(
    "name", ["训练数据.jsonl", "café.jsonl", "😀 party 🎉.jsonl", "данные.jsonl", 'say "hi".jsonl', "a:b;c=d.jsonl"]
)
def test_names_in_any_script_round_trip_through_the_sdk(gateway: Gateway, tenant: Tenant, name: str) -> None:
    _assert_round_trip(gateway, tenant, name)


@FUZZ
@given(name=names)
def test_any_name_round_trips_exactly(gateway: Gateway, tenant: Tenant, name: str) -> None:
    _assert_round_trip(gateway, tenant, name)


def _upload_with_disposition(gateway: Gateway, tenant: Tenant, disposition: bytes) -> httpx.Response:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        b"--b\r\nContent-Disposition: "
        + disposition
        + b"\r\nContent-Type: application/octet-stream\r\n\r\n"
        + DATA
        + b"\r\n--b--\r\n"
    )
    with gateway.http(tenant.key) as http:
        return http.post("/v1/files", content=body, headers={"content-type": "multipart/form-data; boundary=b"})


@pytest.mark.parametrize(
    ("disposition", "stored"),
    [
        # RFC 6266: filename* wins over the plain fallback, in either order.
        (
            b'form-data; name="file"; filename="fallback.jsonl"; filename*=UTF-8\'\'%E8%AE%AD%E7%BB%83.jsonl',
            "训练.jsonl",
        ),
        (b'form-data; name="file"; filename*=utf-8\'en\'caf%C3%A9.jsonl; filename="x.jsonl"', "café.jsonl"),
        (b"form-data; name=\"file\"; filename*=ISO-8859-1''caf%E9.jsonl", "café.jsonl"),
        # Raw UTF-8 (RFC 7578), and raw Latin-1 from an old client.
        ('form-data; name="file"; filename="данные.jsonl"'.encode(), "данные.jsonl"),
        (b'form-data; name="file"; filename="caf\xe9.jsonl"', "café.jsonl"),
        # Quoted-pairs and a ';' inside the quotes.
        (b'form-data; name="file"; filename="a\\"b;c.jsonl"', 'a"b;c.jsonl'),
        (b'form-data; name="file"; filename=C:\\\\Users\\\\me\\\\plain.jsonl', "plain.jsonl"),
    ],
)
def test_content_disposition_forms(gateway: Gateway, tenant: Tenant, disposition: bytes, stored: str) -> None:
    response = _upload_with_disposition(gateway, tenant, disposition)
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == stored
    assert tenant.client.files.retrieve(response.json()["id"]).filename == stored


@pytest.mark.parametrize(
    "disposition",
    [
        b"form-data; name=\"file\"; filename*=UTF-8''%FF%FE.jsonl",  # not UTF-8
        b"form-data; name=\"file\"; filename*=KOI8-R''%E4.jsonl",  # a charset RFC 5987 does not require
        b'form-data; name="file"; filename*=no-quotes-at-all',
        b"form-data; name=\"file\"; filename*=UTF-8''a%00b.jsonl",  # NUL
        b'form-data; name="file"; filename="a%00b.jsonl"',  # NUL as browsers and httpx escape it
        b'form-data; name="file"; filename="' + b"x" * 9000 + b'.jsonl"',  # an unbounded header
    ],
)
def test_undecodable_names_are_400s(gateway: Gateway, tenant: Tenant, disposition: bytes) -> None:
    response = _upload_with_disposition(gateway, tenant, disposition)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert tenant.client.files.list().data == []


def test_nul_in_a_name_through_the_sdk_is_a_bad_request(tenant: Tenant) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        tenant.client.files.create(file=("a\x00b.jsonl", DATA), purpose="fine-tune")
    assert caught.value.body["param"] == "file"  # type: ignore[index]
    assert tenant.client.files.list().data == []


# Every decimal digit Unicode knows, and the other numeric characters int() or isdigit() take (superscripts).
non_ascii_numbers = st.text(
    st.characters(categories=("Nd", "No"), exclude_characters="0123456789"), min_size=1, max_size=10
).map(lambda digits: "3" + digits)


@FUZZ
@given(seconds=non_ascii_numbers)
def test_expiry_seconds_are_ascii_digits_only(gateway: Gateway, tenant: Tenant, seconds: str) -> None:
    fields = {"purpose": "user_data", "expires_after[anchor]": "created_at", "expires_after[seconds]": seconds}
    with gateway.http(tenant.key) as http:
        response = http.post("/v1/files", data=fields, files={"file": ("a.jsonl", DATA)})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "expires_after.seconds"


@pytest.mark.parametrize("seconds", ["²³¹⁰", "٣٦٠٠", "\uff13\uff16\uff10\uff10", "1" * 50, "36_00", "+3600", "3600.0"])
def test_expiry_seconds_examples(gateway: Gateway, tenant: Tenant, seconds: str) -> None:
    fields = {"purpose": "user_data", "expires_after[anchor]": "created_at", "expires_after[seconds]": seconds}
    with gateway.http(tenant.key) as http:
        response = http.post("/v1/files", data=fields, files={"file": ("a.jsonl", DATA)})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "expires_after.seconds"
        ok = http.post("/v1/files", data={**fields, "expires_after[seconds]": " 3600 "}, files={"file": ("a", DATA)})
    assert ok.status_code == 200
