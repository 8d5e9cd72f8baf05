"""The network tripwire (app/db/tripwire.py, armed by tests/service_fixtures.py for this folder): a network
call made while the calling thread has a database write transaction open fails; outside one, or in a read
transaction, it passes. On SQLite and on PostgreSQL, whatever ``TRADEGUARD_TEST_DB`` says."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.chain.client import ChainClient
from app.db import tripwire
from app.db.models import KeyValue, utcnow
from app.db.session import make_engine, make_session_factory, read_transaction, transaction
from app.db.tripwire import NetworkInWriteTransaction
from tests.service_fixtures import PG_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A database with the ``kv`` table, on each backend."""
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'tripwire.db'}", None
    else:
        schema = f"t_{uuid.uuid4().hex[:16]}"
        url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT") if schema else None
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(url)
    KeyValue.__table__.create(engine)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def write(s: Session, key: str = "k") -> None:
    s.merge(KeyValue(key=key, value={"n": 1}, updated_at=utcnow()))
    s.flush()


def test_the_fixture_arms_the_tripwire_here() -> None:
    assert tripwire.armed()
    assert tripwire.open_write_transaction() is None


def test_a_chain_call_inside_a_write_transaction_fails_and_outside_passes(
    db: sessionmaker[Session], chain: ChainClient
) -> None:
    before = chain.block_number()  # no transaction: fine
    with transaction(db) as s:
        write(s)
        with pytest.raises(NetworkInWriteTransaction) as caught:
            chain.block_number()
    message = str(caught.value)
    assert "JSON-RPC eth_blockNumber" in message
    # where it began: the transaction's first statement (BEGIN IMMEDIATE on SQLite is issued there)
    assert "test_tripwire.py" in message and "s.merge(KeyValue(" in message
    assert chain.block_number() == before  # committed: fine again
    assert len(tripwire.take_violations()) == 1  # taken, so that the fixture does not fail this test


def test_a_failed_transaction_closes_too(db: sessionmaker[Session], chain: ChainClient) -> None:
    with pytest.raises(RuntimeError), transaction(db) as s:
        write(s)
        raise RuntimeError("rolled back")
    assert tripwire.open_write_transaction() is None
    chain.block_number()


def test_a_read_transaction_is_no_write_transaction(db: sessionmaker[Session], chain: ChainClient) -> None:
    with transaction(db) as s:
        write(s)
    with read_transaction(db) as s:
        assert s.get(KeyValue, "k") is not None
        assert tripwire.open_write_transaction() is None
        chain.block_number()
    assert not tripwire.take_violations()


def test_an_implicit_transaction_counts(db: sessionmaker[Session], chain: ChainClient) -> None:
    """A session that autobegins (no ``transaction()``) holds a write transaction from its first statement."""
    with db() as s:
        assert s.get(KeyValue, "k") is None  # BEGIN (IMMEDIATE on SQLite) happens here
        with pytest.raises(NetworkInWriteTransaction, match="eth_getBlockByNumber"):
            chain.get_block(0)
        s.commit()
        chain.get_block(0)  # after the commit: fine
    assert len(tripwire.take_violations()) == 1


def test_a_violation_swallowed_by_the_code_is_kept_for_the_fixture(
    db: sessionmaker[Session], chain: ChainClient
) -> None:
    """Production code catches ``Exception`` around chain calls; the violation is kept all the same, and the
    fixture fails the test at teardown (here it is taken, and checked)."""
    with transaction(db) as s:
        write(s)
        try:
            chain.nonce(chain.dev_accounts(1)[0].address)
        except Exception:  # what a relayer's "try again later" does
            pass
    seen = tripwire.take_violations()
    assert len(seen) == 1 and "eth_getTransactionCount" in seen[0]


def test_http_and_dns_inside_a_write_transaction_fail(db: sessionmaker[Session]) -> None:
    merchant = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(204)))
    with transaction(db) as s:
        write(s)
        with pytest.raises(NetworkInWriteTransaction, match="HTTP POST https://merchant.example/hook"):
            merchant.post("https://merchant.example/hook", content=b"{}")
        with pytest.raises(NetworkInWriteTransaction, match="DNS getaddrinfo"):
            socket.getaddrinfo("localhost", 80)
    assert merchant.post("https://merchant.example/hook", content=b"{}").status_code == 204
    assert len(tripwire.take_violations()) == 2


def test_only_the_thread_holding_the_transaction_is_refused(
    db: sessionmaker[Session], chain: ChainClient
) -> None:
    opened, done = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction(db) as s:
            write(s, "other")
            opened.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert opened.wait(10)
        assert tripwire.open_write_transaction() is None
        chain.block_number()  # another thread's transaction is not ours
    finally:
        done.set()
        holder.join(10)
    assert not tripwire.take_violations()
