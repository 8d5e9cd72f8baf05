"""The SQLite engine of app/db/session.py: each connection's settings, the pool that keeps connections, and
the ``BEGIN`` it issues on the driver's connection, whose errors still reach callers as SQLAlchemy's (so that
a locked database is a 503, not a 500)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, exc, text

from app.db.session import (
    POOL_SIZE,
    SQLITE_CACHE_KIB,
    SQLITE_MMAP_BYTES,
    make_engine,
    make_session_factory,
    read_transaction,
    transaction,
)


def test_connections_map_the_file_and_keep_a_larger_page_cache(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == SQLITE_MMAP_BYTES
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -SQLITE_CACHE_KIB
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_the_pool_keeps_the_connections_of_concurrent_requests(tmp_path: Path) -> None:
    """Connections returned to the pool stay open (none is opened again for the next request) up to
    POOL_SIZE."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    opened: list[Any] = []
    event.listen(engine, "connect", lambda dbapi, _rec: opened.append(dbapi))
    held = [engine.raw_connection() for _ in range(POOL_SIZE)]  # checked out at once, then returned
    for conn in held:
        conn.close()
    again = [engine.raw_connection() for _ in range(POOL_SIZE)]
    for conn in again:
        conn.close()
    assert len(opened) == POOL_SIZE


def test_write_and_read_transactions_begin_as_before(tmp_path: Path) -> None:
    """A write transaction holds the write lock from its BEGIN; a read transaction takes none."""
    path = tmp_path / "x.db"
    factory = make_session_factory(make_engine(f"sqlite:///{path}"))
    with transaction(factory) as s:
        s.execute(text("CREATE TABLE t (v INTEGER)"))
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    with read_transaction(factory) as s:
        s.execute(text("SELECT count(*) FROM t")).scalar()
        other.execute("BEGIN IMMEDIATE")  # a read transaction leaves the write lock free
        other.execute("ROLLBACK")
    with transaction(factory) as s:
        s.execute(text("SELECT count(*) FROM t")).scalar()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.close()


def test_a_locked_database_at_begin_is_sqlalchemys_operational_error(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    engine = make_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", lambda dbapi, _rec: dbapi.execute("PRAGMA busy_timeout=50"))
    factory = make_session_factory(engine)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(exc.OperationalError, match="locked"), transaction(factory) as s:
            s.execute(text("SELECT 1"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with transaction(factory) as s:  # the connection that failed to begin is usable again
        assert s.execute(text("SELECT 1")).scalar() == 1
