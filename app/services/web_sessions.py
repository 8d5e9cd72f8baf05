"""Console sign-in: an API key is exchanged for a session (a random cookie value and a CSRF token).

Only the cookie value's SHA-256 is stored, like API keys: a copy of the table opens no session. A session is
a row rather than a signed cookie so that signing out, disabling the principal or revoking its keys ends it
everywhere at once. Checking a session is a read; only sign-in and sign-out write.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Principal, WebSession, utcnow
from app.db.session import read_transaction, transaction
from app.errors import AuthError
from app.services import principals

#: A console session ends this long after sign-in (no sliding renewal: checking stays a read).
SESSION_LIFETIME = timedelta(hours=12)


@dataclass(frozen=True)
class SignedIn:
    """A live console session: who it is, the cookie value (given to the browser once) and the CSRF token."""

    principal: Principal
    cookie: str
    csrf_token: str


@dataclass(frozen=True)
class Current:
    """The principal behind a session cookie and the session's CSRF token."""

    principal: Principal
    csrf_token: str


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def sign_in(db: sessionmaker[Session], api_key: str) -> SignedIn:
    """A new session for the principal of ``api_key`` (an :class:`AuthError` for a bad key). Expired
    sessions are swept here, the only other write."""
    principal = principals.resolve(db, api_key)
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = utcnow()
    with transaction(db) as s:
        s.execute(delete(WebSession).where(WebSession.expires_at < now))
        s.add(
            WebSession(
                id=_digest(cookie),
                principal_id=principal.id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
    return SignedIn(principal, cookie, csrf)


def current(db: sessionmaker[Session], cookie: str) -> Current:
    """The live session of ``cookie``: an :class:`AuthError` when unknown, ended, expired, or when its
    principal is disabled (disabling ends its console sessions at once)."""
    if not cookie or len(cookie) > 200:
        raise AuthError("no console session")
    with read_transaction(db) as s:
        row = s.get(WebSession, _digest(cookie))
        if row is None or row.ended_at is not None or row.expires_at <= utcnow():
            raise AuthError("the console session has ended: sign in again")
        principal = s.get(Principal, row.principal_id)
        if principal is None or principal.disabled:
            raise AuthError("this principal is disabled")
        return Current(principal, row.csrf_token)


def csrf_ok(session: Current, token: str | None) -> bool:
    """Whether ``token`` is the session's CSRF token (constant-time)."""
    return bool(token) and hmac.compare_digest(session.csrf_token.encode(), str(token).encode())


def sign_out(db: sessionmaker[Session], cookie: str) -> None:
    """End the session of ``cookie`` (nothing happens for an unknown one)."""
    with transaction(db) as s:
        row = s.get(WebSession, _digest(cookie))
        if row is not None and row.ended_at is None:
            row.ended_at = utcnow()
