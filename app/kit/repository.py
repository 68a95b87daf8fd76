"""Query helpers shared by repositories."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest
from app.kit.pagination import Order, Page
from app.kit.time import utcnow

M = TypeVar("M", bound=Any)


async def keyset_page(
    session: AsyncSession,
    stmt: Select[M],
    model: type[M],
    *,
    limit: int,
    order: Order,
    after: str | None,
    by: str = "created_at",
) -> Page[M]:
    """One page of ``stmt`` ordered by (``by``, id), ``by`` a timestamp column (created_at unless said), continuing
    after the row with id ``after``.

    The cursor row is looked up through ``stmt`` itself, so it is only honoured when the caller could see it:
    a foreign or unknown cursor is a 400 on ``after``, never a glimpse into another project.
    """
    created, ident = getattr(model, by), model.id
    if after is not None:
        cursor_stmt = stmt.with_only_columns(created, ident).where(ident == after)
        cursor = (await session.execute(cursor_stmt)).one_or_none()
        if cursor is None:
            raise InvalidRequest(f"No object with id '{after}' to continue after.", param="after")
        c_created, c_id = cursor
        if order is Order.desc:
            stmt = stmt.where(or_(created < c_created, and_(created == c_created, ident < c_id)))
        else:
            stmt = stmt.where(or_(created > c_created, and_(created == c_created, ident > c_id)))
    ordering = (created.desc(), ident.desc()) if order is Order.desc else (created.asc(), ident.asc())
    rows = list((await session.execute(stmt.order_by(*ordering).limit(limit + 1))).scalars().all())
    return Page(items=rows[:limit], has_more=len(rows) > limit)


async def compare_and_set(
    session: AsyncSession,
    row: Any,
    to: Any,
    *,
    from_: Collection[Any],
    lease_owner: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> bool:
    """Compare-and-set the ``status`` of ``row`` (a model with ``id``, ``status`` and ``lease_owner`` columns): ``to``
    only if it is still one of ``from_`` (and, given ``lease_owner``, still that worker's), writing ``values`` with
    it. Whether this call moved it; ``row`` is reloaded either way.

    Of racing writers (the API cancelling, a worker finishing, a worker whose lease another one took over) exactly
    one UPDATE matches the row, and only that transaction may write what the change means (events, webhooks).
    """
    model = type(row)
    await session.flush()  # the session does not autoflush: pending edits of ``row`` land first
    stmt = update(model).where(model.id == row.id, model.status.in_(list(from_)))
    if lease_owner is not None:
        stmt = stmt.where(model.lease_owner == lease_owner)
    stmt = stmt.values(status=to, **(values or {})).returning(model.id)
    moved = (await session.execute(stmt, execution_options={"synchronize_session": False})).scalar()
    try:
        await session.refresh(row)
    except InvalidRequestError:  # the row is gone (deleted meanwhile): it did not move, and there is nothing to reload
        return False
    return moved is not None


# --- rows leased by workers: a model with ``id``, ``status``, ``created_at``, ``lease_owner``, ``lease_expires_at``
# and ``attempts`` columns ------------------------------------------------------------------------------------------


async def claim_lease(
    session: AsyncSession,
    model: type[M],
    runnable: Collection[Any],
    worker_id: str,
    lease: timedelta,
    *,
    values: Mapping[str, Any] | None = None,
) -> M | None:
    """Atomically lease the oldest row whose status is ``runnable`` to ``worker_id``: one no one holds, or whose
    lease expired (its worker died), writing ``values`` with it. The candidate is picked with ``FOR UPDATE SKIP
    LOCKED`` on PostgreSQL, so workers don't queue on each other's rows; the compare-and-set UPDATE is what
    guarantees one winner everywhere."""
    now = utcnow()
    free = and_(model.status.in_(list(runnable)), or_(model.lease_owner.is_(None), model.lease_expires_at < now))
    candidates = select(model.id).where(free).order_by(model.created_at, model.id).limit(1)
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    row_id = (await session.execute(candidates)).scalar()
    if row_id is None:
        return None
    claimed = await session.execute(
        update(model)
        .where(model.id == row_id, free)
        .values(lease_owner=worker_id, lease_expires_at=now + lease, attempts=model.attempts + 1, **(values or {}))
        .returning(model.id)
    )
    if claimed.scalar() is None:
        return None
    found: M | None = await session.get(model, row_id, populate_existing=True)
    return found


async def renew_lease(session: AsyncSession, model: type[Any], row_id: str, worker_id: str, lease: timedelta) -> Any:
    """Extend ``worker_id``'s lease of the row; its status, or None when the lease is no longer ours."""
    result = await session.execute(
        update(model)
        .where(model.id == row_id, model.lease_owner == worker_id)
        .values(lease_expires_at=utcnow() + lease)
        .returning(model.status)
    )
    return result.scalar()


async def leased(session: AsyncSession, model: type[M], row_id: str, worker_id: str) -> M | None:
    """The row as committed now, if ``worker_id`` still holds it."""
    stmt = select(model).where(model.id == row_id, model.lease_owner == worker_id)
    found: M | None = (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()
    return found


async def release_lease(session: AsyncSession, model: type[Any], row_id: str, worker_id: str) -> None:
    await session.execute(
        update(model)
        .where(model.id == row_id, model.lease_owner == worker_id)
        .values(lease_owner=None, lease_expires_at=None)
    )
