"""Database engines and the request session: the one place where a transaction is committed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC_DRIVERS = {"sqlite": "sqlite+pysqlite", "postgresql": "postgresql+psycopg"}


def _with_driver(url: str, drivers: dict[str, str]) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in drivers:
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    return parsed.set(drivername=drivers[backend])


def async_url(url: str) -> URL:
    """The URL with the async driver ftgw uses for its backend (aiosqlite, psycopg)."""
    return _with_driver(url, _ASYNC_DRIVERS)


def sync_url(url: str) -> URL:
    """The URL with the sync driver used by Alembic and the CLI."""
    return _with_driver(url, _SYNC_DRIVERS)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; busy_timeout waits for that writer instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def configure_engine(engine: Engine) -> None:
    """Per-connection setup shared by the async and sync engines."""
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)


def create_engine_from_url(url: str) -> AsyncEngine:
    kwargs: dict[str, Any] = {}
    if make_url(url).get_backend_name() == "postgresql":
        kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
    engine = create_async_engine(async_url(url), **kwargs)
    configure_engine(engine.sync_engine)
    return engine


def create_sessionmaker(engine: AsyncEngine, info: dict[str, Any] | None = None) -> async_sessionmaker[AsyncSession]:
    """``info`` is copied into every session's ``session.info``: per-app objects (wake-up events) ride along."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info or {})


AFTER_COMMIT = "ftgw.after_commit"
AFTER_ROLLBACK = "ftgw.after_rollback"


def after_commit(session: AsyncSession, callback: Callable[[], Any]) -> None:
    """Run ``callback`` once the surrounding transaction has committed (work that must not outrun the data)."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


def after_rollback(session: AsyncSession, callback: Callable[[], Any]) -> None:
    """Run ``callback`` if the surrounding transaction is rolled back (undo side effects outside the database)."""
    session.info.setdefault(AFTER_ROLLBACK, []).append(callback)


def _run(session: AsyncSession, key: str) -> None:
    callbacks = session.info.pop(key, [])
    session.info.pop(AFTER_ROLLBACK if key == AFTER_COMMIT else AFTER_COMMIT, None)
    for callback in callbacks:
        callback()


async def commit(session: AsyncSession) -> None:
    """Commit and run the after-commit callbacks; on failure roll back and run the after-rollback ones."""
    try:
        await session.commit()
    except BaseException:
        await rollback(session)
        raise
    _run(session, AFTER_COMMIT)


async def rollback(session: AsyncSession) -> None:
    try:
        await session.rollback()
    finally:
        _run(session, AFTER_ROLLBACK)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the endpoint returns, rolled back when it raises."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await rollback(session)
            raise
        else:
            await commit(session)


# scope="function": commit before the response is sent, so a failed commit is the client's error, not a lie.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
