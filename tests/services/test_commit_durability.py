"""Which commits wait for the disk: every write transaction, except bookkeeping marked ``durable=False``
(the idempotency records), whose commit the next durable one writes out."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db.session import read_transaction, transaction, write, write_statement
from app.services import idempotency
from app.services.runtime import Runtime


def _syncs_at_commit(s: Session) -> bool:
    if s.get_bind().dialect.name == "sqlite":
        return int(s.execute(text("PRAGMA synchronous")).scalar_one()) >= 2  # FULL (2) or EXTRA (3)
    return str(s.execute(text("SHOW synchronous_commit")).scalar_one()) != "off"


def test_writes_wait_for_the_disk_unless_marked_bookkeeping(runtime: Runtime) -> None:
    for durable in (True, False, True, False, True):  # the same pooled connection, switched each time
        with transaction(runtime.db, durable=durable) as s:
            assert _syncs_at_commit(s) is durable
    with transaction(runtime.db) as s:
        assert _syncs_at_commit(s)


def test_a_group_committed_write_waits_for_the_disk_unless_marked_bookkeeping(runtime: Runtime) -> None:
    for durable in (True, False, True, False, True):
        assert write(runtime.db, _syncs_at_commit, durable=durable) is durable


def test_idempotency_bookkeeping_is_lazy_and_still_kept(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    real, real_statement = write, write_statement

    def spying(factory, job, *, durable=True):  # type: ignore[no-untyped-def]
        seen.append(durable)
        return real(factory, job, durable=durable)

    def spying_statement(factory, statement, *, durable=True):  # type: ignore[no-untyped-def]
        seen.append(durable)
        return real_statement(factory, statement, durable=durable)

    monkeypatch.setattr(idempotency, "write", spying)
    monkeypatch.setattr(idempotency, "write_statement", spying_statement)  # the kept answer
    owner = "prn_durability"
    assert idempotency.claim(runtime, owner, "k-1", "h", "POST", "/v1/orders") is None
    idempotency.finish(runtime, owner, "k-1", 201, "application/json", b'{"ok": true}')
    assert seen == [False, False]
    replay = idempotency.claim(runtime, owner, "k-1", "h", "POST", "/v1/orders")
    assert isinstance(replay, idempotency.Replay) and replay.body == b'{"ok": true}'
    with read_transaction(runtime.db) as s:  # visible to everybody at once, like any commit
        assert s.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one() == 1
