"""`ftgw migrate openai` as an operator runs it, against the gateway under test and its upstream (a second ftgw):
the provider's inventory, a plan that moves nothing, a whole run that writes its report and switches the kept name,
a refusal to start without a confirmation, an upstream failure resumed, Ctrl-C and a cancelled migration; and
`ftgw migrate` alone still migrating a database."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

from tests.cli.runner import ftgw, popen, short_error
from tests.cli.test_fine_tunes import _read_until
from tests.migration.conftest import MODEL, PROVIDER, World, prompt_lines


def _run(world: World, key: str, *args: str, **kwargs: Any) -> Any:
    return ftgw("migrate", "openai", "--provider", PROVIDER, *args, gateway=world.downstream, key=key, **kwargs)


def _planned_id(stdout: str) -> str:
    found = re.search(r"ftgw migrate openai --resume (mig-\w+)", stdout)
    assert found, stdout
    return found.group(1)


def _line(stdout: str, start: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(start))


def test_list_shows_the_upstream_jobs_and_their_models(world: World) -> None:
    tenant = world.admin()

    listed = _run(world, tenant.key, "--list")

    assert listed.returncode == 0, listed.stderr
    for job in (world.support, world.triage):
        assert job.fine_tuned_model is not None
        row = _line(listed.stdout, job.id)
        assert job.fine_tuned_model in row and "succeeded" in row
        models = listed.stdout.split("Fine-tuned models on", 1)[1]
        assert job.fine_tuned_model in models
    files = listed.stdout.split("Files on", 1)[1].split("Fine-tuned models on", 1)[0]
    assert world.support.training_file in files
    assert world.triage.training_file not in files  # deleted upstream


def test_plan_only_shows_the_plan_and_moves_nothing(world: World) -> None:
    tenant = world.admin()

    planned = _run(world, tenant.key, "--base-model", MODEL, "--plan-only")

    assert planned.returncode == 0, planned.stderr
    migration_id = _planned_id(planned.stdout)
    with world.http(tenant) as http:
        migration = http.get(f"/v1/migrations/{migration_id}").json()
        listed = http.get("/v1/migrations").json()["data"]
        files = http.get("/v1/files").json()["data"]
    assert [m["id"] for m in listed] == [migration_id]
    assert migration["status"] == "planned"
    assert files == []
    items = {item["upstream_job"]: item for item in migration["items"]}
    assert items[world.support.id]["action"] == "copy"
    triage = items[world.triage.id]
    assert triage["action"] == "skip"  # its file is gone upstream and no prompts were given to distil from
    assert triage["reason"] and "gone" in triage["reason"]
    out = planned.stdout
    support_row = _line(out, world.support.id)
    assert world.support.fine_tuned_model in support_row and " copy " in support_row
    triage_row = _line(out, world.triage.id)
    assert world.triage.fine_tuned_model in triage_row and " skip " in triage_row
    assert triage["reason"] in " ".join(out.split())  # the reason, however the column folds it
    # The translations of the job that moves, then the totals as the API gives them.
    assert f"{world.support.id}, translated for the new job:" in out
    assert f"{world.triage.id}, translated" not in out
    totals = migration["totals"]
    assert re.search(rf"Files to copy\s+{totals['files']} \(", out), out
    assert re.search(rf"Upstream calls\s+at most {totals['upstream_calls']}\n", out), out
    assert re.search(r"Estimated training time\s+(unknown|about \d+ minutes?)\n", out), out
    assert re.search(r"Estimated upstream cost\s+(unknown|\$\d+\.\d{4})\n", out), out
    for note in totals["notes"]:
        assert f"note: {note}" in out


def test_a_local_prompt_set_is_uploaded_and_the_job_without_data_is_distilled(world: World, tmp_path: Path) -> None:
    tenant = world.admin()
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(prompt_lines(6))

    planned = _run(world, tenant.key, "--base-model", MODEL, "--distil-prompts", str(prompts), "--plan-only")

    assert planned.returncode == 0, planned.stderr
    with world.http(tenant) as http:
        migration = http.get(f"/v1/migrations/{_planned_id(planned.stdout)}").json()
        files = http.get("/v1/files").json()["data"]
    assert [(f["filename"], f["purpose"]) for f in files] == [("prompts.jsonl", "user_data")]
    assert f"Uploaded file from {prompts}: {files[0]['id']}" in planned.stdout
    items = {item["upstream_job"]: item for item in migration["items"]}
    assert items[world.triage.id]["action"] == "distil"
    assert " distil " in _line(planned.stdout, world.triage.id)
    assert migration["totals"]["to_distil"] == 1


def test_a_whole_run_writes_the_report_and_switches_the_kept_name(world: World, tmp_path: Path) -> None:
    tenant = world.admin()
    name = world.support.fine_tuned_model
    assert name is not None

    run = _run(
        world, tenant.key, "--job", world.support.id, "--base-model", MODEL, "--learning-rate-multiplier", "30",
        "--parity-rows", "2", "--yes", "--switch", "--report-dir", str(tmp_path), timeout=900,
    )  # fmt: skip

    assert run.returncode == 0, run.stdout + run.stderr
    migration_id = re.search(r"^Migration (mig-\w+):", run.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
    report = json.loads((tmp_path / f"migration-{migration_id}.json").read_text())
    markdown = (tmp_path / f"migration-{migration_id}.md").read_text()
    assert report["summary"]["completed"] == 1 and report["summary"]["switched"]
    assert name in markdown
    item = report["items"][0]
    new_model = item["local_model"]
    assert new_model.startswith(f"ft:{MODEL}:")
    # Progress as it went: one line per step, the new job and model named when they appear.
    out = run.stdout
    assert re.search(rf"^{world.support.id}: \w+ -> train\b", out, re.MULTILINE), out
    assert re.search(rf"^{world.support.id}: \w+( -> \w+)? \(job {item['local_job']}\b", out, re.MULTILINE), out
    assert re.search(rf"^{world.support.id}: \w+ -> \w+ \(model {re.escape(new_model)}\b", out, re.MULTILINE), out
    # The step may reach done in one poll and the item complete in the next ("train -> done (model ...)", then
    # "done (completed)"): either way a line says it is done and completed.
    assert re.search(rf"^{world.support.id}: (\w+ -> )?done \(.*\bcompleted\)$", out, re.MULTILINE), out
    assert f"{migration_id}: running -> completed" in out, out
    # The summary: the new model and parity per criterion, then where the report went and what was switched.
    criterion = item["parity"]["criteria"][0]
    summary_row = _line(run.stdout.split(f"Migration {migration_id} completed", 1)[1], world.support.id)
    assert new_model in summary_row and criterion["name"] in summary_row and "points" in summary_row
    assert f"wrote {tmp_path / f'migration-{migration_id}.json'}" in run.stdout
    assert f"wrote {tmp_path / f'migration-{migration_id}.md'}" in run.stdout
    assert f"{name} -> {new_model} (alias version 2" in run.stdout
    with world.http(tenant) as http:
        alias = http.get(f"/v1/registry/aliases/{name}").json()
    assert alias["active_version"] == 2
    answer = tenant.client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "Is 7 a number?"}], max_tokens=3
    )
    assert answer.model == new_model


def test_without_yes_and_no_terminal_it_refuses_to_start(world: World) -> None:
    tenant = world.admin()

    refused = _run(world, tenant.key, "--job", world.support.id, "--base-model", MODEL, input="")

    assert refused.returncode == 2
    lines = short_error(refused)
    assert "--yes" in lines[1]
    migration_id = _planned_id(lines[1])
    with world.http(tenant) as http:
        listed = http.get("/v1/migrations").json()["data"]
        files = http.get("/v1/files").json()["data"]
    assert [(m["id"], m["status"]) for m in listed] == [(migration_id, "planned")]
    assert files == []


def test_a_failed_migration_exits_1_and_resumes_where_it_stopped(world: World, tmp_path: Path) -> None:
    tenant = world.admin()
    validation = world.support.validation_file
    assert validation is not None
    world.proxy.fail_matching = f"/v1/files/{validation}/content"
    try:
        failed = _run(
            world, tenant.key, "--job", world.support.id, "--base-model", MODEL, "--learning-rate-multiplier", "30",
            "--parity-rows", "2", "--max-regression", "0", "--yes", "--poll", "0.3", timeout=300,
        )  # fmt: skip
    finally:
        world.proxy.fail_matching = None

    assert failed.returncode == 1, failed.stdout + failed.stderr
    lines = short_error(failed)
    migration_id = re.search(r"^Migration (mig-\w+):", failed.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert lines[0].startswith(f"Error: Migration {migration_id} failed: The provider {PROVIDER} failed")
    assert lines[1] == f"Resume it from the step it stopped at: ftgw migrate openai --resume {migration_id}"
    assert f"{migration_id}: running -> failed" in failed.stdout
    assert not list(tmp_path.iterdir())  # no report for a migration that did not end

    resumed = ftgw(
        "migrate", "openai", "--resume", migration_id, "--switch", "--report-dir", str(tmp_path),
        gateway=world.downstream, key=tenant.key, timeout=300,
    )  # fmt: skip

    assert f"{migration_id}: queued" in resumed.stdout or f"{migration_id}: running" in resumed.stdout
    assert f"{migration_id}: running -> completed" in resumed.stdout, resumed.stdout + resumed.stderr
    report = json.loads((tmp_path / f"migration-{migration_id}.json").read_text())
    assert report["summary"]["completed"] == 1
    parity = report["items"][0]["parity"]
    if parity["holds"]:
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert report["summary"]["switched"]
    else:  # max regression 0 and the new model did worse: the switch is refused, the report still written
        assert resumed.returncode == 1, resumed.stdout + resumed.stderr
        lines = short_error(resumed)
        assert "Parity does not hold" in lines[0]
        assert lines[1].endswith(f"ftgw migrate openai --resume {migration_id} --switch --force")
        assert not report["summary"]["switched"]


def test_ctrl_c_leaves_it_running_and_a_cancelled_one_exits_4(world: World) -> None:
    tenant = world.admin()
    args = ("migrate", "openai", "--provider", PROVIDER, "--job", world.support.id, "--base-model", MODEL,
            "--learning-rate-multiplier", "30", "--parity-rows", "2", "--yes")  # fmt: skip

    started = popen(*args, gateway=world.downstream, key=tenant.key)
    seen = _read_until(started, f"{world.support.id}: ")
    started.send_signal(signal.SIGINT)
    rest, _ = started.communicate(timeout=60)

    assert started.returncode == 130, seen + rest
    migration_id = re.search(r"^Migration (mig-\w+):", seen, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert (
        f"the migration goes on in the gateway. Follow it again with: ftgw migrate openai --resume {migration_id}"
        in rest
    )
    with world.http(tenant) as http:
        assert http.get(f"/v1/migrations/{migration_id}").json()["status"] in ("queued", "running")
        followed = popen("migrate", "openai", "--resume", migration_id, gateway=world.downstream, key=tenant.key)
        seen = _read_until(followed, f"{world.support.id}: ")
        http.post(f"/v1/migrations/{migration_id}/cancel").raise_for_status()
        rest, _ = followed.communicate(timeout=60)

    assert followed.returncode == 4, seen + rest
    assert re.search(rf"^{migration_id}: (queued|running) -> cancelled$", rest, re.MULTILINE), rest
    assert f"Migration {migration_id} was cancelled" in rest


def test_migrate_alone_still_migrates_the_database_and_lists_openai(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ftgw.db'}"

    migrated = ftgw("migrate", FTGW_DATABASE_URL=url, FTGW_DATA_DIR=str(tmp_path))
    helped = ftgw("migrate", "--help")

    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == f"database at head: {url}"
    assert helped.returncode == 0
    assert re.search(r"^\s+openai\s", helped.stdout, re.MULTILINE), helped.stdout
