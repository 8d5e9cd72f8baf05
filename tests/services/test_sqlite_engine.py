"""The SQLite engine of app/db/session.py: each connection's settings, the pool that keeps connections, the
``BEGIN`` it issues on the driver's connection, whose errors still reach callers as SQLAlchemy's (so that
a locked database is a 503, not a 500), and the lock file that queues the host's writing processes."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, exc, text

from app.db.session import (
    _WRITERS,
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


def _flocked_elsewhere(path: Path) -> bool:
    """Whether another open file description holds ``path``'s flock."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


_OTHER_WRITER = textwrap.dedent(
    """
    import sys
    from sqlalchemy import text
    from app.db.session import make_engine, make_session_factory, transaction
    factory = make_session_factory(make_engine("sqlite:///" + sys.argv[1]))
    print("asking", flush=True)
    with transaction(factory) as s:
        s.execute(text("INSERT INTO t VALUES ('other')"))
    print("wrote", flush=True)
    """
)


def test_a_write_transaction_queues_the_hosts_other_processes_on_a_lock_file(tmp_path: Path) -> None:
    """Another process's writer waits on the lock file (not in SQLite's busy handler, which sleeps up to
    100 ms a try after the lock is free): it writes after this one commits, and its row comes second."""
    path = tmp_path / "x.db"
    factory = make_session_factory(make_engine(f"sqlite:///{path}"))
    with transaction(factory) as s:
        s.execute(text("CREATE TABLE t (who TEXT)"))
    lock_file = Path(f"{path}.writer-lock")
    assert not _flocked_elsewhere(lock_file)
    other: subprocess.Popen[str] | None = None
    try:
        with transaction(factory) as s:
            assert _flocked_elsewhere(lock_file)
            other = subprocess.Popen(
                [sys.executable, "-c", _OTHER_WRITER, str(path)],
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).resolve().parents[2],
            )
            assert other.stdout is not None
            assert other.stdout.readline().strip() == "asking"
            s.execute(text("INSERT INTO t VALUES ('this')"))
        out, _ = other.communicate(timeout=60)
    finally:
        if other is not None and other.poll() is None:
            other.kill()
    assert other.returncode == 0 and out.strip() == "wrote"
    with read_transaction(factory) as s:
        assert [r[0] for r in s.execute(text("SELECT who FROM t ORDER BY rowid"))] == ["this", "other"]
    assert not _flocked_elsewhere(lock_file)


def test_nested_write_transactions_take_the_lock_file_once(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    engine = make_engine(f"sqlite:///{path}")
    lock = _WRITERS[engine]
    with lock:
        with lock:
            assert _flocked_elsewhere(Path(f"{path}.writer-lock"))
        assert _flocked_elsewhere(Path(f"{path}.writer-lock"))  # still the outer holder's
    assert not _flocked_elsewhere(Path(f"{path}.writer-lock"))


def test_a_forked_child_has_a_lock_of_its_own(tmp_path: Path) -> None:
    """A child forked while the parent writes must not share the parent's lock (flock belongs to the open
    file, which a fork shares): its own ask for it fails while the parent holds it."""
    path = tmp_path / "x.db"
    lock = _WRITERS[make_engine(f"sqlite:///{path}")]
    with lock:
        pid = os.fork()
        if pid == 0:  # the child: report by exit status only
            code = 3
            try:
                fd = lock._file()
                assert fd is not None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    code = 1  # got the parent's lock: shared
                except BlockingIOError:
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_read_transaction_keeps_no_write_and_leaves_what_it_read_readable(tmp_path: Path) -> None:
    """Leaving a read transaction closes its session: a write made in it by mistake is rolled back, and the
    objects it loaded are detached with their attributes still readable (not expired)."""
    from app.db.models import Base, Principal

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        s.add(Principal(role="merchant", address="0x" + "12" * 20, name="kept"))
    with read_transaction(factory) as s:
        read = s.query(Principal).one()
        s.add(Principal(role="buyer", address="0x" + "34" * 20, name="by mistake"))
        s.flush()
        s.execute(text("UPDATE principals SET name = 'changed'"))
    assert (read.name, read.role) == ("kept", "merchant")  # detached, loaded, no query needed
    with read_transaction(factory) as s:
        assert [(p.name, p.role) for p in s.query(Principal)] == [("kept", "merchant")]
    with engine.connect() as conn:  # and the pool's connections hold no transaction open
        assert conn.exec_driver_sql("SELECT count(*) FROM principals").scalar() == 1
