"""An eval run survives its worker: kill -9 of a standalone `ftgw worker` mid-run, and another worker finishes it,
grading only the rows the first had not recorded. Real processes, a real model, real HTTP."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from openai import OpenAI

from tests.conftest import Gateway, make_tenant
from tests.evals.test_api import _completions
from tests.evals.test_execution import _sentiment_eval, wait_for_run
from tests.worker.test_workers import Workers, api_gateway, workers  # noqa: F401 - fixtures

ROWS = 160
# One row at a time, so the first worker is killed long before it is done; rows are recorded 32 at a time.
SLOW = {"FTGW_EVAL_CONCURRENCY": "1", "FTGW_LOG_LEVEL": "info"}


def test_a_killed_workers_run_resumes_elsewhere_without_regrading(
    api_gateway: Gateway,  # noqa: F811
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    client = make_tenant(api_gateway).client
    eval_id = _sentiment_eval(
        client,
        {
            "type": "string_check",
            "name": "Answered",
            "input": "{{sample.output_text}}",
            "reference": "",
            "operation": "ne",
        },
    )
    rows = [{"text": f"Tell me about item {i}", "label": "x"} for i in range(ROWS)]
    run = client.evals.runs.create(eval_id, data_source=_completions(rows))

    first = workers.start(**SLOW)
    deadline = time.monotonic() + 120
    while not (graded := _items(client, eval_id, run.id)):
        assert time.monotonic() < deadline, "the first worker recorded no rows"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    before = _items(client, eval_id, run.id)
    assert 0 < len(before) < ROWS
    assert client.evals.runs.retrieve(run.id, eval_id=eval_id).status == "in_progress"

    workers.start(**SLOW | {"FTGW_EVAL_CONCURRENCY": "16"})  # claims the run once the dead worker's lease expires
    done = wait_for_run(client, eval_id, run.id, timeout=300)

    assert done.status == "completed", done.error
    assert done.result_counts.total == ROWS
    after = _items(client, eval_id, run.id)
    assert sorted(after.values()) == list(range(ROWS))  # every row once
    assert {k: after[k] for k in before} == before  # rows recorded before the kill are the same records
    log = (tmp_path / "worker-1.log").read_text()
    found = re.search(rf"eval run {run.id}: (\d+) rows to grade, (\d+) graded before", log)
    assert found, log[-2000:]
    assert (int(found[1]), int(found[2])) == (ROWS - len(before), len(before))  # the resumed worker skipped them
    assert graded  # (what ended the wait above)


def _items(client: OpenAI, eval_id: str, run_id: str) -> dict[str, int]:
    """The run's output items so far: id -> row."""
    pages = client.evals.runs.output_items.list(run_id, eval_id=eval_id, limit=100)
    return {item.id: item.datasource_item_id for item in pages}
