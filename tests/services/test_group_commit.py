"""Group commit (:func:`app.db.session.write`): on SQLite the writes of concurrent callers share one
transaction and one disk sync, each in its own savepoint: a job that fails rolls back alone and its caller
sees its error; the others are kept. On PostgreSQL each write is its own transaction (same results, no
batching)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import session as db_session
from app.db.models import KeyValue
from app.db.session import read_transaction, write
from app.services.runtime import Runtime

JOBS = 12


class Refused(Exception):
    pass


def _keys(rt: Runtime) -> set[str]:
    with read_transaction(rt.db) as s:
        return set(s.scalars(select(KeyValue.key).where(KeyValue.key.like("gc-%"))))


def test_concurrent_writes_share_a_transaction_and_fail_alone(runtime: Runtime) -> None:
    engine = runtime.db.kw["bind"]
    sqlite = engine.dialect.name == "sqlite"
    begins: list[int] = []
    event.listen(engine, "begin", lambda conn: begins.append(1))
    write(runtime.db, lambda s: s.add(KeyValue(key="gc-taken", value={})))
    begins.clear()

    release = threading.Event()
    running = threading.Event()
    outcomes: dict[int, Any] = {}

    def first(s: Session) -> str:
        running.set()
        release.wait(10)  # holds the group writer while the others queue behind it
        s.add(KeyValue(key="gc-0", value={"n": 0}))
        return "gc-0"

    def job(i: int) -> Any:
        def fn(s: Session) -> str:
            if i == 3:
                raise Refused("job 3 refuses after writing")
            key = "gc-taken" if i == 5 else f"gc-{i}"  # job 5 collides with a committed key
            s.add(KeyValue(key=key, value={"n": i}))
            s.flush()
            return key

        return fn

    def call(i: int) -> None:
        try:
            outcomes[i] = write(runtime.db, first if i == 0 else job(i))
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    assert running.wait(10)
    if sqlite:
        group = db_session._group(engine)
        for i in range(1, JOBS):
            threads.append(threading.Thread(target=call, args=(i,)))
            threads[-1].start()
        for _ in range(500):  # every other job waits in the queue before the first one ends
            if group.jobs.qsize() == JOBS - 1:
                break
            threading.Event().wait(0.01)
        assert group.jobs.qsize() == JOBS - 1
        release.set()
    else:
        release.set()
        for i in range(1, JOBS):
            threads.append(threading.Thread(target=call, args=(i,)))
            threads[-1].start()
    for t in threads:
        t.join(30)
    writes = len(begins)

    assert isinstance(outcomes[3], Refused)
    assert isinstance(outcomes[5], IntegrityError)
    kept = {f"gc-{i}" for i in range(JOBS) if i not in (3, 5)}
    assert {outcomes[i] for i in range(JOBS) if i not in (3, 5)} == kept
    assert _keys(runtime) == kept | {"gc-taken"}
    with read_transaction(runtime.db) as s:
        taken = s.get(KeyValue, "gc-taken")
        assert taken is not None and taken.value == {}  # the colliding job changed nothing
    if sqlite:
        assert writes == 2  # the first job's transaction, then one for the eleven that queued
    else:
        assert writes == JOBS - 1  # one transaction per job that reached the database (job 3 never did)


def test_a_failed_commit_fails_every_job_of_the_batch(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.db.kw["bind"]
    if engine.dialect.name != "sqlite":
        pytest.skip("group commit is SQLite's (PostgreSQL writes go one transaction each)")

    def refuse_commit(conn: Any) -> None:
        raise OSError("disk full")

    event.listen(engine, "commit", refuse_commit)
    try:
        with pytest.raises(OSError, match="disk full"):
            write(runtime.db, lambda s: s.add(KeyValue(key="gc-lost", value={})))
    finally:
        event.remove(engine, "commit", refuse_commit)
    assert _keys(runtime) == set()
    assert write(runtime.db, lambda s: s.add(KeyValue(key="gc-kept", value={}))) is None
    assert _keys(runtime) == {"gc-kept"}


def test_an_observer_that_fails_changes_no_write(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    """Metrics trouble never fails a write, nor stops the group writer (its callers would wait forever); it
    is logged, not swallowed."""

    def broken(site: str, wait: float, hold: float) -> None:
        raise RuntimeError("metrics down")

    before = db_session._observer
    db_session.observe_writes(broken)
    try:
        for key in ("gc-a", "gc-b"):
            assert write(runtime.db, lambda s, k=key: s.add(KeyValue(key=k, value={}))) is None
        with db_session.transaction(runtime.db) as s:
            s.add(KeyValue(key="gc-c", value={}))
    finally:
        db_session.observe_writes(before)
    assert _keys(runtime) == {"gc-a", "gc-b", "gc-c"}
    failed = [r for r in caplog.records if "write observer failed" in r.getMessage()]
    assert len(failed) == 3 and all(r.exc_info is not None for r in failed)


class _Watched:
    """A writer lock's in-process lock that tells when a thread other than the test's asks for it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.asked = inner, threading.Event()
        self.owner = threading.get_ident()

    def acquire(self) -> bool:
        if threading.get_ident() != self.owner:
            self.asked.set()
        return bool(self.inner.acquire())

    def release(self) -> None:
        self.inner.release()


