"""Leaving an upstream OpenAI-compatible provider: plan, copy, retrain, keep the names, distil, prove parity, switch;
and an upstream that fails half-way, resumed. The upstream is a second ftgw (tests/migration/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant, make_tenant
from tests.migration.conftest import MODEL, PRICES, PROVIDER, World, prompt_lines

OVERRIDES = {"learning_rate_multiplier": 30}  # the tiny test model needs a rate no real model would


def create(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/v1/migrations", json={"provider": PROVIDER, "base_model": MODEL, **body})
    assert response.status_code == 201, response.text
    return response.json()


def wait_until(http: httpx.Client, migration_id: str, statuses: set[str], timeout: float = 420) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        migration = http.get(f"/v1/migrations/{migration_id}").json()
        if migration["status"] in statuses:
            return migration
        assert time.monotonic() < deadline, f"migration still {migration['status']}: {migration['items']}"
        time.sleep(0.3)


def upstream_bytes(world: World, file_id: str) -> bytes:
    return world.acme.client.files.content(file_id).content


def item_of(migration: dict[str, Any], job_id: str) -> dict[str, Any]:
    return next(item for item in migration["items"] if item["upstream_job"] == job_id)


@pytest.fixture(scope="module")
def moved(world: World) -> tuple[Tenant, dict[str, Any], list[str]]:
    """One migration of both upstream jobs, run to its end; what callers of the old id got while it ran."""
    tenant = world.admin()
    with world.http(tenant) as http:
        prompts = http.post(
            "/v1/files", files={"file": ("prompts.jsonl", prompt_lines(24))}, data={"purpose": "user_data"}
        ).json()["id"]
        planned = create(
            http,
            hyperparameters=OVERRIDES,
            distil={"prompts_file": prompts, "max_tokens": 8, "holdout": 0.25},
            parity={"max_rows": 4, "max_regression": 100},
        )
        http.post(f"/v1/migrations/{planned['id']}/start").raise_for_status()
        answered_by: list[str] = []
        old_id = world.support.fine_tuned_model
        deadline = time.monotonic() + 120
        while not answered_by:  # the name works as soon as the alias is made, long before the new model exists
            assert time.monotonic() < deadline, "the upstream model's name never answered"
            try:
                answer = tenant.client.chat.completions.create(
                    model=old_id, messages=[{"role": "user", "content": "Is 7 a number?"}], max_tokens=3
                )
                answered_by.append(answer.model)
            except Exception:
                time.sleep(0.3)
        done = wait_until(http, planned["id"], {"completed", "failed", "cancelled"})
    return tenant, done, answered_by


def test_the_upstream_inventory_lists_its_jobs_files_and_models(world: World) -> None:
    tenant = world.admin()
    with world.http(tenant) as http:
        inventory = http.get(f"/v1/migrations/sources/{PROVIDER}").json()
        member = http.get(
            f"/v1/migrations/sources/{PROVIDER}",
            headers={"Authorization": f"Bearer {make_tenant(world.downstream).key}"},
        )
        unknown = http.get("/v1/migrations/sources/nowhere")
    jobs = {job["id"]: job for job in inventory["jobs"]}
    assert jobs[world.support.id]["fine_tuned_model"] == world.support.fine_tuned_model
    assert jobs[world.triage.id]["status"] == "succeeded"
    assert world.support.training_file in {f["id"] for f in inventory["files"]}
    assert world.triage.training_file not in {f["id"] for f in inventory["files"]}  # deleted there
    assert {world.support.fine_tuned_model, world.triage.fine_tuned_model} <= {m["id"] for m in inventory["models"]}
    assert member.status_code == 403
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "provider"


def test_the_plan_shows_what_will_move_and_moves_nothing(world: World) -> None:
    tenant = world.admin()
    with world.http(tenant) as http:
        prompts = http.post(
            "/v1/files", files={"file": ("prompts.jsonl", prompt_lines(6))}, data={"purpose": "user_data"}
        ).json()["id"]
        plan = create(http, distil={"prompts_file": prompts, "max_tokens": 16}, parity={"max_rows": 5})
        files = http.get("/v1/files").json()["data"]
        aliases = http.get("/v1/registry/aliases").json()["data"]
        other = world.admin()
        with world.http(other) as theirs:
            assert theirs.get(f"/v1/migrations/{plan['id']}").status_code == 404
            assert theirs.post(f"/v1/migrations/{plan['id']}/start").status_code == 404
    assert plan["status"] == "planned"
    support, triage = item_of(plan, world.support.id), item_of(plan, world.triage.id)
    assert support["action"] == "copy"
    assert support["alias"] == world.support.fine_tuned_model
    assert triage["action"] == "distil"
    assert world.triage.training_file in triage["reason"] and "gone" in triage["reason"]
    translations = {t["field"]: t for t in support["translations"]}
    assert translations["n_epochs"]["upstream"] == translations["n_epochs"]["local"] == 1
    assert translations["learning_rate_multiplier"]["upstream"] == 30
    assert translations["learning_rate_multiplier"]["local"] == "auto"  # does not transfer to LoRA here
    assert translations["method"]["local"] == "supervised"
    totals = plan["totals"]
    sizes = [len(upstream_bytes(world, f)) for f in (world.support.training_file, world.support.validation_file)]
    assert (totals["files"], totals["bytes"]) == (2, sum(sizes))
    assert (totals["to_copy"], totals["to_distil"], totals["aliases"]) == (1, 1, 2)
    assert totals["upstream_calls"] == 6 + 2 * 5
    # Priced from the provider's configuration: at most 6 answers of 16 tokens, and the prompts' tokens.
    assert 6 * 16 * PRICES[MODEL]["output"] / 1e6 < totals["estimated_upstream_cost"] < 0.01
    assert [f["id"] for f in files] == [prompts]  # nothing copied
    assert aliases == []
    with pytest.raises(Exception, match="does not exist"):
        tenant.client.chat.completions.create(
            model=world.support.fine_tuned_model, messages=[{"role": "user", "content": "hi"}]
        )


def test_bad_requests_are_refused_with_the_field(world: World) -> None:
    tenant = world.admin()
    with world.http(tenant) as http:
        unknown_job = http.post(
            "/v1/migrations", json={"provider": PROVIDER, "base_model": MODEL, "jobs": ["ftjob-nope"]}
        )
        unknown_base = http.post("/v1/migrations", json={"provider": PROVIDER, "base_model": "no-such-base"})
        no_prompts = http.post(
            "/v1/migrations", json={"provider": PROVIDER, "base_model": MODEL, "distil": {"prompts_file": "file-nope"}}
        )
        planned = create(http, jobs=[world.support.id])
        cancelled = http.post(f"/v1/migrations/{planned['id']}/cancel")
        restart = http.post(f"/v1/migrations/{planned['id']}/start")
        switch = http.post(f"/v1/migrations/{planned['id']}/switch", json={})
    assert (unknown_job.status_code, unknown_job.json()["error"]["param"]) == (400, "jobs[0]")
    assert (unknown_base.status_code, unknown_base.json()["error"]["param"]) == (400, "base_model")
    assert (no_prompts.status_code, no_prompts.json()["error"]["param"]) == (400, "distil.prompts_file")
    assert cancelled.json()["status"] == "cancelled"
    assert (restart.status_code, restart.json()["error"]["code"]) == (409, "migration_not_startable")
    assert (switch.status_code, switch.json()["error"]["code"]) == (409, "migration_not_completed")


def test_files_are_copied_byte_for_byte_with_their_lineage(
    world: World, moved: tuple[Tenant, dict[str, Any], list[str]]
) -> None:
    tenant, migration, _ = moved
    assert migration["status"] == "completed", migration
    support = item_of(migration, world.support.id)
    assert support["status"] == "completed", support["error"]
    for copy, upstream_id in (
        (support["training_file"], world.support.training_file),
        (support["validation_file"], world.support.validation_file),
    ):
        original = upstream_bytes(world, upstream_id)
        assert copy["state"] == "copied"
        assert copy["sha256"] == copy["upstream_sha256"] == hashlib.sha256(original).hexdigest()
        assert copy["verified"] == "size and sha256 match the provider's"
        assert tenant.client.files.content(copy["local_id"]).content == original
        assert tenant.client.files.retrieve(copy["local_id"]).status == "processed"
    job = tenant.client.fine_tuning.jobs.retrieve(support["local_job"])
    assert job.status == "succeeded"
    assert job.fine_tuned_model == support["local_model"]
    assert job.training_file == support["training_file"]["local_id"]
    assert job.metadata is not None
    assert job.metadata["upstream_job"] == world.support.id
    assert job.metadata["upstream_model"] == world.support.fine_tuned_model
    assert job.metadata["ftgw_migration"] == migration["id"]
    assert job.method is not None and job.method.supervised is not None
    assert job.method.supervised.hyperparameters.learning_rate_multiplier == 30  # the override, recorded
    assert {
        "field": "learning_rate_multiplier",
        "upstream": 30,
        "local": 30,
        "note": "overridden by the request",
    } in support["translations"]
    assert support["upstream_metadata"] == {"team": "support"}


def test_a_job_whose_data_is_gone_is_distilled_from_the_upstream_model(
    world: World, moved: tuple[Tenant, dict[str, Any], list[str]]
) -> None:
    tenant, migration, _ = moved
    triage = item_of(migration, world.triage.id)
    assert triage["status"] == "completed", triage["error"]
    assert triage["action"] == "distil"
    assert triage["training_file"]["state"] == "missing"
    distilled = triage["distillation"]
    # The upstream (an ftgw) offers the Batch API: the prompts went in one batch, not call by call.
    assert distilled["via"] == "batch" and distilled["upstream_batch"].startswith("batch_")
    upstream_batch = world.acme.client.batches.retrieve(distilled["upstream_batch"])
    assert upstream_batch.status == "completed" and upstream_batch.request_counts.total == 24
    assert distilled["prompts"] == 24
    assert distilled["answered"] + distilled["failed"] == 24
    assert distilled["answered"] >= 1
    train = tenant.client.files.content(distilled["training_file"]).text.splitlines()
    held = tenant.client.files.content(distilled["holdout_file"]).text.splitlines() if distilled["holdout_file"] else []
    assert len(train) + len(held) == distilled["answered"]
    # The rows hold what the upstream model answers to the same prompt.
    first = json.loads(train[0])
    again = world.acme.client.completions.create(
        model=world.triage.fine_tuned_model, prompt=first["prompt"], max_tokens=8, temperature=0
    )
    assert first["completion"] == again.choices[0].text
    job = tenant.client.fine_tuning.jobs.retrieve(triage["local_job"])
    assert job.status == "succeeded" and job.training_file == distilled["training_file"]


def test_parity_is_measured_and_reported(world: World, moved: tuple[Tenant, dict[str, Any], list[str]]) -> None:
    tenant, migration, _ = moved
    with world.http(tenant) as http:
        report = http.get(f"/v1/migrations/{migration['id']}/report").json()
        text = http.get(f"/v1/migrations/{migration['id']}/report", params={"format": "markdown"})
    for job in (world.support, world.triage):
        parity = item_of(migration, job.id)["parity"]
        assert parity is not None and parity["status"] == "completed"
        assert parity["rows"] >= 1
        (criterion,) = parity["criteria"]
        assert criterion["upstream"]["total"] == criterion["migrated"]["total"] == parity["rows"]
        expected = (criterion["migrated"]["pass_rate"] - criterion["upstream"]["pass_rate"]) * 100
        assert criterion["difference"] == pytest.approx(expected)
        assert parity["holds"] is True  # max_regression 100: any result holds
        runs = tenant.client.evals.runs.list(parity["eval_id"]).data
        assert {r.model for r in runs} == {
            item_of(migration, job.id)["imported_model"],
            item_of(migration, job.id)["local_model"],
        }
        assert all(r.status == "completed" for r in runs)
    assert report["summary"] == {
        "jobs": 2,
        "completed": 2,
        "failed": 0,
        "skipped": 0,
        "parity_measured": 2,
        "parity_holds": 2,
        "switched": False,
    }
    assert text.headers["content-type"].startswith("text/markdown")
    assert world.support.fine_tuned_model in text.text and "Parity on" in text.text


def test_callers_keep_the_upstream_name_before_and_after_the_switch(
    world: World, moved: tuple[Tenant, dict[str, Any], list[str]]
) -> None:
    tenant, migration, answered_by = moved
    support = item_of(migration, world.support.id)
    old_id = world.support.fine_tuned_model
    assert answered_by == [support["imported_model"]]  # during the migration: the upstream model, by its old name
    with world.http(tenant) as http:
        alias = http.get(f"/v1/registry/aliases/{old_id}").json()
        versions = http.get(f"/v1/registry/aliases/{old_id}/versions").json()["data"]
        before = tenant.client.chat.completions.create(
            model=old_id, messages=[{"role": "user", "content": "Is 3 a number?"}], max_tokens=3
        )
        switched = http.post(f"/v1/migrations/{migration['id']}/switch", json={})
        after = tenant.client.chat.completions.create(
            model=old_id, messages=[{"role": "user", "content": "Is 3 a number?"}], max_tokens=3
        )
        changes = http.get("/v1/registry/changes", params={"alias": old_id}).json()["data"]
        world.proxy.fail_matching = "/chat/completions"  # the upstream stops answering: the name does not care now
        try:
            offline = tenant.client.chat.completions.create(
                model=old_id, messages=[{"role": "user", "content": "Is 4 a number?"}], max_tokens=3
            )
        finally:
            world.proxy.fail_matching = None
    assert alias["active_version"] == 1
    assert [(v["version"], [t["model"] for t in v["targets"]], v["fallbacks"]) for v in versions] == [
        (1, [support["imported_model"]], []),
        (2, [support["local_model"]], [support["imported_model"]]),
    ]
    assert before.model == support["imported_model"]
    assert switched.status_code == 200, switched.text
    assert switched.json()["switched_at"] is not None
    assert after.model == support["local_model"]
    assert offline.model == support["local_model"]
    assert any(c["action"] == "version.promoted" and c["version"] == 2 for c in changes)
    # The other project cannot reach the name.
    other = make_tenant(world.downstream)
    with pytest.raises(Exception, match="does not exist"):
        other.client.chat.completions.create(model=old_id, messages=[{"role": "user", "content": "hi"}])


def test_upstream_failures_mid_migration_resume_cleanly(
    world: World, moved: tuple[Tenant, dict[str, Any], list[str]]
) -> None:
    """A 5xx on one file fails the migration after the SDK's retries; resumed (through a stalled request that times
    out and is retried), it carries on: nothing copied twice, the alias made once. (After ``moved``: this
    gateway has trained on the base model before, so the plan estimates the training time.)"""
    tenant = world.admin()
    validation = world.support.validation_file
    assert validation is not None
    with world.http(tenant) as http:
        planned = create(
            http, jobs=[world.support.id], hyperparameters=OVERRIDES, parity={"max_rows": 2, "max_regression": 0}
        )
        assert planned["totals"]["estimated_training_seconds"] > 0
        world.proxy.fail_matching = f"/v1/files/{validation}/content"
        try:
            http.post(f"/v1/migrations/{planned['id']}/start").raise_for_status()
            failed = wait_until(http, planned["id"], {"failed", "completed"}, timeout=120)
        finally:
            world.proxy.fail_matching = None
        assert failed["status"] == "failed", failed
        assert failed["error"]["code"] == "upstream_unavailable"
        assert "Resume" in failed["error"]["message"]
        item = failed["items"][0]
        assert item["training_file"]["state"] == "copied" and item["validation_file"]["state"] == "pending"
        assert item["alias_versions"] == {"upstream": 1}
        # Callers already have the name while it is stopped.
        answer = tenant.client.chat.completions.create(
            model=world.support.fine_tuned_model, messages=[{"role": "user", "content": "Is 1 a number?"}], max_tokens=2
        )
        assert answer.model == item["imported_model"]
        seen_before = list(world.proxy.seen)
        world.proxy.stall = 1  # the next upstream call outlasts the provider's timeout once
        resumed = http.post(f"/v1/migrations/{planned['id']}/resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
        done = wait_until(http, planned["id"], {"completed", "failed"})
        files = http.get("/v1/files", params={"purpose": "fine-tune"}).json()["data"]
        versions = http.get(f"/v1/registry/aliases/{world.support.fine_tuned_model}/versions").json()["data"]
        refused = http.post(f"/v1/migrations/{planned['id']}/switch", json={})
        forced = None
        if refused.status_code == 409:
            forced = http.post(f"/v1/migrations/{planned['id']}/switch", json={"force": True})
    assert done["status"] == "completed", done
    item = done["items"][0]
    assert item["status"] == "completed", item["error"]
    copies = [f for f in files if f["id"] in {item["training_file"]["local_id"], item["validation_file"]["local_id"]}]
    assert len(copies) == 2 and len(files) == 2  # the training file was not copied again
    fetched = [s for s in world.proxy.seen[len(seen_before) :] if s.startswith("GET /v1/files/")]
    assert f"GET /v1/files/{world.support.training_file}/content" not in fetched
    assert [v["version"] for v in versions] == [1, 2]
    parity = item["parity"]
    worse = any(c["difference"] is None or c["difference"] < 0 for c in parity["criteria"])
    assert parity["holds"] is (not worse)
    if worse:  # max_regression 0: a worse new model is not switched to unless forced
        assert refused.json()["error"]["code"] == "parity_not_met"
        assert forced is not None and forced.status_code == 200
    else:
        assert refused.status_code == 200


def test_cancel_stops_the_migration_and_the_job_it_waits_for(world: World) -> None:
    tenant = world.admin()
    slow = {**OVERRIDES, "n_epochs": 50, "batch_size": 1}  # 600 steps: still training when cancelled
    with world.http(tenant) as http:
        started = create(http, jobs=[world.support.id], hyperparameters=slow, start=True)
        assert started["status"] == "queued"
        deadline = time.monotonic() + 60
        while not (item := http.get(f"/v1/migrations/{started['id']}").json()["items"][0])["local_job"]:
            assert time.monotonic() < deadline, item
            time.sleep(0.2)
        cancelled = http.post(f"/v1/migrations/{started['id']}/cancel")
        job = tenant.client.fine_tuning.jobs.retrieve(item["local_job"])
        time.sleep(2)  # the worker notices at its next heartbeat, and leaves the status alone
        after = http.get(f"/v1/migrations/{started['id']}").json()
        again = http.post(f"/v1/migrations/{started['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert job.status == "cancelled"
    assert after["status"] == "cancelled"
    assert again.status_code == 409


def test_an_upstream_that_stops_answering_mid_distillation_is_asked_only_the_rest_on_resume(world: World) -> None:
    tenant = world.admin()
    with world.http(tenant) as http:
        prompts = http.post(
            "/v1/files", files={"file": ("prompts.jsonl", prompt_lines(24))}, data={"purpose": "user_data"}
        ).json()["id"]
        planned = create(
            http,
            jobs=[world.triage.id],
            hyperparameters=OVERRIDES,
            distil={"prompts_file": prompts, "max_tokens": 8, "concurrency": 1, "holdout": 0.25, "batch": False},
            parity={"max_rows": 2},
        )
        asked = "POST /v1/completions"  # distillation's calls (parity's samples go to chat completions)
        before = sum(1 for s in world.proxy.seen if s == asked)
        http.post(f"/v1/migrations/{planned['id']}/start").raise_for_status()
        deadline = time.monotonic() + 60
        while sum(1 for s in world.proxy.seen if s == asked) - before < 5:
            assert time.monotonic() < deadline, "distillation never started"
            time.sleep(0.01)
        world.proxy.fail_matching = "/v1/completions"
        try:
            failed = wait_until(http, planned["id"], {"failed", "completed"}, timeout=120)
        finally:
            world.proxy.fail_matching = None
        work = world.downstream.settings.data_dir / "migrations" / planned["id"] / f"{world.triage.id}.answers.jsonl"
        answered = len(work.read_text().splitlines())
        resumed_at = len(world.proxy.seen)
        http.post(f"/v1/migrations/{planned['id']}/resume").raise_for_status()
        done = wait_until(http, planned["id"], {"completed", "failed"})
    assert failed["status"] == "failed" and failed["error"]["code"] == "upstream_unavailable", failed
    assert failed["items"][0]["step"] == "distil"
    assert 5 <= answered < 24
    assert done["status"] == "completed", done
    item = done["items"][0]
    assert item["status"] == "completed", item["error"]
    assert item["distillation"]["prompts"] == 24
    assert sum(1 for s in world.proxy.seen[resumed_at:] if s == asked) == 24 - answered
