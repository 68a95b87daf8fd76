"""Registry: the project's aliases (live version, traffic split, fallbacks, guard), the models they can point at,
and an alias's page with its versions, release gates, promote/rollback and its audit log.

Reads are the services the /v1/registry endpoints call; every change is made by the browser through that API, so
a gated promotion is judged (and refused with its 409) exactly as it is for any other client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.console.web import ConsoleDep, ConsoleRoute, render
from app.db import SessionDep
from app.evals.service import eval_service
from app.kit.pagination import Order
from app.providers.registry import ProviderRegistry
from app.registry.aliases import alias_service
from app.registry.models import AliasVersion, RegistryChange
from app.registry.service import registry_service

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

ALIAS_PAGE_SIZE = 50
RECENT_CHANGES = 20
ALIAS_CHANGES = 25
# Audit entries that carry a release gate's verdict: a refusal, or a promotion the gate let through.
VERDICTS = ("version.gate_failed", "version.gate_inconclusive", "version.promoted")
# An alias name is at most 128 characters (AliasName); a longer one cannot exist, so it is not looked up.
AliasPath = Annotated[str, Path(max_length=128)]
Cursor = Annotated[str | None, Query(max_length=64)]


@dataclass(frozen=True, slots=True)
class Share:
    """One target of a version with its share of the traffic; a minority share of a split is the canary."""

    model: str
    percent: float
    canary: bool


@dataclass(frozen=True, slots=True)
class ChangeView:
    """One audit entry as a person reads it: what happened, and the live version before and after."""

    change: RegistryChange
    summary: str
    before: str | None
    after: str | None


def shares(targets: Sequence[Mapping[str, Any]]) -> list[Share]:
    total = sum(float(t.get("weight", 1.0)) for t in targets) or 1.0
    top = max((float(t.get("weight", 1.0)) for t in targets), default=0.0)
    split = len(targets) > 1
    return [
        Share(str(t["model"]), 100 * float(t.get("weight", 1.0)) / total, split and float(t.get("weight", 1.0)) < top)
        for t in targets
    ]


def routing_words(targets: Sequence[Mapping[str, Any]]) -> str:
    """``tiny-smollm2`` or ``90% tiny-smollm2, 10% ft:… (canary)``."""
    parts = shares(targets)
    if len(parts) == 1:
        return parts[0].model
    return ", ".join(f"{s.percent:.0f}% {s.model}" + (" (canary)" if s.canary else "") for s in parts)


def _percent(rate: float) -> str:
    return f"{rate * 100:g}%"


def gate_words(gate: Mapping[str, Any] | None) -> str:
    """A release gate's thresholds in a sentence."""
    if not gate:
        return "No gate"
    rules: list[str] = []
    wanted = gate.get("min_pass_rate")
    if isinstance(wanted, Mapping):
        rules.extend(f"'{name}' passes at least {_percent(float(rate))}" for name, rate in wanted.items())
    elif wanted is not None:
        rules.append(f"every criterion passes at least {_percent(float(wanted))}")
    if gate.get("max_regression") is not None:
        rules.append(f"at most {float(gate['max_regression']):g} points below the live version")
    timeout = int(gate.get("timeout_seconds", 600))
    return f"Eval {gate.get('eval_id')}: {' and '.join(rules)} (within {timeout} s)"


def verdicts(changes: Iterable[RegistryChange]) -> dict[int, dict[str, Any]]:
    """The latest gate verdict of each version (changes newest first): outcome and reasons."""
    found: dict[int, dict[str, Any]] = {}
    for change in changes:
        gate = change.detail.get("gate")
        if change.version is None or change.version in found or not isinstance(gate, Mapping):
            continue
        found[change.version] = {"outcome": gate.get("outcome", "passed"), "reasons": gate.get("reasons", [])}
    return found


def _live(version: Any) -> str:
    return f"version {version}" if version is not None else "none"


