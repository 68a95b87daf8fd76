"""A run's state machine as a worker drives it, on each backend: leases (claim, renew, release, fencing), start,
idempotent output items, complete / fail / cancel told once by webhook, a dead worker's run resumed without regrading;
and the output items over the API (pages, filters, OpenAI's schema, tenancy).

The worker here is the test itself calling the evals service, as the executor does: no mock, the same code path
against the gateway's own database. Its gateway has a database of its own, so the claims see only this module's runs
(each test leaves its runs finished).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import commit, create_engine_from_url, create_sessionmaker
from app.evals.items import data_source_of, load_items
from app.evals.models import EvalRun, OutputItemStatus, RunStatus
from app.evals.repository import GradedItem
from app.evals.service import eval_service
from app.files.storage import BlobStore
from app.migrate import upgrade
from tests.conftest import Gateway, Tenant, gateway_settings, make_tenant, new_database, serve
from tests.evals.test_api import LABEL_CHECK, MODEL, ROWS, _config, _raw, assert_list_matches, assert_run_matches
from tests.loopback import Receiver
from tests.openai_schema import assert_matches

LEASE = timedelta(seconds=30)
NOT_EMPTY = {**LABEL_CHECK, "name": "Answered", "operation": "ne", "reference": ""}


@pytest.fixture(scope="module")
def runs_gateway(database_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("eval-runs")
    with new_database(database_url, folder) as url:
        upgrade(url)
        with serve(gateway_settings(url, folder / "data", model_cache)) as gateway:
            yield gateway


@pytest.fixture
def owner(runs_gateway: Gateway) -> Tenant:
    return make_tenant(runs_gateway)


@asynccontextmanager
async def session_of(gateway: Gateway) -> AsyncIterator[AsyncSession]:
    """A session on the gateway's database, committed at the end of the block (as the worker's task commits)."""
    engine = create_engine_from_url(gateway.settings.resolved_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
            await commit(session)
    finally:
        await engine.dispose()


def _run(owner: Tenant, rows: int = 3) -> tuple[str, str]:
    """A queued jsonl run of ``rows`` rows under an eval of two criteria: (eval id, run id)."""
    evaluation = owner.client.evals.create(
        name="graded", data_source_config=_config(), testing_criteria=[LABEL_CHECK, NOT_EMPTY]
    )
    content = [{"item": ROWS[i % 2], "sample": {"output_text": ROWS[i % 2]["label"]}} for i in range(rows)]
    run = owner.client.evals.runs.create(
        evaluation.id, data_source={"type": "jsonl", "source": {"type": "file_content", "content": content}}
    )
    return evaluation.id, run.id


def _graded(row: int, passed: bool, *, usage: int = 10) -> GradedItem:
    """A graded row as the executor records it: OpenAI's sample and one result per criterion."""
    answer = "positive" if passed else "nope"
    sample = {
        "input": [{"role": "user", "content": "I loved it"}],
        "output": [{"role": "assistant", "content": answer}],
        "finish_reason": "stop",
        "model": MODEL,
        "usage": {"prompt_tokens": usage, "completion_tokens": 1, "total_tokens": usage + 1, "cached_tokens": 0},
        "error": None,
        "temperature": 0.0,
        "max_completion_tokens": 4,
        "top_p": 1.0,
        "seed": 7,
    }
    results = [
        {"name": "Label matches", "type": "string_check", "score": float(passed), "passed": passed, "sample": None},
        {"name": "Answered", "type": "string_check", "score": 1.0, "passed": True, "sample": None},
    ]
    status = OutputItemStatus.passed if passed else OutputItemStatus.failed
    return GradedItem(row, ROWS[row % 2], results, sample, status)


async def _claim(gateway: Gateway, worker: str, lease: timedelta = LEASE) -> EvalRun | None:
    async with session_of(gateway) as session:
        return await eval_service.claim(session, worker, lease)


async def _start(gateway: Gateway, run_id: str, worker: str) -> bool:
    async with session_of(gateway) as session:
        run = await session.get(EvalRun, run_id)
        assert run is not None
        return await eval_service.start(session, run, worker)


async def _record(gateway: Gateway, run_id: str, worker: str, items: list[GradedItem]) -> int | None:
    async with session_of(gateway) as session:
        return await eval_service.record_items(session, run_id, worker, items)


async def _complete(gateway: Gateway, run_id: str, worker: str) -> bool:
    async with session_of(gateway) as session:
        run = await session.get(EvalRun, run_id)
        return run is not None and await eval_service.complete(session, run, worker)


