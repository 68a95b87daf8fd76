"""Release gates: an alias version that names a gate becomes active only once an eval says it is good enough.

A gate (``AliasVersion.gate``, a :class:`~app.registry.schemas.Gate`) names an eval of the project, a completions data
source without its model, and thresholds: a minimum pass rate per criterion, and/or how many points below the active
version's pass rate the candidate may score. Judging it runs the eval on ``alias@N``, so the candidate's whole
routing (weighted targets, fallbacks, guard) is what is measured, and, for ``max_regression``, on ``alias@M``, the
active version; it waits for both runs and compares their pass rates (``app.evals.compare``: errored rows count as
not passed, each rate with its Wilson interval).

Judging spans several transactions and never runs inside the caller's: the runs are committed before a worker can
take them, and nothing is held open while they run (up to ``timeout_seconds``). The caller
(:class:`~app.registry.aliases.AliasService`) records the verdict in the audit log and activates, or refuses with
:class:`GateRefused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.principal import Principal
from app.db import commit
from app.errors import Conflict, GatewayError, InvalidRequest, NotFound
from app.evals.compare import Rate
from app.evals.models import FINAL, Eval, EvalRun, RunStatus
from app.evals.schemas import CreateEvalRunRequest
from app.evals.service import eval_service
from app.evals.watch import RunWatch
from app.files.storage import BlobStore
from app.registry.routing import PIN, ModelCatalog
from app.registry.schemas import Gate
from app.worker.wakeup import Wakeup

# How often a gate looks at its runs itself: a worker of another process finishes them without telling this one.
POLL_SECONDS = 1.0
# Pass rates are ratios of small counts: a threshold met exactly must not fail on a float's last digit.
EPSILON = 1e-9

Outcome = Literal["passed", "failed", "inconclusive"]
Role = Literal["candidate", "active"]


@dataclass(frozen=True, slots=True)
class GateRuntime:
    """What judging a gate needs of the app: sessions of its own (never the request's), the blob store and catalog a
    run is checked with, the API's base URL (a run's ``report_url``), the embedded worker's wake-up and the watch
    that hears of runs ending."""

    sessionmaker: async_sessionmaker[AsyncSession]
    store: BlobStore
    catalog: ModelCatalog
    api_base: str
    wakeup: Wakeup | None = None
    watch: RunWatch | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a gate ended: ``figures`` is what the audit log keeps (the runs, each criterion's rates and thresholds),
    ``reasons`` one line per check that did not pass, ``baseline`` the active version judged against (None: none)."""

    outcome: Outcome
    figures: dict[str, Any]
    reasons: tuple[str, ...]
    baseline: int | None

    @classmethod
    def of(
        cls, outcome: Outcome, figures: Mapping[str, Any], reasons: Sequence[str], baseline: int | None = None
    ) -> Verdict:
        return cls(outcome, {**figures, "outcome": outcome, "reasons": list(reasons)}, tuple(reasons), baseline)

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def message(self, alias: str, version: int) -> str:
        runs = ", ".join(
            f"{run['run_id']} on {run['model']}"
            for run in (self.figures.get("candidate"), self.figures.get("active"))
            if run is not None
        )
        what = "failed" if self.outcome == "failed" else "was inconclusive"
        where = f" (eval {self.figures['eval_id']}" + (f"; runs {runs})" if runs else ")")
        return f"The release gate of '{alias}' version {version} {what}{where}: {'; '.join(self.reasons)}."


class GateRefused(Conflict):
    """409 ``gate_failed`` or ``gate_inconclusive``: OpenAI's error envelope, with the gate's figures under
    ``error.gate`` for programs (the message says the same for people)."""

    def __init__(self, message: str, verdict: Verdict, *, param: str) -> None:
        super().__init__(message, param=param, code=f"gate_{verdict.outcome}")
        self.figures = verdict.figures

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"]["gate"] = self.figures
        return body