def describe(change: RegistryChange) -> ChangeView:
    """Each audit action in words, with the live version before → after when the action moved it."""
    detail, number, action = change.detail, change.version, change.action
    if action == "alias.created":
        said = detail.get("description")
        return ChangeView(change, "Created the alias" + (f" ({said})" if said else ""), None, None)
    if action == "alias.deleted":
        return ChangeView(change, "Deleted the alias and its versions", _live(number), "none")
    if action == "version.created":
        targets = detail.get("targets") or []
        words = f"Added version {number}: {routing_words(targets)}" if targets else f"Added version {number}"
        if detail.get("fallbacks"):
            words += f"; falls back to {', '.join(detail['fallbacks'])}"
        if detail.get("guard"):
            words += f"; guarded by {detail['guard'].get('model')}"
        if detail.get("gate"):
            words += f"; gated by eval {detail['gate'].get('eval_id')}"
        return ChangeView(change, words, None, None)
    if action == "version.promoted":
        gated = " after its release gate passed" if detail.get("gate") else ""
        return ChangeView(change, f"Promoted version {number}{gated}", _live(detail.get("from_version")), _live(number))
    if action == "version.rolled_back":
        return ChangeView(change, f"Rolled back to version {number}", _live(detail.get("from_version")), _live(number))
    if action in ("version.gate_failed", "version.gate_inconclusive"):
        how = "refused" if action == "version.gate_failed" else "was inconclusive for"
        reasons = "; ".join((detail.get("gate") or {}).get("reasons", []))
        words = f"Release gate {how} version {number}" + (f": {reasons}" if reasons else "")
        stayed = _live(detail.get("active_version"))
        return ChangeView(change, words, stayed, f"{stayed} (unchanged)")
    return ChangeView(change, f"{action}" + (f" (version {number})" if number is not None else ""), None, None)


async def _models(request: Request, session: SessionDep, project_id: str) -> tuple[list[str], list[Any]]:
    """What an alias version can name: the base models (every provider's) and the project's fine-tuned models."""
    providers: ProviderRegistry = request.app.state.providers
    base = [m.id for m in providers.base_models()]
    return base, list(await registry_service.fine_tuned(session, project_id))


@router.get("/registry", response_class=HTMLResponse)
async def registry(request: Request, session: SessionDep, console: ConsoleDep, after: Cursor = None) -> HTMLResponse:
    project_id = console.project_id
    page = await alias_service.page(session, project_id, limit=ALIAS_PAGE_SIZE, order=Order.asc, after=after)
    live = await alias_service.active_versions(session, project_id, page.items)
    recent = await alias_service.changes(
        session, project_id, alias=None, limit=RECENT_CHANGES, order=Order.desc, after=None
    )
    base, tuned = await _models(request, session, project_id)
    return render(
        request,
        "registry.html",
        console=console,
        active="registry",
        title="Registry",
        aliases=page.items,
        has_more=page.has_more,
        paged=after is not None,
        live=live,
        base_models=base,
        tuned_models=tuned,
        changes=[describe(c) for c in recent.items],
        shares=shares,
    )


@router.get("/registry/{name}", response_class=HTMLResponse)
async def alias_page(
    request: Request, name: AliasPath, session: SessionDep, console: ConsoleDep, after: Cursor = None
) -> HTMLResponse:
    project_id = console.project_id
    alias = await alias_service.get(session, project_id, name)  # NotFound: a foreign or unknown alias is a 404 page
    versions: Sequence[AliasVersion] = await alias_service.versions(session, project_id, name)
    judged = await alias_service.changes(
        session, project_id, alias=name, limit=100, order=Order.desc, after=None, actions=VERDICTS
    )
    log = await alias_service.changes(
        session, project_id, alias=name, limit=ALIAS_CHANGES, order=Order.desc, after=after
    )
    base, tuned = await _models(request, session, project_id)
    evals = await eval_service.list_evals(
        session, project_id, limit=100, order=Order.desc, after=None, order_by="created_at"
    )
    live = next((v for v in versions if v.version == alias.active_version), None)
    history = list(alias.activations)
    return render(
        request,
        "alias.html",
        console=console,
        active="registry",
        title=f"Alias {alias.name}",
        alias=alias,
        api_path=f"/v1/registry/aliases/{quote(alias.name, safe='')}",
        versions=list(reversed(versions)),  # newest first: the one just added is on top
        live=live,
        rollback_to=history[-2] if len(history) >= 2 else None,
        earlier=set(history[:-1]),
        verdicts=verdicts(judged.items),
        changes=[describe(c) for c in log.items],
        changes_more=log.has_more,
        changes_paged=after is not None,
        base_models=base,
        tuned_models=tuned,
        evals=evals.items,
        shares=shares,
        gate_words=gate_words,
        routing_words=routing_words,
    )