def test_jobs_that_queue_while_another_process_writes_join_one_transaction(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group writer takes its batch once it holds the write lock: jobs that came while the lock was
    held elsewhere (the sweeps of ``tradeguard run`` are another process) share one transaction, instead
    of the first one paying a BEGIN and a disk sync of its own and the rest another."""
    engine = runtime.db.kw["bind"]
    if engine.dialect.name != "sqlite":
        pytest.skip("group commit is SQLite's (PostgreSQL writes go one transaction each)")
    group = db_session._group(engine)
    lock = db_session._writer_lock(engine)
    assert lock is not None
    watched = _Watched(lock._local)
    monkeypatch.setattr(lock, "_local", watched)
    begins: list[int] = []

    def counted(conn: Any) -> None:
        begins.append(1)

    event.listen(engine, "begin", counted)
    outcomes: dict[int, Any] = {}

    def call(i: int) -> None:
        outcomes[i] = write(runtime.db, lambda s: s.add(KeyValue(key=f"gc-{i}", value={})))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(JOBS)]
    try:
        with lock:  # as another process's write transaction: the group writer waits for it
            threads[0].start()
            assert watched.asked.wait(10)  # the writer took job 0 and waits for the lock
            for t in threads[1:]:
                t.start()
            for _ in range(1000):
                if group.jobs.qsize() == JOBS - 1:
                    break
                threading.Event().wait(0.01)
            assert group.jobs.qsize() == JOBS - 1
            assert not begins
        for t in threads:
            t.join(30)
    finally:
        event.remove(engine, "begin", counted)
    assert outcomes == dict.fromkeys(range(JOBS))
    assert _keys(runtime) == {f"gc-{i}" for i in range(JOBS)}
    assert len(begins) == 1  # one transaction for all twelve (it was two: job 0's, then the rest)


def test_a_statement_job_shares_the_batch_without_a_savepoint_and_fails_alone(runtime: Runtime) -> None:
    """:func:`write_statement`: one Core statement, run in the batch's transaction itself. A failed one
    changes nothing (SQLite undoes a failed statement alone) and the jobs around it are kept."""
    from sqlalchemy import update

    from app.db.session import write_statement

    engine = runtime.db.kw["bind"]
    for key in ("gc-a", "gc-b"):
        write(runtime.db, lambda s, k=key: s.add(KeyValue(key=k, value={"n": 0})))
    ran: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        ran.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", note)
    try:
        write_statement(runtime.db, update(KeyValue).where(KeyValue.key == "gc-a").values(value={"n": 1}))
        with pytest.raises(IntegrityError):  # the key of another row: refused
            write_statement(runtime.db, update(KeyValue).where(KeyValue.key == "gc-a").values(key="gc-b"))
        write(runtime.db, lambda s: s.add(KeyValue(key="gc-c", value={})))
    finally:
        event.remove(engine, "before_cursor_execute", note)
    with read_transaction(runtime.db) as s:
        values = {kv.key: kv.value for kv in s.scalars(select(KeyValue).where(KeyValue.key.like("gc-%")))}
    assert values == {"gc-a": {"n": 1}, "gc-b": {"n": 0}, "gc-c": {}}
    if engine.dialect.name == "sqlite":
        assert ran.count("SAVEPOINT") == 1  # the ORM job's only: the statements ran without one
        assert ran.count("UPDATE") == 2