async def _fail(gateway: Gateway, run_id: str, worker: str, code: str, message: str) -> bool:
    async with session_of(gateway) as session:
        run = await session.get(EvalRun, run_id)
        return run is not None and await eval_service.fail(session, run, worker, code=code, message=message)


def _subscribe(gateway: Gateway, tenant: Tenant, receiver: Receiver, *events: str) -> None:
    with gateway.http(tenant.key) as http:
        answer = http.post("/v1/webhooks", json={"url": receiver.url, "events": list(events)})
    assert answer.status_code == 200, answer.text


def _item_as_openai_types_it(item: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's output item ``sample.error`` is typed as an object, but a sample without an error has none."""
    return {**item, "sample": {**item["sample"], "error": item["sample"]["error"] or {"code": "-", "message": "-"}}}


async def test_a_worker_runs_a_run_to_completion(runs_gateway: Gateway, owner: Tenant, receiver: Receiver) -> None:
    gateway, client = runs_gateway, owner.client
    _subscribe(gateway, owner, receiver, "eval.run.succeeded")
    eval_id, run_id = _run(owner)

    claimed = await _claim(gateway, "w1")
    assert claimed is not None and claimed.id == run_id
    assert (claimed.status, claimed.attempts, claimed.lease_owner) == (RunStatus.queued, 1, "w1")
    assert await _claim(gateway, "w2") is None  # the only runnable run is w1's now
    assert await _start(gateway, run_id, "w1") is True
    assert client.evals.runs.retrieve(run_id, eval_id=eval_id).status == "in_progress"

    async with session_of(gateway) as session:
        run = await session.get(EvalRun, run_id)
        assert run is not None and run.started_at is not None
        evaluation = await eval_service.get(session, owner.project_id, eval_id)
        store = BlobStore(gateway.settings.files_dir, gateway.settings.tmp_dir)
        rows = await load_items(session, store, evaluation, data_source_of(run))
    assert [(row.id, row.item) for row in rows] == [(0, ROWS[0]), (1, ROWS[1]), (2, ROWS[0])]

    assert await _record(gateway, run_id, "w1", [_graded(0, True), _graded(1, False)]) == 2
    # Recorded again (a retried batch) with a different verdict: the first one stands, only row 2 is new.
    assert await _record(gateway, run_id, "w1", [_graded(1, True), _graded(2, True)]) == 1
    async with session_of(gateway) as session:
        assert await eval_service.graded_item_ids(session, run_id) == {0, 1, 2}
    assert await _complete(gateway, run_id, "w1") is True

    done = client.evals.runs.retrieve(run_id, eval_id=eval_id)
    assert done.status == "completed"
    assert done.result_counts.model_dump() == {"total": 3, "errored": 0, "failed": 1, "passed": 2}
    criteria = [c["id"] for c in _raw(gateway, owner, f"/v1/evals/{eval_id}")["testing_criteria"]]
    assert [r.model_dump() for r in done.per_testing_criteria_results] == [
        {"testing_criteria": criteria[0], "passed": 2, "failed": 1},
        {"testing_criteria": criteria[1], "passed": 3, "failed": 0},
    ]
    (usage,) = done.per_model_usage
    assert (usage.model_name, usage.invocation_count, usage.prompt_tokens, usage.total_tokens) == (MODEL, 3, 30, 33)
    assert_run_matches(_raw(gateway, owner, f"/v1/evals/{eval_id}/runs/{run_id}"))

    receiver.wait(1)
    assert [(p["type"], p["data"]) for p in receiver.payloads()] == [("eval.run.succeeded", {"id": run_id})]
    assert await _complete(gateway, run_id, "w1") is False  # told once
    with pytest.raises(openai.BadRequestError):
        client.evals.runs.cancel(run_id, eval_id=eval_id)
    await asyncio.sleep(1.2)  # a dispatcher round: no second event
    assert len(receiver.calls) == 1


async def test_output_items_page_filter_and_match_openai(runs_gateway: Gateway, owner: Tenant) -> None:
    gateway, client = runs_gateway, owner.client
    stranger = make_tenant(gateway).client
    eval_id, run_id = _run(owner, rows=5)
    claimed = await _claim(gateway, "w1")
    assert claimed is not None and claimed.id == run_id and await _start(gateway, run_id, "w1")
    # Graded out of order, as concurrent graders finish: listed in the data source's order.
    assert await _record(gateway, run_id, "w1", [_graded(i, i % 2 == 0) for i in (4, 0, 3, 1, 2)]) == 5
    assert await _complete(gateway, run_id, "w1")

    listed = client.evals.runs.output_items.list(run_id, eval_id=eval_id)
    assert [i.datasource_item_id for i in listed.data] == [0, 1, 2, 3, 4]
    first = client.evals.runs.output_items.list(run_id, eval_id=eval_id, limit=2)
    assert [i.datasource_item_id for i in first.data] == [0, 1] and first.has_more
    rest = client.evals.runs.output_items.list(run_id, eval_id=eval_id, after=first.data[-1].id)
    assert [i.datasource_item_id for i in rest.data] == [2, 3, 4] and not rest.has_more
    desc = client.evals.runs.output_items.list(run_id, eval_id=eval_id, order="desc", limit=2, after=rest.data[0].id)
    assert [i.datasource_item_id for i in desc.data] == [1, 0]
    passed = client.evals.runs.output_items.list(run_id, eval_id=eval_id, status="pass")
    assert [i.datasource_item_id for i in passed.data] == [0, 2, 4]
    assert {i.status for i in client.evals.runs.output_items.list(run_id, eval_id=eval_id, status="fail")} == {"fail"}

    page = _raw(gateway, owner, f"/v1/evals/{eval_id}/runs/{run_id}/output_items")
    assert_list_matches({**page, "data": [_item_as_openai_types_it(i) for i in page["data"]]}, "EvalRunOutputItemList")
    item_id = listed.data[0].id
    assert item_id.startswith("outputitem_")
    raw = _raw(gateway, owner, f"/v1/evals/{eval_id}/runs/{run_id}/output_items/{item_id}")
    assert_matches(_item_as_openai_types_it(raw), "EvalRunOutputItem")
    assert (raw["run_id"], raw["eval_id"], raw["datasource_item"]) == (run_id, eval_id, ROWS[0])
    assert raw["results"][0]["name"] == "Label matches" and raw["sample"]["output"][0]["content"] == "positive"
    retrieved = client.evals.runs.output_items.retrieve(item_id, eval_id=eval_id, run_id=run_id)
    assert retrieved.id == item_id and retrieved.status == "pass"

    other_eval, other_run = _run(owner, rows=1)
    with pytest.raises(openai.NotFoundError):  # an item is found only under its own run
        client.evals.runs.output_items.retrieve(item_id, eval_id=other_eval, run_id=other_run)
    with pytest.raises(openai.BadRequestError):  # nor is it a cursor in another run's items
        client.evals.runs.output_items.list(other_run, eval_id=other_eval, after=item_id)
    client.evals.runs.cancel(other_run, eval_id=other_eval)
    with pytest.raises(openai.NotFoundError):
        stranger.evals.runs.output_items.retrieve(item_id, eval_id=eval_id, run_id=run_id)
    with pytest.raises(openai.NotFoundError):
        stranger.evals.runs.output_items.list(run_id, eval_id=eval_id)
    client.evals.delete(eval_id)
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.output_items.retrieve(item_id, eval_id=eval_id, run_id=run_id)


async def test_a_canceled_run_keeps_what_it_graded_and_fences_its_worker(runs_gateway: Gateway, owner: Tenant) -> None:
    gateway, client = runs_gateway, owner.client
    eval_id, run_id = _run(owner)
    claimed = await _claim(gateway, "w1")
    assert claimed is not None and claimed.id == run_id and await _start(gateway, run_id, "w1")
    assert await _record(gateway, run_id, "w1", [_graded(0, True)]) == 1

    canceled = client.evals.runs.cancel(run_id, eval_id=eval_id)

    assert canceled.status == "canceled"
    assert canceled.result_counts.model_dump() == {"total": 1, "errored": 0, "failed": 0, "passed": 1}
    async with session_of(gateway) as session:
        assert await eval_service.renew(session, run_id, "w1", LEASE) is RunStatus.canceled  # the worker's cue
    assert await _record(gateway, run_id, "w1", [_graded(1, True)]) is None  # nothing more is written
    assert await _complete(gateway, run_id, "w1") is False
    assert await _fail(gateway, run_id, "w1", "x", "y") is False
    assert client.evals.runs.retrieve(run_id, eval_id=eval_id).status == "canceled"
    async with session_of(gateway) as session:
        await eval_service.release(session, run_id, "w1")
    assert await _claim(gateway, "w2") is None  # a final run is never claimed again


async def test_a_dead_workers_run_is_resumed_without_regrading(runs_gateway: Gateway, owner: Tenant) -> None:
    gateway, client = runs_gateway, owner.client
    eval_id, run_id = _run(owner)
    claimed = await _claim(gateway, "w1", lease=timedelta(milliseconds=50))
    assert claimed is not None and claimed.id == run_id and await _start(gateway, run_id, "w1")
    assert await _record(gateway, run_id, "w1", [_graded(0, True)]) == 1
    await asyncio.sleep(0.2)  # w1 is gone: its lease runs out

    resumed = await _claim(gateway, "w2")

    assert resumed is not None and resumed.id == run_id
    assert (resumed.status, resumed.attempts, resumed.lease_owner) == (RunStatus.in_progress, 2, "w2")
    assert await _start(gateway, run_id, "w2") is True  # already in progress: resumed
    assert await _start(gateway, run_id, "w1") is False
    async with session_of(gateway) as session:
        assert await eval_service.held(session, run_id, "w1") is None
        assert await eval_service.renew(session, run_id, "w1", LEASE) is None
        assert await eval_service.graded_item_ids(session, run_id) == {0}  # what w2 skips
    assert await _record(gateway, run_id, "w1", [_graded(1, False)]) is None  # w1 came back: fenced
    assert await _complete(gateway, run_id, "w1") is False
    assert await _record(gateway, run_id, "w2", [_graded(1, True), _graded(2, True)]) == 2
    assert await _complete(gateway, run_id, "w2") is True
    async with session_of(gateway) as session:
        await eval_service.release(session, run_id, "w2")
        run = await session.get(EvalRun, run_id)
        assert run is not None and (run.lease_owner, run.lease_expires_at) == (None, None)

    done = client.evals.runs.retrieve(run_id, eval_id=eval_id)
    assert done.status == "completed" and done.result_counts.passed == 3


async def test_a_failed_run_says_why_once(runs_gateway: Gateway, owner: Tenant, receiver: Receiver) -> None:
    gateway, client = runs_gateway, owner.client
    _subscribe(gateway, owner, receiver, "eval.run.failed", "eval.run.succeeded")
    eval_id, run_id = _run(owner)
    claimed = await _claim(gateway, "w1")
    assert claimed is not None and claimed.id == run_id

    assert await _fail(gateway, run_id, "w2", "other", "not its lease") is False
    assert await _fail(gateway, run_id, "w1", "model_not_found", "The model is gone.") is True  # from queued
    assert await _fail(gateway, run_id, "w1", "again", "twice") is False

    failed = client.evals.runs.retrieve(run_id, eval_id=eval_id)
    assert failed.status == "failed" and failed.error is not None
    assert (failed.error.code, failed.error.message) == ("model_not_found", "The model is gone.")
    assert_run_matches(_raw(gateway, owner, f"/v1/evals/{eval_id}/runs/{run_id}"))
    receiver.wait(1)
    assert [(p["type"], p["data"]) for p in receiver.payloads()] == [("eval.run.failed", {"id": run_id})]
    async with session_of(gateway) as session:
        await eval_service.release(session, run_id, "w1")


async def test_a_deleted_run_is_lost_to_its_worker(runs_gateway: Gateway, owner: Tenant) -> None:
    gateway, client = runs_gateway, owner.client
    eval_id, run_id = _run(owner)
    claimed = await _claim(gateway, "w1")
    assert claimed is not None and claimed.id == run_id and await _start(gateway, run_id, "w1")
    assert await _record(gateway, run_id, "w1", [_graded(0, True)]) == 1

    client.evals.runs.delete(run_id, eval_id=eval_id)

    async with session_of(gateway) as session:
        assert await eval_service.renew(session, run_id, "w1", LEASE) is None
    assert await _record(gateway, run_id, "w1", [_graded(1, True)]) is None
    assert await _complete(gateway, run_id, "w1") is False
    async with session_of(gateway) as session:
        assert await eval_service.held(session, run_id, "w1") is None


async def test_workers_claim_the_oldest_run_and_never_a_held_one(runs_gateway: Gateway, owner: Tenant) -> None:
    gateway, client = runs_gateway, owner.client
    first_eval, first = _run(owner, rows=1)
    second_eval, second = _run(owner, rows=1)

    a = await _claim(gateway, "w1")
    b = await _claim(gateway, "w2")
    c = await _claim(gateway, "w3")

    assert (a and a.id, b and b.id, c) == (first, second, None)
    for eval_id, run_id in ((first_eval, first), (second_eval, second)):
        assert client.evals.runs.cancel(run_id, eval_id=eval_id).status == "canceled"
