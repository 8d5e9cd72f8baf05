"""Console sessions (app/services/web_sessions.py) on SQLite and PostgreSQL: a key becomes a session, the
cookie value is never stored, and a session ends on sign-out, at expiry and when its principal is disabled."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.db.models import WebSession, utcnow
from app.db.session import read_transaction, transaction
from app.errors import AuthError
from app.services import principals, web_sessions
from app.services.runtime import Runtime


def _merchant_key(rt: Runtime) -> tuple[str, str]:
    issued = principals.register(rt, "merchant", rt.dev_accounts["merchant"].address, "m")
    return issued.principal.id, issued.api_key


def test_a_key_becomes_a_session_whose_cookie_is_stored_only_hashed(runtime: Runtime) -> None:
    pid, key = _merchant_key(runtime)
    signed = web_sessions.sign_in(runtime.db, key)
    assert signed.principal.id == pid and signed.cookie != signed.csrf_token
    with read_transaction(runtime.db) as s:
        (row,) = s.scalars(select(WebSession)).all()
    assert row.id == hashlib.sha256(signed.cookie.encode()).hexdigest()
    assert signed.cookie not in (row.id, row.csrf_token)
    current = web_sessions.current(runtime.db, signed.cookie)
    assert current.principal.id == pid
    assert web_sessions.csrf_ok(current, signed.csrf_token)
    assert not web_sessions.csrf_ok(current, signed.csrf_token + "x")
    assert not web_sessions.csrf_ok(current, None)


def test_a_bad_key_opens_no_session(runtime: Runtime) -> None:
    with pytest.raises(AuthError):
        web_sessions.sign_in(runtime.db, "tg_merchant_unknown")
    with read_transaction(runtime.db) as s:
        assert s.scalars(select(WebSession)).all() == []


def test_sign_out_expiry_and_disabling_end_the_session(runtime: Runtime) -> None:
    pid, key = _merchant_key(runtime)
    out = web_sessions.sign_in(runtime.db, key)
    web_sessions.sign_out(runtime.db, out.cookie)
    with pytest.raises(AuthError):
        web_sessions.current(runtime.db, out.cookie)

    old = web_sessions.sign_in(runtime.db, key)
    with transaction(runtime.db) as s:
        row = s.get(WebSession, hashlib.sha256(old.cookie.encode()).hexdigest())
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    with pytest.raises(AuthError):
        web_sessions.current(runtime.db, old.cookie)
    web_sessions.sign_in(runtime.db, key)  # sweeps expired sessions
    with read_transaction(runtime.db) as s:
        assert s.get(WebSession, hashlib.sha256(old.cookie.encode()).hexdigest()) is None

    live = web_sessions.sign_in(runtime.db, key)
    principals.disable_by_id(runtime, pid)
    with pytest.raises(AuthError):
        web_sessions.current(runtime.db, live.cookie)
    with pytest.raises(AuthError):
        web_sessions.current(runtime.db, "")
