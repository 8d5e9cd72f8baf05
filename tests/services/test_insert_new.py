"""One-statement inserts (:func:`app.db.session.insert_new`) and what uses them on the write paths of a
funding: the intent (:func:`app.services.outbox.relayer.submit`) and the permit nonce's claim."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event, func, select

from app.db.models import IndexedBlock, Intent, PermitClaim
from app.db.session import insert_new, read_transaction, transaction, upsert_all
from app.errors import DomainError
from app.services.runtime import Runtime
from app.services.trade import orders

TOKEN = "0x" + "11" * 20
BUYER = "0x" + "22" * 20


@contextmanager
def statements(rt: Runtime) -> Iterator[list[str]]:
    """The SQL statements run while the block runs."""
    engine = rt.db.kw["bind"]
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _intent_values(tag: str, status: str = "pending") -> dict[str, Any]:
    return {
        "kind": "fund",
        "order_id": "0x" + tag.ljust(64, "0"),
        "intent_hash": "0x" + tag.ljust(64, "1"),
        "payload": {"n": tag},
        "status": status,
    }


def test_a_new_row_is_one_insert_with_the_columns_python_defaults(runtime: Runtime) -> None:
    tag = uuid.uuid4().hex
    with transaction(runtime.db) as s, statements(runtime) as seen:
        intent = insert_new(s, Intent, {k: v for k, v in _intent_values(tag).items() if k != "status"})
        assert intent is not None
        # what the row holds is readable without loading it: the defaults a flush would have computed
        assert intent.id.startswith("int_") and intent.status == "pending" and intent.attempts == 0
        assert intent.created_at is not None and intent.tx_hash is None
        assert s.get(Intent, intent.id) is intent
    assert seen == ["INSERT"]  # no look-up before it, no savepoint around it
    with read_transaction(runtime.db) as s:
        row = s.get(Intent, intent.id)
        assert row is not None
        assert (row.status, row.attempts, row.payload) == ("pending", 0, {"n": tag})


def test_a_taken_key_inserts_nothing_and_changes_nothing(runtime: Runtime) -> None:
    tag = uuid.uuid4().hex
    with transaction(runtime.db) as s:
        first = insert_new(s, Intent, _intent_values(tag))
        assert first is not None
    twin = {**_intent_values(tag), "payload": {"n": "twin"}}
    with transaction(runtime.db) as s:
        assert insert_new(s, Intent, twin) is None  # the unique intent_hash is taken
        assert insert_new(s, Intent, {**_intent_values(uuid.uuid4().hex), "id": first.id}) is None  # the key
    with read_transaction(runtime.db) as s:
        assert s.scalar(select(func.count()).select_from(Intent).where(Intent.payload.is_not(None))) == 1
        kept = s.get(Intent, first.id)
        assert kept is not None and kept.payload == {"n": tag}


def _claim(rt: Runtime, order_id: str, intent: Intent, nonce: int = 7) -> None:
    order = SimpleNamespace(token=TOKEN, buyer=BUYER, id=order_id)
    with transaction(rt.db) as s:
        orders._claim_permit(s, order, nonce, intent)  # type: ignore[arg-type]


def _new_intent(rt: Runtime, status: str = "pending") -> Intent:
    with transaction(rt.db) as s:
        intent = insert_new(s, Intent, _intent_values(uuid.uuid4().hex, status))
        assert intent is not None
        return intent


def _claims(rt: Runtime) -> list[tuple[str, str]]:
    with read_transaction(rt.db) as s:
        return [(c.intent_id, c.order_id) for c in s.scalars(select(PermitClaim))]


def test_a_permit_nonce_is_claimed_once_and_again_by_the_same_funding(runtime: Runtime) -> None:
    intent = _new_intent(runtime)
    with statements(runtime) as seen:
        _claim(runtime, "0xa1", intent)
    assert seen.count("INSERT") == 1 and "SELECT" not in seen and "SAVEPOINT" not in seen
    _claim(runtime, "0xa1", intent)  # the same intent again: nothing to refuse, nothing added
    assert _claims(runtime) == [(intent.id, "0xa1")]


def test_a_nonce_held_by_a_pending_funding_is_refused_and_kept(runtime: Runtime) -> None:
    holder, other = _new_intent(runtime), _new_intent(runtime)
    _claim(runtime, "0xa1", holder)
    with pytest.raises(DomainError) as refused:
        _claim(runtime, "0xb2", other)
    assert refused.value.code == "permit_nonce_conflict"
    assert refused.value.details["order_id"] == "0xa1"
    assert _claims(runtime) == [(holder.id, "0xa1")]


def test_a_nonce_held_by_a_failed_funding_is_taken_over(runtime: Runtime) -> None:
    failed, other = _new_intent(runtime, status="failed"), _new_intent(runtime)
    _claim(runtime, "0xa1", failed)
    _claim(runtime, "0xb2", other)
    assert _claims(runtime) == [(other.id, "0xb2")]


def test_a_row_whose_key_the_database_would_number_is_refused(runtime: Runtime) -> None:
    """An autoincrement key left out would be sent as NULL (PostgreSQL refuses it): the helper says so."""
    from app.db.models import ChainEvent

    with transaction(runtime.db) as s, pytest.raises(ValueError, match="ChainEvent.id"):
        insert_new(s, ChainEvent, {"name": "OrderFunded"})


def test_upsert_all_inserts_and_replaces_in_one_statement(runtime: Runtime) -> None:
    rt = runtime
    """The indexer's blocks (:func:`app.db.session.upsert_all`): new keys are inserted, a taken key's other
    columns replaced, in one statement; no rows is no statement."""
    base = 9_000_000 + uuid.uuid4().int % 1_000_000
    with transaction(rt.db) as s:
        upsert_all(s, IndexedBlock, [{"number": base, "hash": "0xa", "parent_hash": "0x0"}])
    with statements(rt) as seen, transaction(rt.db) as s:
        upsert_all(
            s,
            IndexedBlock,
            [
                {"number": base, "hash": "0xb", "parent_hash": "0x1"},
                {"number": base + 1, "hash": "0xc", "parent_hash": "0xb"},
            ],
        )
        upsert_all(s, IndexedBlock, [])
    assert seen.count("INSERT") == 1 and "SELECT" not in seen
    with read_transaction(rt.db) as s:
        got = s.execute(
            select(IndexedBlock.number, IndexedBlock.hash, IndexedBlock.parent_hash)
            .where(IndexedBlock.number >= base, IndexedBlock.number <= base + 1)
            .order_by(IndexedBlock.number)
        ).all()
    assert [tuple(r) for r in got] == [(base, "0xb", "0x1"), (base + 1, "0xc", "0xb")]
