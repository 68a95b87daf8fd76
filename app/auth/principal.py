"""Who is calling: the principal resolved from ``Authorization: Bearer <key>``, with a short-lived cache, or from
the web console's session cookie (app/auth/sessions.py).

Resolving a key costs a database round trip; the inference hot path must not pay it on every call, so a
verified key is trusted for ``FTGW_AUTH_CACHE_SECONDS``. A revocation evicts the key from this process's cache at
once; with ``FTGW_REDIS_URL`` set it is announced and every other process evicts it too (``app.shared``),
otherwise they see it when their entry expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.keys import hash_secret
from app.auth.models import ApiKey, Role
from app.auth.repository import ApiKeyRepository
from app.auth.sessions import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, SignedIn, console_sessions
from app.errors import AuthenticationFailed, PermissionDenied
from app.kit.singleflight import SingleFlight


@dataclass(frozen=True, slots=True)
class Principal:
    project_id: str
    key_id: str
    role: Role
    max_requests_per_minute: int | None = None
    max_tokens_per_minute: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin


class AuthCache:
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self.lookups: SingleFlight[str, Principal] = SingleFlight()  # one database lookup per key at a time
        self.announce: Callable[[str], None] | None = None  # with Redis: tells the other replicas (app/shared)

    def get(self, secret_hash: str) -> Principal | None:
        entry = self._entries.get(secret_hash)
        if entry is None:
            return None
        expires, principal = entry
        if expires < time.monotonic():
            self._entries.pop(secret_hash, None)
            return None
        return principal

    def put(self, secret_hash: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[secret_hash] = (time.monotonic() + self.ttl, principal)

    def evict_key(self, key_id: str) -> None:
        """The key was revoked or its limits changed: evict it here and announce it to the other replicas."""
        self.forget_key(key_id)
        if self.announce is not None:
            self.announce(key_id)

    def forget_key(self, key_id: str) -> None:
        """Evict the key in this process only (another replica announced a change)."""
        for secret_hash, (_, principal) in list(self._entries.items()):
            if principal.key_id == key_id:
                self._entries.pop(secret_hash, None)

    def forget_all(self) -> None:
        self._entries.clear()


_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def bearer_secret(header: str | None) -> str:
    """The key of an ``Authorization: Bearer <key>`` header; AuthenticationFailed when it is missing or malformed."""
    if not header:
        raise AuthenticationFailed(_MISSING, code="missing_api_key")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or " " in secret:
        raise AuthenticationFailed(
            "Malformed Authorization header: expected 'Bearer YOUR_KEY'.", code="invalid_authorization_header"
        )
    return secret


def key_principal(key: ApiKey, project_id: str) -> Principal:
    """Who a key is, acting in ``project_id`` (its own, or the one an admin's console session switched to)."""
    return Principal(
        project_id=project_id,
        key_id=key.id,
        role=key.role,
        max_requests_per_minute=key.max_requests_per_minute,
        max_tokens_per_minute=key.max_tokens_per_minute,
    )


def cached_principal(secret: str, cache: AuthCache) -> Principal | None:
    """The principal of a key this process verified within ``FTGW_AUTH_CACHE_SECONDS``, without a database trip."""
    return cache.get(hash_secret(secret))


async def resolve_principal(secret: str, cache: AuthCache, sessionmaker: async_sessionmaker[AsyncSession]) -> Principal:
    secret_hash = hash_secret(secret)
    principal = cache.get(secret_hash)
    if principal is not None:
        return principal

    async def look_up() -> Principal:
        async with sessionmaker() as session:
            key = await ApiKeyRepository(session).get_active_by_hash(secret_hash)
        if key is None:
            raise AuthenticationFailed("Incorrect API key provided. The key is unknown or has been revoked.")
        found = key_principal(key, key.project_id)
        cache.put(secret_hash, found)
        return found

    return await cache.lookups.run(secret_hash, look_up)


async def get_principal(request: Request) -> Principal:
    state = request.app.state
    if "authorization" not in request.headers and SESSION_COOKIE in request.cookies:
        return await console_principal(request)
    return await resolve_principal(
        bearer_secret(request.headers.get("authorization")), state.auth_cache, state.sessionmaker
    )


async def signed_in(request: Request) -> SignedIn | None:
    """The console session the request's cookie names, if it is live (resolved once per request)."""
    if hasattr(request.state, "console"):
        found: SignedIn | None = request.state.console
        return found
    token = request.cookies.get(SESSION_COOKIE)
    found = None
    if token:
        async with request.app.state.sessionmaker() as session:
            found = await console_sessions.resolve(session, token)
    request.state.console = found
    return found


async def console_principal(request: Request) -> Principal:
    """The web console calls the same API with its session cookie instead of a key; whatever changes state must
    carry the session's CSRF token."""
    found = await signed_in(request)
    if found is None:
        raise AuthenticationFailed(
            "Your console session has expired or was signed out; sign in again.", code="invalid_session"
        )
    if request.method not in SAFE_METHODS and not found.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise PermissionDenied(
            "This request needs the console's CSRF token in the X-CSRF-Token header.", code="csrf_token_invalid"
        )
    return key_principal(found.key, found.row.project_id)


async def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_admin:
        raise PermissionDenied("This endpoint needs an admin API key.")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(get_admin)]
