"""Playground: up to three models side by side on one conversation, prompt or classification, streamed from /v1.

The page lists the models /v1/models lists (every provider's base models, the project's fine-tuned models and
checkpoints, its aliases) plus each alias's pinned versions, with the prompt format each one applies to a
completion, so the page can show the exact prompt it sends. The runs go from the browser to /v1 like any client's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.console.web import ConsoleDep, ConsoleRoute, render
from app.db import SessionDep
from app.providers.registry import ProviderRegistry
from app.registry.aliases import alias_service
from app.registry.models import AliasVersion, FineTunedModel
from app.registry.routing import PIN, ModelCatalog
from app.registry.service import registry_service

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

MAX_MODELS = 3
# alias@N options cost a query per alias: past this many aliases only their active versions are listed.
MAX_PINNED_ALIASES = 20

Mode = Literal["chat", "completion", "classification"]
Format = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModelOption:
    """One model the page offers, with what a completion to it applies."""

    id: str
    kind: Literal["base", "upstream", "fine-tuned", "checkpoint", "alias", "alias version"]
    note: str
    prompt_format: Format | None = None
    # An alias whose targets were trained in different formats: the format depends on the target a request gets.
    format_varies: bool = False


def _versioned_format(version: AliasVersion | None, formats: dict[str, Format | None]) -> tuple[Format | None, bool]:
    """The format an alias version's targets share, or (None, True) when they differ."""
    if version is None:
        return None, False
    found = [formats.get(str(target["model"])) for target in version.targets]
    if all(fmt == found[0] for fmt in found):
        return found[0], False
    return None, True


def _targets(version: AliasVersion) -> str:
    return ", ".join(str(target["model"]) for target in version.targets)


def _tuned_options(tuned: Sequence[FineTunedModel]) -> list[ModelOption]:
    return [
        ModelOption(
            id=m.id,
            kind="checkpoint" if m.checkpoint_step is not None else "fine-tuned",
            note=f"step {m.checkpoint_step} of {m.base_model}" if m.checkpoint_step is not None else m.base_model,
            prompt_format=m.prompt_format,
        )
        for m in tuned
    ]


async def model_options(request: Request, session: AsyncSession, project_id: str) -> list[ModelOption]:
    """What /v1/models lists for the project, in its order, then each alias's pinned versions (alias@N)."""
    providers: ProviderRegistry = request.app.state.providers
    catalog: ModelCatalog = request.app.state.catalog
    options: list[ModelOption] = []
    for base in providers.base_models():
        endpoint = catalog.base.get(base.id)
        upstream = endpoint is not None and endpoint.upstream_model is not None
        options.append(ModelOption(id=base.id, kind="upstream" if upstream else "base", note=base.owned_by))
    tuned = await registry_service.fine_tuned(session, project_id)
    options += _tuned_options(tuned)
    formats: dict[str, Format | None] = {m.id: m.prompt_format for m in tuned}
    pinned: list[ModelOption] = []
    for index, alias in enumerate(await registry_service.aliases(session, project_id)):
        versions = await alias_service.versions(session, project_id, alias.name) if index < MAX_PINNED_ALIASES else []
        by_number = {v.version: v for v in versions}
        active = by_number.get(alias.active_version) if alias.active_version is not None else None
        if alias.active_version is not None:
            fmt, varies = _versioned_format(active, formats)
            note = f"version {alias.active_version}" + (f" → {_targets(active)}" if active else "")
            options.append(ModelOption(alias.name, "alias", note, fmt, varies))
        for version in versions:
            fmt, varies = _versioned_format(version, formats)
            pin = f"{alias.name}{PIN}{version.version}"
            pinned.append(ModelOption(pin, "alias version", f"→ {_targets(version)}", fmt, varies))
    return options + pinned


def preselected(models: str) -> list[str]:
    """``a,b,c`` from the URL: at most three ids, blanks dropped."""
    return [m.strip() for m in models.split(",") if m.strip()][:MAX_MODELS]


@router.get("/playground", response_class=HTMLResponse)
async def playground(
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    models: Annotated[str, Query(max_length=2048, description="Up to three comma-separated model ids.")] = "",
    mode: Annotated[Mode, Query()] = "chat",
) -> HTMLResponse:
    options = await model_options(request, session, console.project_id)
    chosen = preselected(models)
    if not chosen and options:
        chosen = [options[0].id]
    slots = chosen + [""] * (MAX_MODELS - len(chosen))
    return render(
        request,
        "playground.html",
        console=console,
        active="playground",
        title="Playground",
        options=options,
        slots=slots,
        mode=mode,
        page_data={"models": [asdict(option) for option in options], "max_models": MAX_MODELS},
    )
