"""Every format the CLI reads, read by the API too, detected from the content of the stored file, not its name.

Through the openai SDK over real HTTP, on SQLite and PostgreSQL: a 20-row workbook, CSV, TSV and a JSON array,
uploaded under a missing or misleading name, are reported in their real format and prepared into JSONL; broken
workbooks are 400s that say what is wrong.
"""

from __future__ import annotations

import io
import json
import zipfile

import openpyxl
import pytest

from tests.conftest import Gateway, Tenant, wait_until_validated

ROWS = [(f"What is {i} plus {i}?", f" {2 * i} END") for i in range(20)]


def _xlsx() -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["Prompt", "Completion"])
    for row in ROWS:
        sheet.append(list(row))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _delimited(delimiter: str) -> bytes:
    def cell(text: str) -> str:
        return f'"{text}"' if delimiter in text else text

    lines = [delimiter.join(("prompt", "completion"))] + [delimiter.join(map(cell, row)) for row in ROWS]
    return ("\r\n".join(lines) + "\r\n").encode()


def _json_array() -> bytes:
    return json.dumps([{"prompt": p, "completion": c} for p, c in ROWS], indent=2).encode()


FORMATS = {"xlsx": _xlsx, "csv": lambda: _delimited(","), "tsv": lambda: _delimited("\t"), "json": _json_array}
MISLEADING = {"xlsx": "train.jsonl", "csv": "train.xlsx", "tsv": "train.csv", "json": "train.jsonl"}


@pytest.mark.parametrize("kind", sorted(FORMATS))
@pytest.mark.parametrize("naming", ["none", "misleading", "honest"])
def test_report_and_prepare_read_the_content(gateway: Gateway, tenant: Tenant, kind: str, naming: str) -> None:
    name = {"none": "upload", "misleading": MISLEADING[kind], "honest": f"train.{kind}"}[naming]
    source = tenant.client.files.create(file=(name, FORMATS[kind]()), purpose="fine-tune")

    # Validation sees the real format too: fine-tuning takes JSONL, so it points to prepare.
    validated = wait_until_validated(tenant.client, source.id)
    assert validated.status == "error" and "prepare" in (validated.status_details or "")
    assert kind.upper() in (validated.status_details or "")
    with gateway.http(tenant.key) as http:
        report = http.get(f"/v1/datasets/{source.id}/report")
        prepared = http.post(f"/v1/datasets/{source.id}/prepare", json={})
    assert report.status_code == 200, report.text
    assert (report.json()["source_type"], report.json()["format"]) == (kind, "prompt_completion")
    assert (report.json()["n_examples"], report.json()["n_valid"]) == (20, 20)
    assert prepared.status_code == 200, prepared.text
    assert prepared.json()["n_train"] == 20

    training = prepared.json()["training_file"]
    lines = tenant.client.files.content(training).content.decode().splitlines()
    examples = [json.loads(line) for line in lines]
    assert [(e["prompt"], e["completion"]) for e in examples] == ROWS
    assert wait_until_validated(tenant.client, training).status == "processed"


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"PK\x03\x04" + bytes(range(256)) * 8, "not a valid XLSX"),  # zip magic, garbage after
        (_xlsx()[: len(_xlsx()) // 2], "not a valid XLSX"),  # a workbook cut in half
        (_zip({"notes.txt": b"prompt,completion"}), "not an XLSX workbook"),  # a zip that is no workbook
        (_zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<broken"}), "cannot be read as a workbook"),
    ],
)
def test_corrupt_workbooks_are_400s_that_say_why(gateway: Gateway, tenant: Tenant, data: bytes, says: str) -> None:
    source = tenant.client.files.create(file=("book.xlsx", data), purpose="fine-tune")
    with gateway.http(tenant.key) as http:
        for response in (
            http.get(f"/v1/datasets/{source.id}/report"),
            http.post(f"/v1/datasets/{source.id}/prepare", json={}),
        ):
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert (error["type"], error["code"], error["param"]) == (
                "invalid_request_error",
                "invalid_xlsx",
                "file_id",
            )
            assert says in error["message"]
