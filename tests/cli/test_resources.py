"""Every resource group against a served gateway: files, models, completions, chat, fine-tunes without training,
aliases, projects, keys (over HTTP and --local in the database), usage; --json everywhere; ids whole at 80 columns."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.cli.runner import ftgw
from tests.conftest import Gateway, Tenant, make_tenant
from tests.fine_tuning.test_training import MODEL, qa_rows


def ok(result: object) -> str:
    assert result.returncode == 0, result.stdout + result.stderr  # type: ignore[attr-defined]
    return str(result.stdout)  # type: ignore[attr-defined]


def _data(tmp_path: Path, n: int = 12) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in qa_rows(n)))
    return path


def test_files_upload_list_get_content_delete(gateway: Gateway, tenant: Tenant, tmp_path: Path) -> None:
    data = _data(tmp_path)
    run: dict[str, Any] = {"gateway": gateway, "key": tenant.key}

    file_id = ok(ftgw("files", "upload", "-f", str(data), **run)).strip()

    assert re.fullmatch(r"file-\w+", file_id)
    assert file_id in ok(ftgw("files", "list", **run))
    listed = json.loads(ok(ftgw("files", "list", "--json", **run)))
    assert [f["id"] for f in listed["data"]] == [file_id]
    got = json.loads(ok(ftgw("files", "get", "-i", file_id, "--json", **run)))
    assert (got["filename"], got["bytes"]) == ("qa.jsonl", data.stat().st_size)
    assert ok(ftgw("files", "content", "-i", file_id, **run)) == data.read_text()
    ok(ftgw("files", "delete", "-i", file_id, **run))
    assert ftgw("files", "get", "-i", file_id, **run).returncode == 1


def test_models_list_and_get(gateway: Gateway, tenant: Tenant) -> None:
    listed = ok(ftgw("models", "list", gateway=gateway, key=tenant.key))
    assert MODEL in listed
    got = json.loads(ok(ftgw("models", "get", "-i", MODEL, "--json", gateway=gateway, key=tenant.key)))
    assert got["id"] == MODEL


def test_completions_and_chat_stream_by_default(gateway: Gateway, tenant: Tenant) -> None:
    run: dict[str, Any] = {"gateway": gateway, "key": tenant.key}
    streamed = ok(
        ftgw("completions", "create", "-m", MODEL, "-p", "Hello", "--max-tokens", "5", "--temperature", "0", **run)
    )
    whole = json.loads(
        ok(
            ftgw(
                "completions",
                "create",
                "-m",
                MODEL,
                "-p",
                "Hello",
                "--max-tokens",
                "5",
                "--temperature",
                "0",
                "--json",
                **run,
            )
        )
    )
    assert streamed == whole["choices"][0]["text"] + "\n"

    several = ftgw(
        "completions",
        "create",
        "-m",
        MODEL,
        "-p",
        "Hi",
        "-n",
        "2",
        "--max-tokens",
        "3",
        "--stop",
        "**STOP**",
        "--logprobs",
        "2",
        **run,
    )
    assert several.returncode == 0, several.stderr
    assert "--- answer 0" in several.stderr and "--- answer 1" in several.stderr

    chat = ftgw(
        "chat",
        "create",
        "-m",
        MODEL,
        "-g",
        "system",
        "Be brief.",
        "-g",
        "user",
        "Hello",
        "--max-tokens",
        "4",
        "--stop",
        "**STOP**",
        "--json",
        **run,
    )
    body = json.loads(ok(chat))
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    ask = ("chat", "create", "-m", MODEL, "-g", "user", "Hello", "--max-tokens", "4", "--temperature", "0")
    whole_chat = json.loads(ok(ftgw(*ask, "--json", **run)))
    assert ok(ftgw(*ask, **run)) == whole_chat["choices"][0]["message"]["content"] + "\n"


def test_fine_tunes_list_keeps_ids_whole_in_80_columns_and_piped(
    gateway: Gateway, tenant: Tenant, tmp_path: Path
) -> None:
    run: dict[str, Any] = {"gateway": gateway, "key": tenant.key}
    created = ok(
        ftgw(
            "fine-tunes", "create", "-t", str(_data(tmp_path)), "-m", MODEL, "--suffix", "a" * 40, "--no-follow", **run
        )
    )
    job_id = re.search(r"Created fine-tuning job: (ftjob-\w+)", created).group(1)  # type: ignore[union-attr]
    file_id = re.search(r"Uploaded file from .*: (file-\w+)", created).group(1)  # type: ignore[union-attr]

    for columns in ("80", "40"):
        listed = ok(ftgw("fine-tunes", "list", COLUMNS=columns, **run))
        assert job_id in listed
        files = ok(ftgw("files", "list", COLUMNS=columns, **run))
        assert file_id in files and "qa.jsonl" in files  # the id whole, and no column dropped to make room
    shown = ok(ftgw("fine-tunes", "get", "-i", job_id, COLUMNS="80", **run))
    assert f"id                {job_id}" in shown
    as_json = json.loads(ok(ftgw("fine-tunes", "get", "-i", job_id, "--json", **run)))
    assert as_json["id"] == job_id and as_json["status"] in ("validating_files", "queued")
    assert json.loads(ok(ftgw("fine-tunes", "events", "-i", job_id, "--json", **run)))["data"]
    assert json.loads(ok(ftgw("fine-tunes", "checkpoints", "-i", job_id, "--json", **run)))["data"] == []
    cancelled = ok(ftgw("fine-tunes", "cancel", "-i", job_id, **run))
    assert cancelled.strip() == f"{job_id}: cancelled"
    no_results = ftgw("fine-tunes", "results", "-i", job_id, **run)
    assert no_results.returncode == 1 and "cancelled before its first step" in no_results.stderr


def test_aliases_create_version_promote_rollback_changes(gateway: Gateway, tenant: Tenant) -> None:
    run: dict[str, Any] = {"gateway": gateway, "key": tenant.key}
    ok(ftgw("aliases", "create", "-n", "cli-bot", "--description", "from the CLI", **run))
    assert "version 1 (active)" in ok(ftgw("aliases", "add-version", "-n", "cli-bot", "--target", MODEL, **run))
    assert "version 2" in ok(
        ftgw("aliases", "add-version", "-n", "cli-bot", "--target", f"{MODEL}=3", "--note", "second", **run)
    )
    versions = json.loads(ok(ftgw("aliases", "versions", "-n", "cli-bot", "--json", **run)))
    assert sorted(v["version"] for v in versions["data"]) == [1, 2]
    assert "version 1 is active" in ok(ftgw("aliases", "promote", "-n", "cli-bot", "--version", "1", **run))
    assert "version 2 is active" in ok(ftgw("aliases", "rollback", "-n", "cli-bot", **run))
    changes = json.loads(ok(ftgw("aliases", "changes", "-n", "cli-bot", "--json", **run)))
    assert {"alias.created", "version.promoted", "version.rolled_back"} <= {c["action"] for c in changes["data"]}
    assert "cli-bot" in ok(ftgw("aliases", "list", **run))
    answer = json.loads(
        ok(ftgw("chat", "create", "-m", "cli-bot", "-g", "user", "hi", "--max-tokens", "2", "--json", **run))
    )
    assert answer["model"] == MODEL


def test_an_alias_version_takes_a_release_gate_from_json_or_a_file(
    gateway: Gateway, tenant: Tenant, tmp_path: Path
) -> None:
    run: dict[str, Any] = {"gateway": gateway, "key": tenant.key}
    criterion = {
        "type": "string_check",
        "name": "Answers",
        "input": "{{sample.output_text}}",
        "reference": "",
        "operation": "ne",
    }
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    eval_id = tenant.client.evals.create(
        name="gate", data_source_config={"type": "custom", "item_schema": schema}, testing_criteria=[criterion]
    ).id
    gate = {
        "eval_id": eval_id,
        "data_source": {
            "type": "completions",
            "source": {"type": "file_content", "content": [{"item": {"q": "hi"}}]},
            "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.q}}"}]},
        },
        "min_pass_rate": 0.5,
    }
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    ok(ftgw("aliases", "create", "-n", "gated-bot", **run))
    added = ftgw(
        "aliases",
        "add-version",
        "-n",
        "gated-bot",
        "--target",
        MODEL,
        "--no-activate",
        "--gate",
        str(tmp_path / "gate.json"),
        **run,
    )
    assert "version 1" in ok(added)
    versions = json.loads(ok(ftgw("aliases", "versions", "-n", "gated-bot", "--json", **run)))
    assert versions["data"][0]["gate"]["eval_id"] == eval_id
    not_json = ftgw("aliases", "add-version", "-n", "gated-bot", "--target", MODEL, "--gate", "{nope", **run)
    assert not_json.returncode == 2 and "--gate" in not_json.stderr
    unknown = ftgw(
        "aliases",
        "add-version",
        "-n",
        "gated-bot",
        "--target",
        MODEL,
        "--gate",
        json.dumps({**gate, "eval_id": "eval_nope"}),
        **run,
    )
    assert unknown.returncode == 1 and "eval_nope" in unknown.stderr


def test_projects_and_keys_with_an_admin_key(gateway: Gateway) -> None:
    run: dict[str, Any] = {"gateway": gateway, "key": gateway.admin_key}
    name = f"cli-{id(gateway)}"
    project_id = ok(ftgw("projects", "create", "-n", name, **run)).strip()
    assert project_id in ok(ftgw("projects", "list", **run))
    assert json.loads(ok(ftgw("projects", "get", "-p", name, "--json", **run)))["id"] == project_id

    created = ftgw("keys", "create", "-p", name, "--role", "member", **run)
    secret = ok(created).strip()
    assert secret.startswith("sk-") and "shown this once" in created.stderr
    assert "tiny-smollm2" in ok(ftgw("models", "list", gateway=gateway, key=secret))
    keys = json.loads(ok(ftgw("keys", "list", "-p", project_id, "--json", **run)))
    key_id = keys["data"][0]["id"]
    ok(ftgw("keys", "revoke", "-p", project_id, "-i", key_id, **run))
    assert ftgw("models", "list", gateway=gateway, key=secret).returncode == 1

    member = make_tenant(gateway)
    refused = ftgw("projects", "list", gateway=gateway, key=member.key)
    assert refused.returncode == 1 and "(403)" in refused.stderr


def test_keys_create_local_mints_an_admin_key_in_the_database(gateway: Gateway) -> None:
    """The operator's way back in: no key, no HTTP; the gateway's settings name the database."""
    database = {"FTGW_DATABASE_URL": gateway.settings.resolved_database_url, "FTGW_ENV": "test"}

    created = ftgw("keys", "create", "--project", "default", "--role", "admin", "--local", **database)

    secret = ok(created).strip()
    assert secret.startswith("sk-") and len(created.stdout.splitlines()) == 1
    projects = ftgw("projects", "list", "--json", gateway=gateway, key=secret)
    assert "default" in {p["name"] for p in json.loads(ok(projects))["data"]}
    missing = ftgw("keys", "create", "--project", "nope", "--local", **database)
    assert missing.returncode == 1 and "nope" in missing.stderr and "Traceback" not in missing.stderr


def test_usage_completions(gateway: Gateway, tenant: Tenant) -> None:
    run: dict[str, Any] = {"gateway": gateway, "key": tenant.key}
    ok(ftgw("completions", "create", "-m", MODEL, "-p", "Hi", "--max-tokens", "2", "--json", **run))

    page = json.loads(
        ok(
            ftgw(
                "usage", "completions", "--since", "1h", "--bucket-width", "1h", "--group-by", "model", "--json", **run
            )
        )
    )

    results = [r for b in page["data"] for r in b["results"]]
    assert any(r["model"] == MODEL and r["num_model_requests"] >= 1 for r in results)
    assert MODEL in ok(ftgw("usage", "completions", "--since", "1h", "--group-by", "model", **run))
    assert ftgw("usage", "completions", "--since", "soon", **run).returncode == 2


@pytest.mark.parametrize("group", ["files", "models", "fine-tunes", "aliases", "projects", "keys"])
def test_every_list_and_get_takes_json(group: str) -> None:
    for command in ("list", "get"):
        help_text = ftgw(group, command, "--help")
        if help_text.returncode == 0:
            assert "--json" in help_text.stdout, (group, command)