class ReleaseGates:
    async def check(self, session: AsyncSession, store: BlobStore, project_id: str, gate: Gate) -> None:
        """A gate is kept with its version only if it can run: its eval is one of the project's, its data source is
        one a run of that eval accepts (all of it read and checked now), and every criterion ``min_pass_rate`` names
        is one of the eval's. 400s name the ``gate.…`` field."""
        if gate.data_source.model is not None:
            raise InvalidRequest(
                "A gate's data source names no model: each version it judges is run as 'alias@N'.",
                param="gate.data_source.model",
            )
        try:
            evaluation = await eval_service.check_source(session, store, project_id, gate.eval_id, gate.data_source)
        except NotFound:
            raise InvalidRequest(
                f"No eval '{gate.eval_id}' in this project.", param="gate.eval_id", code="eval_not_found"
            ) from None
        except InvalidRequest as exc:
            exc.param = f"gate.{exc.param}" if exc.param else "gate.data_source"
            raise
        if isinstance(gate.min_pass_rate, Mapping):
            known = {key for criterion in evaluation.testing_criteria for key in (criterion["id"], criterion["name"])}
            for key in gate.min_pass_rate:
                if key not in known:
                    names = ", ".join(repr(c["name"]) for c in evaluation.testing_criteria)
                    raise InvalidRequest(
                        f"The eval {evaluation.id} has no testing criterion named '{key}' (it has {names}).",
                        param="gate.min_pass_rate",
                    )

    async def judge(
        self, runtime: GateRuntime, principal: Principal, alias: str, candidate: int, active: int | None, gate: Gate
    ) -> Verdict:
        """Run the gate of ``alias`` version ``candidate`` (and, for ``max_regression``, of the ``active`` version)
        and judge it. Never raises for the outcome: a gate that cannot run, or whose runs fail, are canceled or
        outlast ``timeout_seconds``, is inconclusive."""
        baseline = active if gate.max_regression is not None and active not in (None, candidate) else None
        versions: dict[Role, int] = {"candidate": candidate}
        if baseline is not None:
            versions["active"] = baseline
        figures: dict[str, Any] = {"eval_id": gate.eval_id, "candidate": None, "active": None}
        try:
            evaluation, runs = await self._start(runtime, principal, alias, versions, gate)
        except GatewayError as exc:  # the eval or its file is gone since the version was made
            return Verdict.of("inconclusive", figures, [f"its runs could not be created: {exc.message}"])
        ids = {role: run.id for role, run in runs.items()}
        finished = await self._wait(runtime, principal.project_id, gate.eval_id, ids, gate.timeout_seconds)
        for role, run in finished.items():
            figures[role] = {"version": versions[role], "model": _model(alias, versions[role]), "run_id": ids[role]}
            figures[role]["status"] = run.status.value if run is not None else "deleted"
        unfinished = [role for role, run in finished.items() if run is None or run.status is not RunStatus.completed]
        if unfinished:
            await self._cancel(runtime, principal.project_id, gate.eval_id, [ids[role] for role in unfinished])
            timeout = gate.timeout_seconds
            reasons = [_unfinished(role, finished[role], figures[role], timeout) for role in unfinished]
            return Verdict.of("inconclusive", figures, reasons)
        return _decide(gate, evaluation, finished, figures, baseline)

    @staticmethod
    async def _start(
        runtime: GateRuntime, principal: Principal, alias: str, versions: Mapping[Role, int], gate: Gate
    ) -> tuple[Eval, dict[Role, EvalRun]]:
        """The gate's runs, queued and committed, and the worker woken."""
        async with runtime.sessionmaker() as session:
            evaluation = await eval_service.get(session, principal.project_id, gate.eval_id)
            runs: dict[Role, EvalRun] = {}
            for role, number in versions.items():
                model = _model(alias, number)
                request = CreateEvalRunRequest(
                    name=f"Release gate of {model} ({role})",
                    metadata={"release_gate": role, "alias": alias, "alias_version": str(number)},
                    data_source=gate.data_source.model_copy(update={"model": model}),
                )
                runs[role] = await eval_service.create_run(
                    session,
                    runtime.store,
                    runtime.catalog,
                    principal.project_id,
                    gate.eval_id,
                    request,
                    api_base=runtime.api_base,
                    created_by=principal.key_id,
                )
            await commit(session)
        if runtime.wakeup is not None:
            runtime.wakeup.set()
        return evaluation, runs

    @staticmethod
    async def _wait(
        runtime: GateRuntime, project_id: str, eval_id: str, ids: Mapping[Role, str], seconds: float
    ) -> dict[Role, EvalRun | None]:
        """The runs once all have completed, one has failed, been canceled or deleted, or ``seconds`` have passed."""
        deadline = time.monotonic() + seconds
        watch = runtime.watch or RunWatch()  # without the app's watch (no one tells it), polling alone
        with watch.watching(ids.values()) as told:
            while True:
                told.clear()
                async with runtime.sessionmaker() as session:
                    runs = {role: await _run(session, project_id, eval_id, run_id) for role, run_id in ids.items()}
                done = all(run is not None and run.status is RunStatus.completed for run in runs.values())
                broken = any(run is None or run.status in _BROKEN for run in runs.values())
                left = deadline - time.monotonic()
                if done or broken or left <= 0:
                    return runs
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(told.wait(), min(POLL_SECONDS, left))

    @staticmethod
    async def _cancel(runtime: GateRuntime, project_id: str, eval_id: str, run_ids: Iterable[str]) -> None:
        """Stop the gate's runs still going: no one waits for them any more."""
        async with runtime.sessionmaker() as session:
            for run_id in run_ids:
                with contextlib.suppress(GatewayError):  # ended (or deleted) meanwhile
                    await eval_service.cancel_run(session, project_id, eval_id, run_id)
            await commit(session)


