"""Query helpers shared by repositories."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest
from app.kit.pagination import Order, Page

M = TypeVar("M", bound=Any)


async def keyset_page(
    session: AsyncSession,
    stmt: Select[M],
    model: type[M],
    *,
    limit: int,
    order: Order,
    after: str | None,
) -> Page[M]:
    """One page of ``stmt`` ordered by (created_at, id), continuing after the row with id ``after``.

    The cursor row is looked up through ``stmt`` itself, so it is only honoured when the caller could see it:
    a foreign or unknown cursor is a 400 on ``after``, never a glimpse into another project.
    """
    created, ident = model.created_at, model.id
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
