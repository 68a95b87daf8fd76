"""A run's progress over the API, on each backend: while it is queued or in progress, retrieving it counts the rows
graded so far (``result_counts``, as OpenAI's API shows a run going), without writing them into the run; once it
ends, the counts are the final ones. The worker is the test calling the evals service, as in test_runs.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.evals.models import EvalRun
from app.migrate import upgrade
from tests.conftest import Gateway, gateway_settings, make_tenant, new_database, serve
from tests.evals.test_api import _raw, assert_run_matches
from tests.evals.test_runs import _claim, _complete, _graded, _record, _run, _start, session_of


@pytest.fixture(scope="module")
def progress_gateway(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[Gateway]:
    """A database of its own: the test's claim sees only its run."""
    folder = tmp_path_factory.mktemp("eval-progress")
    with new_database(database_url, folder) as url:
        upgrade(url)
        with serve(gateway_settings(url, folder / "data", model_cache)) as gateway:
            yield gateway


async def test_retrieving_a_running_run_counts_the_rows_graded_so_far(progress_gateway: Gateway) -> None:
    gateway = progress_gateway
    owner = make_tenant(gateway)
    client = owner.client
    eval_id, run_id = _run(owner, rows=3)
    zero = {"total": 0, "errored": 0, "failed": 0, "passed": 0}
    assert client.evals.runs.retrieve(run_id, eval_id=eval_id).result_counts.model_dump() == zero
    claimed = await _claim(gateway, "w1")
    assert claimed is not None and claimed.id == run_id and await _start(gateway, run_id, "w1")

    assert await _record(gateway, run_id, "w1", [_graded(0, True), _graded(1, False)]) == 2
    running = client.evals.runs.retrieve(run_id, eval_id=eval_id)

    assert running.status == "in_progress"
    assert running.result_counts.model_dump() == {"total": 2, "errored": 0, "failed": 1, "passed": 1}
    assert running.per_testing_criteria_results == []  # those are told when the run ends
    assert_run_matches(_raw(gateway, owner, f"/v1/evals/{eval_id}/runs/{run_id}"))
    async with session_of(gateway) as session:
        stored = await session.get(EvalRun, run_id)
        assert stored is not None and stored.result_counts == zero  # counted for the answer, never written

    assert await _record(gateway, run_id, "w1", [_graded(2, True)]) == 1
    assert client.evals.runs.retrieve(run_id, eval_id=eval_id).result_counts.total == 3
    assert await _complete(gateway, run_id, "w1") is True
    done = client.evals.runs.retrieve(run_id, eval_id=eval_id)
    assert done.status == "completed"
    assert done.result_counts.model_dump() == {"total": 3, "errored": 0, "failed": 1, "passed": 2}
    assert len(done.per_testing_criteria_results) == 2
