"""Aliases: create, version, promote and roll back; every change lands in the audit log in the same transaction.

A version with a release gate (``app.registry.gates``) is activated only once its gate passes; a gate that fails is
recorded in the audit log all the same. Rollback is never gated: it is the way back when a release goes wrong.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.db import commit
from app.errors import Conflict, InvalidRequest, NotFound
from app.kit.ids import new_id
from app.kit.pagination import Order, Page
from app.registry.gates import GateRefused, GateRuntime, release_gates
from app.registry.models import AliasVersion, ModelAlias, RegistryChange
from app.registry.repository import AliasRepository, ModelRepository
from app.registry.routing import ModelCatalog
from app.registry.schemas import AliasCreate, AliasVersionCreate, Gate


def alias_not_found(name: str) -> NotFound:
    return NotFound(f"No alias named '{name}'.", param="alias", code="alias_not_found")


def _no_version(name: str, number: int) -> NotFound:
    return NotFound(f"Alias '{name}' has no version {number}.", param="version", code="version_not_found")


class AliasService:
    async def create(
        self, session: AsyncSession, catalog: ModelCatalog, principal: Principal, body: AliasCreate
    ) -> ModelAlias:
        if body.name in catalog.base:
            raise InvalidRequest(f"'{body.name}' is a base model's id; pick another alias name.", param="name")
        if body.name.startswith("ft:") and await ModelRepository(session).get(principal.project_id, body.name):
            raise InvalidRequest(
                f"'{body.name}' is a fine-tuned model of this project; pick another name.", param="name"
            )
        repo = AliasRepository(session)
        if await repo.get(principal.project_id, body.name) is not None:
            raise self._exists(body.name)
        alias = ModelAlias(
            id=new_id("alias"),
            project_id=principal.project_id,
            name=body.name,
            description=body.description,
            activations=[],
        )
        try:
            async with session.begin_nested():
                await repo.add(alias)
        except IntegrityError:  # created concurrently
            raise self._exists(body.name) from None
        await self._record(session, principal, "alias.created", alias.name, None, {"description": body.description})
        return alias

    async def get(self, session: AsyncSession, project_id: str, name: str, *, for_update: bool = False) -> ModelAlias:
        alias = await AliasRepository(session).get(project_id, name, for_update=for_update)
        if alias is None:
            raise alias_not_found(name)
        return alias

    async def page(
        self, session: AsyncSession, project_id: str, *, limit: int, order: Order, after: str | None
    ) -> Page[ModelAlias]:
        return await AliasRepository(session).page(project_id, limit=limit, order=order, after=after)

    async def delete(self, session: AsyncSession, principal: Principal, name: str) -> ModelAlias:
        alias = await self.get(session, principal.project_id, name, for_update=True)
        await AliasRepository(session).delete(alias)
        await self._record(session, principal, "alias.deleted", name, alias.active_version, {})
        return alias

    async def add_version(
        self,
        session: AsyncSession,
        catalog: ModelCatalog,
        principal: Principal,
        name: str,
        body: AliasVersionCreate,
        gates: GateRuntime,
    ) -> AliasVersion:
        """A new numbered version; every model it names must exist in the project (aliases cannot nest), and its
        gate, if it has one, must be able to run. With ``activate``, a gated version is activated once its gate
        passes; when the gate refuses, the version is kept (committed, inactive) and the 409 says so."""
        for field, models in (
            ("targets", [t.model for t in body.targets]),
            ("fallbacks", body.fallbacks),
            ("guard", [body.guard.model] if body.guard else []),
        ):
            for model in models:
                try:
                    await catalog.endpoint(principal.project_id, model)
                except NotFound:
                    raise InvalidRequest(
                        f"'{model}' is not a base or fine-tuned model of this project (aliases cannot point at "
                        "aliases).",
                        param=field,
                        code="model_not_found",
                    ) from None
        if body.gate is not None:
            await release_gates.check(session, gates.store, principal.project_id, body.gate)
        repo = AliasRepository(session)
        alias = await self.get(session, principal.project_id, name, for_update=True)
        number = await repo.last_version(alias.id) + 1
        version = await repo.add_version(
            AliasVersion(
                id=new_id("aliasver"),
                alias_id=alias.id,
                version=number,
                targets=[t.model_dump() for t in body.targets],
                fallbacks=list(body.fallbacks),
                guard=body.guard.model_dump() if body.guard else None,
                gate=body.gate.model_dump(mode="json", exclude_none=True) if body.gate else None,
                note=body.note,
                created_by=principal.key_id,
            )
        )
        detail = body.model_dump(mode="json", exclude={"activate"}, exclude_none=True)
        await self._record(session, principal, "version.created", name, number, detail)
        if body.activate and version.gate is not None:
            await self._activate_gated(session, gates, principal, alias, version, created=True)
        elif body.activate:
            await self._activate(session, principal, alias, number, "version.promoted")
        return version

    async def versions(self, session: AsyncSession, project_id: str, name: str) -> Sequence[AliasVersion]:
        alias = await self.get(session, project_id, name)
        return await AliasRepository(session).versions(alias.id)

    async def version(self, session: AsyncSession, project_id: str, name: str, number: int) -> AliasVersion:
        alias = await self.get(session, project_id, name)
        found = await AliasRepository(session).version(alias.id, number)
        if found is None:
            raise _no_version(name, number)
        return found

    async def promote(
        self, session: AsyncSession, gates: GateRuntime, principal: Principal, name: str, number: int
    ) -> ModelAlias:
        """Make version ``number`` active; a gated one once its gate passes (409 otherwise)."""
        alias = await self.get(session, principal.project_id, name, for_update=True)
        version = await AliasRepository(session).version(alias.id, number)
        if version is None:
            raise _no_version(name, number)
        if version.gate is not None:
            return await self._activate_gated(session, gates, principal, alias, version, created=False)
        await self._activate(session, principal, alias, number, "version.promoted")
        return alias

    async def rollback(self, session: AsyncSession, principal: Principal, name: str) -> ModelAlias:
        """Make the version that was active before the current one active again. Never gated: it is the escape
        hatch when a release goes wrong, and the version it returns to has answered before."""
        alias = await self.get(session, principal.project_id, name, for_update=True)
        history = list(alias.activations)
        if len(history) < 2:
            raise Conflict(
                f"Alias '{name}' has no earlier active version to roll back to.", param="alias", code="no_rollback"
            )
        current = history.pop()
        alias.activations = history
        alias.active_version = history[-1]
        await session.flush()
        await self._record(
            session, principal, "version.rolled_back", name, alias.active_version, {"from_version": current}
        )
        return alias

    async def active_versions(
        self, session: AsyncSession, project_id: str, aliases: Sequence[ModelAlias]
    ) -> dict[str, AliasVersion]:
        """Each alias's active version, by alias id (aliases without one are left out)."""
        return await AliasRepository(session).active_versions(project_id, [a.id for a in aliases])

    async def changes(
        self,
        session: AsyncSession,
        project_id: str,
        *,
        alias: str | None,
        limit: int,
        order: Order,
        after: str | None,
        actions: Collection[str] | None = None,
    ) -> Page[RegistryChange]:
        return await AliasRepository(session).changes(
            project_id, alias=alias, limit=limit, order=order, after=after, actions=actions
        )

    async def _activate_gated(
        self,
        session: AsyncSession,
        gates: GateRuntime,
        principal: Principal,
        alias: ModelAlias,
        version: AliasVersion,
        *,
        created: bool,
    ) -> ModelAlias:
        """Activate ``version`` once its gate passes; otherwise record the refusal and raise :class:`GateRefused`.

        A gate spans transactions, so this is the one place a request commits more than once. What the request did
        so far (a new version) is committed first: the gate's runs call it as ``alias@N``, and no transaction (nor
        the alias's row lock) may be held while they run. A refusal is recorded in a transaction of its own, since
        the request then fails. The activation re-reads the alias under lock and is the request's own commit; if
        another version became active meanwhile, a regression measured against the old one no longer holds (409).
        """
        alias_id, name, number, active = alias.id, alias.name, version.version, alias.active_version
        gate = Gate.model_validate(version.gate)
        await commit(session)
        verdict = await release_gates.judge(gates, principal, name, number, active, gate)
        inactive = f" Version {number} was created and stays inactive." if created else ""
        param = "activate" if created else "version"
        if not verdict.passed:
            detail = {"active_version": active, "gate": verdict.figures}
            async with gates.sessionmaker() as own:
                await self._record(own, principal, f"version.gate_{verdict.outcome}", name, number, detail)
                await commit(own)
            raise GateRefused(verdict.message(name, number) + inactive, verdict, param=param)
        alias = await self.get(session, principal.project_id, name, for_update=True)
        if alias.id != alias_id:
            raise alias_not_found(name)  # deleted (and made again) while the gate ran
        if verdict.baseline is not None and alias.active_version != verdict.baseline:
            raise Conflict(
                f"The active version of '{name}' changed from {verdict.baseline} to {alias.active_version} while the "
                f"gate of version {number} ran; promote it again to judge it against the new one.{inactive}",
                param=param,
                code="gate_stale",
            )
        await self._activate(session, principal, alias, number, "version.promoted", gate=verdict.figures)
        return alias

    async def _activate(
        self,
        session: AsyncSession,
        principal: Principal,
        alias: ModelAlias,
        number: int,
        action: str,
        *,
        gate: dict[str, Any] | None = None,
    ) -> None:
        previous = alias.active_version
        alias.active_version = number
        alias.activations = [*alias.activations, number]
        await session.flush()
        detail: dict[str, Any] = {"from_version": previous}
        if gate is not None:
            detail["gate"] = gate
        await self._record(session, principal, action, alias.name, number, detail)

    async def _record(
        self,
        session: AsyncSession,
        principal: Principal,
        action: str,
        alias: str,
        version: int | None,
        detail: dict[str, Any],
    ) -> None:
        change = RegistryChange(
            id=new_id("regchg"),
            project_id=principal.project_id,
            actor=principal.key_id,
            action=action,
            alias=alias,
            version=version,
            detail=detail,
        )
        await AliasRepository(session).record(change)

    @staticmethod
    def _exists(name: str) -> Conflict:
        return Conflict(f"An alias named '{name}' already exists.", param="name", code="alias_exists")


alias_service = AliasService()
