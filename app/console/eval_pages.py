"""Evals: the list (criteria, latest run), an eval's page (its criteria in words, its runs, picking runs to compare)
and the comparison of runs (pass rates with their 95% intervals, and the rows on which the models' verdicts differ).

Every figure comes from the services the API calls (``eval_service``, ``app.evals.comparisons``), so a page shows
what ``GET /v1/evals/…`` answers.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.console.web import ConsoleDep, ConsoleRoute, render
from app.db import SessionDep
from app.evals import comparisons
from app.evals.models import ACTIVE, EvalRun
from app.evals.service import eval_service
from app.kit.pagination import Order

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 25
DIFFERENCES_STEP = 50  # rows of differences shown at first, and added by "Show more"
MAX_DIFFERENCES = 1000  # the comparison service's own cap

_OPERATIONS = {
    "eq": "equals",
    "ne": "differs from",
    "like": "matches the pattern (case-sensitive)",
    "ilike": "matches the pattern (ignoring case)",
}


def _quote(template: object) -> str:
    return f"“{template}”"


def _prompt(criterion: dict[str, Any]) -> str:
    messages = criterion.get("input")
    if not isinstance(messages, list):
        return ""
    texts = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        parts = content if isinstance(content, list) else [content]
        texts += [p if isinstance(p, str) else str(p.get("text", "")) for p in parts if isinstance(p, str | dict)]
    return " ".join(t for t in texts if t)


def describe(criterion: dict[str, Any]) -> str:
    """A testing criterion as a sentence: what is compared with what, and when a row passes."""
    kind = criterion.get("type")
    if kind == "string_check":
        operation = _OPERATIONS.get(str(criterion.get("operation")), str(criterion.get("operation")))
        return f"Passes when {_quote(criterion.get('input'))} {operation} {_quote(criterion.get('reference'))}."
    if kind == "text_similarity":
        return (
            f"Passes when the {criterion.get('evaluation_metric')} similarity of {_quote(criterion.get('input'))} "
            f"to {_quote(criterion.get('reference'))} is at least {criterion.get('pass_threshold')}."
        )
    if kind == "label_model":
        labels = ", ".join(criterion.get("labels") or [])
        passing = ", ".join(criterion.get("passing_labels") or [])
        return (
            f"The judge {criterion.get('model')} labels each row ({labels}), asked {_quote(_prompt(criterion))}; "
            f"a row passes on {passing}."
        )
    if kind == "score_model":
        low, high = criterion.get("range") or (0, 1)
        threshold = criterion.get("pass_threshold")
        passes = f"a row passes at {threshold} or more" if threshold is not None else "reported as a score"
        return (
            f"The judge {criterion.get('model')} scores each row from {low} to {high}, asked "
            f"{_quote(_prompt(criterion))}; {passes}."
        )
    if kind == "multi":
        graders = criterion.get("graders")
        names = list(graders) if isinstance(graders, dict) else [g.get("name") for g in _as_list(graders)]
        return (
            f"Combines {', '.join(str(n) for n in names)} as {_quote(criterion.get('calculate_output'))}; "
            f"passes at {criterion.get('pass_threshold')} or more."
        )
    return f"A {kind} grader."


def _as_list(value: object) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, dict)]


def _pass_rate(counts: dict[str, int]) -> float | None:
    # As the comparison counts it: an errored row is not a passed one.
    return counts["passed"] / counts["total"] if counts.get("total") else None


@router.get("/evals", response_class=HTMLResponse)
async def evals(
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    after: Annotated[str | None, Query(max_length=128)] = None,
) -> HTMLResponse:
    page = await eval_service.list_evals(
        session, console.project_id, limit=PAGE_SIZE, order=Order.desc, after=after, order_by="created_at"
    )
    latest = await eval_service.latest_runs(session, console.project_id, [e.id for e in page.items])
    return render(
        request,
        "evals.html",
        console=console,
        active="evals",
        title="Evals",
        evals=page.items,
        latest=latest,
        has_more=page.has_more,
        paged=after is not None,
    )


@router.get("/evals/{eval_id}", response_class=HTMLResponse)
async def eval_page(
    eval_id: str,
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    after: Annotated[str | None, Query(max_length=128)] = None,
) -> HTMLResponse:
    evaluation = await eval_service.get(session, console.project_id, eval_id)
    page = await eval_service.list_runs(
        session, console.project_id, eval_id, limit=PAGE_SIZE, order=Order.desc, after=after, status=None
    )
    # Live counts for the runs still going, the final ones for the rest: as GET …/runs/{id} answers them.
    counts = {run.id: await eval_service.result_counts(session, run) for run in page.items}
    return render(
        request,
        "eval.html",
        console=console,
        active="evals",
        title=evaluation.name,
        evaluation=evaluation,
        criteria=[(c.get("name") or c.get("type"), c.get("type"), describe(c)) for c in evaluation.testing_criteria],
        item_fields=list(evaluation.item_schema.get("properties", {})),
        runs=page.items,
        counts=counts,
        rates={run_id: _pass_rate(c) for run_id, c in counts.items()},
        active_ids={run.id for run in page.items if run.status in ACTIVE},
        has_more=page.has_more,
        max_compared=comparisons.MAX_MODELS,
    )


def _label(run: EvalRun) -> str:
    return run.model or run.name


@router.get("/evals/{eval_id}/compare", response_class=HTMLResponse)
async def compare_page(
    eval_id: str,
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    run_ids: Annotated[list[str], Query()],
    shown: Annotated[int, Query(ge=1, le=MAX_DIFFERENCES)] = DIFFERENCES_STEP,
) -> HTMLResponse:
    # As the API reads them: repeated run_ids, or one comma-separated list.
    ids = [part for value in run_ids for part in value.split(",") if part]
    comparison = await comparisons.read(session, console.project_id, eval_id, ids, disagreements_limit=shown)
    evaluation = await eval_service.get(session, console.project_id, eval_id)
    runs = {run_id: await eval_service.get_run(session, console.project_id, eval_id, run_id) for run_id in ids}
    return render(
        request,
        "eval_compare.html",
        console=console,
        active="evals",
        title=f"Compare · {evaluation.name}",
        evaluation=evaluation,
        comparison=comparison,
        labels={run_id: _label(run) for run_id, run in runs.items()},
        names={run_id: run.name for run_id, run in runs.items()},
        run_ids=",".join(ids),
        shown=shown,
        more=min(shown + DIFFERENCES_STEP, MAX_DIFFERENCES),
        can_show_more=comparison.disagreements.has_more and shown < MAX_DIFFERENCES,
    )