_ACTIVE = frozenset(RunStatus) - FINAL
_BROKEN = FINAL - {RunStatus.completed}


async def _run(session: AsyncSession, project_id: str, eval_id: str, run_id: str) -> EvalRun | None:
    try:
        return await eval_service.get_run(session, project_id, eval_id, run_id)
    except NotFound:
        return None


def _model(alias: str, version: int) -> str:
    return f"{alias}{PIN}{version}"


def _unfinished(role: Role, run: EvalRun | None, figures: Mapping[str, Any], timeout: float) -> str:
    what = f"the {role} version's run {figures['run_id']} ({figures['model']})"
    if run is None:
        return f"{what} was deleted"
    if run.status in _ACTIVE:
        return f"{what} did not finish within {timeout:g} s and was canceled"
    error = (run.error or {}).get("message")
    return f"{what} {run.status.value}" + (f": {error}" if error else "")


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _shown(rate: Rate) -> str:
    return f"{_percent(rate.value or 0.0)} ({rate.passed}/{rate.total})"


def _rates(run: EvalRun, criteria: Sequence[Mapping[str, Any]]) -> list[Rate]:
    """Each criterion's pass rate over every row of the run (an errored row passed nothing), as comparisons count."""
    total = int(run.result_counts.get("total", 0))
    passed = {r["testing_criteria"]: int(r.get("passed", 0)) for r in run.per_testing_criteria_results}
    return [Rate(passed.get(criterion["id"], 0), total) for criterion in criteria]


def _minimum(gate: Gate, criterion: Mapping[str, Any]) -> float | None:
    wanted = gate.min_pass_rate
    if wanted is None or isinstance(wanted, float | int):
        return wanted
    return wanted.get(criterion["id"], wanted.get(criterion["name"]))


def _decide(
    gate: Gate,
    evaluation: Eval,
    runs: Mapping[Role, EvalRun | None],
    figures: dict[str, Any],
    baseline: int | None,
) -> Verdict:
    candidate, active = runs["candidate"], runs.get("active")
    assert candidate is not None  # completed
    criteria = evaluation.testing_criteria
    ours = _rates(candidate, criteria)
    theirs = _rates(active, criteria) if active is not None else [None] * len(criteria)
    reasons: list[str] = []
    rows: list[dict[str, Any]] = []
    for criterion, rate, before in zip(criteria, ours, theirs, strict=True):
        name, minimum = criterion["name"], _minimum(gate, criterion)
        value = rate.value or 0.0
        row: dict[str, Any] = {
            "testing_criteria": criterion["id"],
            "name": name,
            "candidate": rate.as_dict(),
            "active": before.as_dict() if before is not None else None,
            "min_pass_rate": minimum,
            "max_regression": gate.max_regression if before is not None else None,
            "regression": None,
            "passed": True,
        }
        if minimum is not None and value < minimum - EPSILON:
            row["passed"] = False
            reasons.append(f"'{name}' passed {_shown(rate)}, below the minimum {_percent(minimum)}")
        if before is not None and gate.max_regression is not None:
            regression = ((before.value or 0.0) - value) * 100
            row["regression"] = regression
            if regression > gate.max_regression + EPSILON:
                row["passed"] = False
                reasons.append(
                    f"'{name}' passed {_shown(rate)} against {_shown(before)} for the active version {baseline}: "
                    f"{regression:.1f} points worse, more than the {gate.max_regression:g} allowed"
                )
        rows.append(row)
    if not int(candidate.result_counts.get("total", 0)):
        reasons = ["the candidate's run graded no rows"]
        outcome: Outcome = "inconclusive"
    else:
        outcome = "failed" if reasons else "passed"
    return Verdict.of(outcome, {**figures, "criteria": rows}, reasons, baseline)


release_gates = ReleaseGates()
