"""Engine and session factory. SQLite (default) and PostgreSQL are both first-class."""

from __future__ import annotations

import contextvars
import fcntl
import logging
import os
import queue
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, make_transient_to_detached, sessionmaker
from sqlalchemy.sql.base import Executable

#: Execution option marking a connection's transactions as read-only (see :func:`read_transaction`).
READ_ONLY = "tradeguard_read_only"
#: Execution option marking a write transaction as bookkeeping whose commit need not wait for the disk (see
#: :func:`transaction`'s ``durable``).
LAZY_COMMIT = "tradeguard_lazy_commit"


class WriterLock:
    """Who may write to one SQLite database: a re-entrant lock for this process's threads, then an exclusive
    ``flock`` on a file beside the database for this host's processes (the API processes and the sweeps of
    ``tradeguard run``).

    SQLite's own busy handler makes a waiting writer sleep, up to 100 ms a try, however soon the lock is free
    again: with the API and the sweeps in separate processes, a capture's durable ack waited 2.8 s at p99
    behind the sweeps' short write transactions (issue 8). The kernel hands a released ``flock`` straight
    to a waiter. SQLite's lock stays the guarantee; this only decides who asks for it, so a process that
    writes without it (a migration, a tool) is still safe, only not queued fairly.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._after_fork()
        _LOCKS.add(self)

    def _after_fork(self) -> None:
        """A new start (and, in a forked child, one of its own: a descriptor shared with the parent would
        share its lock, and a thread that held the parent's lock is not in the child)."""
        self._local = threading.RLock()
        self._depth = 0  # nesting of this process's holder (only the holder reads or writes it)
        self._fd: int | None = None
        self._pid = os.getpid()

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)

    def _file(self) -> int | None:
        if self.path is not None and self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def __enter__(self) -> WriterLock:
        self._local.acquire()
        try:
            if self._depth == 0 and (fd := self._file()) is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._local.release()
            raise
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._local.release()


_LOCKS: weakref.WeakSet[WriterLock] = weakref.WeakSet()


def _locks_after_fork() -> None:
    for lock in list(_LOCKS):
        lock._after_fork()


os.register_at_fork(after_in_child=_locks_after_fork)

#: SQLite engines' writer locks (see :func:`transaction`).
_WRITERS: weakref.WeakKeyDictionary[Engine, WriterLock] = weakref.WeakKeyDictionary()

#: Who hears each write transaction's site, its wait for the write lock and how long it held it (seconds);
#: see :func:`observe_writes`.
WriteObserver = Callable[[str, float, float], None]
_observer: WriteObserver | None = None
log = logging.getLogger(__name__)


def _observed(observer: WriteObserver, site: str, wait: float, hold: float) -> None:
    """Tell ``observer`` of one write transaction. Its failure (metrics trouble) never fails the write, nor
    hides its outcome: it is logged, with its traceback, and the write stands."""
    try:
        observer(site, wait, hold)
    except Exception:
        log.warning("write observer failed for %s; the write itself stands", site, exc_info=True)


def observe_writes(observer: WriteObserver | None) -> None:
    """Report every write transaction from now on to ``observer(site, wait, hold)``: ``site`` is the
    ``module.function`` that opened it, ``wait`` the time to get the write lock (SQLite: this process's
    writer lock; elsewhere 0) and ``hold`` the time from then to the end of the commit or rollback. The
    metrics module installs one, so that ``/metrics`` shows who holds the database's write lock, and for
    how long (issue 8: on SQLite every writer queues on that one lock)."""
    global _observer
    _observer = observer


#: Connections an engine keeps open, and how many more it may open for a burst.
POOL_SIZE = 16
POOL_OVERFLOW = 16
#: SQLite: bytes of the database file a connection maps for reads, and KiB of page cache per connection.
SQLITE_MMAP_BYTES = 256 * 1024 * 1024
SQLITE_CACHE_KIB = 16 * 1024


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite gets WAL, a busy timeout and foreign keys; its folder is created."""
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    # Enough pooled connections for the API's request threads (TRADEGUARD_API_THREADS) and the background
    # threads together: with the default 5, a connection past the fifth was opened for one request and closed
    # at its end, and a new SQLite connection pays its PRAGMAs and a parse of the schema on first use
    # (issue 8: the PRAGMAs of new connections showed in py-spy profiles of GET /v1/orders/{id}, 32 clients).
    kwargs["pool_size"] = POOL_SIZE
    kwargs["max_overflow"] = POOL_OVERFLOW
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # reads map the file instead of copying each page through read(), and each connection keeps more
            # pages (issue 8: GET /v1/orders/{id} with 10,000 orders)
            cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
            cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cur.close()

        # pysqlite's own transaction handling defers BEGIN; a write transaction takes the write lock at BEGIN
        # instead, so that read-modify-write sections (nonce allocation, inbox dedupe) serialise across
        # processes. A read transaction (:func:`read_transaction`) begins deferred: under WAL it neither
        # takes nor waits for the write lock.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            options = conn.get_execution_options()
            # WAL: FULL syncs the log at every commit (3.4 ms here), NORMAL leaves the sync to the next FULL
            # commit or checkpoint; the setting belongs to the connection, so it is set when it changes
            sync = "NORMAL" if options.get(LAZY_COMMIT, False) else "FULL"
            # straight on the driver's connection: SQLAlchemy's statement machinery (an execution context,
            # events, a cursor result) cost more than SQLite's own BEGIN, twice per request (issue 8)
            driver = conn.connection.driver_connection
            begin = "BEGIN" if options.get(READ_ONLY, False) else "BEGIN IMMEDIATE"
            try:
                if conn.info.get("synchronous") != sync:
                    driver.execute(f"PRAGMA synchronous={sync}")
                    conn.info["synchronous"] = sync
                driver.execute(begin)
            except sqlite3.Error as exc:  # as SQLAlchemy would have raised it (a locked database is a 503)
                raise sa_exc.OperationalError(begin, None, exc) from exc

        file = path.split("?", 1)[0]
        _WRITERS[engine] = WriterLock(f"{file}.writer-lock" if file and file != ":memory:" else None)
    else:

        @event.listens_for(engine, "begin")
        def _begin_pg(conn: Any) -> None:
            if conn.get_execution_options().get(LAZY_COMMIT, False):
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")

    return engine


def _with_option(engine: Engine, option: str) -> Engine:
    """``engine`` with ``option`` set, made once per engine and option and kept on the engine (``Engine.
    execution_options`` builds a new engine proxy, 12-25 µs, and read transactions and lazy commits asked for
    one on every request)."""
    made: dict[str, Engine] | None = engine.__dict__.get("_tradeguard_option_engines")
    if made is None:
        made = engine.__dict__["_tradeguard_option_engines"] = {}
    found = made.get(option)
    if found is None:
        found = made[option] = engine.execution_options(**{option: True})
    return found


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, future=True)


class FirstWrite:
    """A step that the first write transaction of a context (a request) runs before its own statements, in
    the same transaction: see :func:`before_first_write`. ``done`` once a transaction carrying it
    committed."""

    def __init__(self, step: Callable[[Session], None]) -> None:
        self.step = step
        self.done = False
        #: a transaction carrying the step is open: a concurrent one of the same context goes without it
        #: (never waits: under group commit both may be in one batch, whose commit would then never come)
        self.running = False
        self._lock = threading.Lock()

    def run(self, session: Session) -> bool:
        """Run the step in ``session`` unless a committed transaction carried it already or an open one
        carries it now; whether it ran (then :meth:`ended` must follow)."""
        with self._lock:
            if self.done or self.running:
                return False
            self.running = True
        try:
            self.step(session)
        except BaseException:
            self.ended(committed=False)
            raise
        return True

    def ended(self, *, committed: bool) -> None:
        """The transaction that carried the step committed, or rolled back (the next one carries it)."""
        with self._lock:
            self.running = False
            self.done = self.done or committed


_FIRST_WRITE: contextvars.ContextVar[FirstWrite | None] = contextvars.ContextVar("first_write", default=None)


@contextmanager
def before_first_write(step: Callable[[Session], None]) -> Iterator[FirstWrite]:
    """Run ``step(session)`` at the start of the first write transaction (:func:`transaction`, :func:`write`)
    this context opens, as part of it: committed with it, or rolled back with it (and then carried by the
    next one). What ``step`` raises is raised by that transaction. Threads started with a copy of the
    context (``anyio.to_thread``, :func:`write`'s group commit) share it; read transactions never run it.
    One write less per request where the step is a small record of its own (an ``Idempotency-Key`` claim).
    """
    first = FirstWrite(step)
    token = _FIRST_WRITE.set(first)
    try:
        yield first
    finally:
        _FIRST_WRITE.reset(token)


@contextmanager
def without_first_write() -> Iterator[None]:
    """Write transactions inside do not carry the context's first-write step: for work that runs inline in
    a request but is not the request's own (an eager sweep)."""
    token = _FIRST_WRITE.set(None)
    try:
        yield
    finally:
        _FIRST_WRITE.reset(token)


def _carried(session: Session) -> FirstWrite | None:
    """Run this context's pending first-write step in ``session``; the step, to be told how it ended."""
    first = _FIRST_WRITE.get()
    if first is None or not first.run(session):
        return None
    return first


@contextmanager
def transaction(
    factory: sessionmaker[Session], *, durable: bool = True, site: str | None = None
) -> Iterator[Session]:
    """A session in one write transaction: commit on success, roll back on any error.

    ``site`` names who opened it for the write observer (:func:`observe_writes`; default: the caller).

    ``durable=False`` is for bookkeeping that a crash of the machine (not of the process) may lose without
    harm: its commit returns before the disk has it (SQLite WAL ``synchronous=NORMAL``, PostgreSQL
    ``synchronous_commit=off``) and the next durable commit, or a checkpoint, writes it out. Committed data
    is never reordered: a durable commit after it carries it along. The idempotency records use it, so that a
    POST waits for one sync of the disk (its own data), not three (3.4 ms each on this machine's SQLite).

    On SQLite it holds the database's write lock from its first statement: keep it short, and never make a
    network call (RPC, DNS, HTTP) inside it. The threads of one process queue for that lock on a Python lock
    first: SQLite's own busy handler makes a waiting writer sleep (up to 100 ms a try) while the lock is free
    again within a millisecond, which under load left most of the service's time asleep in ``BEGIN
    IMMEDIATE`` (py-spy, issue 8). The host's other processes queue on a lock file too (:class:`WriterLock`).
    """
    bind = factory.kw.get("bind")
    writer = _writer_lock(bind)
    lazy = {"bind": _with_option(bind, LAZY_COMMIT)} if not durable and isinstance(bind, Engine) else {}
    observer = _observer
    if observer is None:
        with writer if writer is not None else nullcontext(), factory(**lazy) as session:
            with _ending() as first, session.begin():
                first.append(_carried(session))
                yield session
        return
    if site is None:  # who opened it: this generator <- contextlib's __enter__ <- the ``with``
        caller = sys._getframe(2)
        site = f"{caller.f_globals.get('__name__', '?')}.{caller.f_code.co_name}"
    asked = time.perf_counter()
    got = asked
    try:
        with writer if writer is not None else nullcontext():
            got = time.perf_counter()
            with factory(**lazy) as session, _ending() as first, session.begin():
                first.append(_carried(session))
                yield session
    finally:
        _observed(observer, site, got - asked, time.perf_counter() - got)


@contextmanager
def _ending() -> Iterator[list[FirstWrite | None]]:
    """Around a transaction (entered before its ``begin``, left after its commit or rollback): tells the
    first-write step it carried, if any, how the transaction ended."""
    carried: list[FirstWrite | None] = []
    committed = False
    try:
        yield carried
        committed = True
    finally:
        first = carried[0] if carried else None
        if first is not None:
            first.ended(committed=committed)


T = TypeVar("T")


def write(factory: sessionmaker[Session], job: Callable[[Session], T], *, durable: bool = True) -> T:
    """Run ``job(session)`` in a write transaction and return what it returns; what it raises (and then
    nothing of it is kept) is raised here.

    On SQLite the jobs of concurrent callers are committed together (group commit): one thread of the
    process takes the jobs waiting at that moment, runs each in its own savepoint of one transaction and
    commits once, so N concurrent requests pay one ``BEGIN IMMEDIATE`` and one disk sync instead of N, and the
    write lock is taken once for them all instead of N times by threads competing for the GIL (issue 8). A
    job that raises is rolled back to its savepoint alone. The batch is durable if any job asks for it.
    Elsewhere (PostgreSQL, whose writers do not share one lock) the job runs in :func:`transaction`.

    A job runs on another thread: it must not open a transaction of its own, make a network call or wait
    for anything, and what it returns is detached from its session (loaded attributes stay readable).
    """
    bind = factory.kw.get("bind")
    writer = _writer_lock(bind)
    caller = sys._getframe(1)
    site = f"{caller.f_globals.get('__name__', '?')}.{caller.f_code.co_name}"
    if writer is None or not isinstance(bind, Engine):
        with transaction(factory, durable=durable, site=site) as session:
            return job(session)
    first = _FIRST_WRITE.get()
    if first is None or first.done:
        return _group(bind).run(job, durable, site)
    with _ending() as carried:

        def with_first(session: Session) -> T:
            carried.append(_carried(session))  # in the job's savepoint: kept or rolled back with it
            return job(session)

        return _group(bind).run(with_first, durable, site)


def write_statement(factory: sessionmaker[Session], statement: Executable, *, durable: bool = True) -> None:
    """Run one Core statement (an ``UPDATE`` or ``DELETE`` of known rows) as :func:`write` runs a job, but
    under group commit without a savepoint and a session of its own: two statements and a unit of work
    less under the write lock. A request's pending first-write step goes the way of :func:`write`."""
    bind = factory.kw.get("bind")
    first = _FIRST_WRITE.get()
    caller = sys._getframe(1)
    site = f"{caller.f_globals.get('__name__', '?')}.{caller.f_code.co_name}"
    if _writer_lock(bind) is None or not isinstance(bind, Engine) or (first is not None and not first.done):
        with transaction(factory, durable=durable, site=site) as session:
            session.execute(statement)
        return
    _group(bind).run(_no_session, durable, site, statement)


def _no_session(_session: Session) -> None:  # a statement job's ``fn``: never called
    raise AssertionError("a statement job runs its statement, not a function")


@dataclass(eq=False)
class _Job:
    fn: Callable[[Session], Any]
    durable: bool
    site: str
    asked: float = field(default_factory=time.perf_counter)
    #: The caller's context variables (its request id, read when an intent is recorded): the job runs in it.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    #: The batch's commit returned: the job's writes are kept whatever happens next.
    committed: bool = False
    #: A single Core statement run on the batch's connection instead of ``fn`` (:func:`write_statement`).
    statement: Executable | None = None


class _GroupWriter:
    """The thread of one process that commits :func:`write` jobs together on one SQLite engine."""

    #: Jobs one transaction takes at most (a bound on how long it holds the write lock).
    MAX_JOBS = 64

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="db-group-commit", daemon=True)
        self.thread.start()

    def run(
        self, fn: Callable[[Session], T], durable: bool, site: str, statement: Executable | None = None
    ) -> T:
        job = _Job(fn, durable, site, statement=statement)
        self.jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        result: T = job.result
        return result

    def _loop(self) -> None:
        while True:
            batch = [self.jobs.get()]
            try:
                self._commit(batch)
            except BaseException as exc:  # the thread must live on: its callers would wait forever
                for job in batch:
                    if job.error is None and not job.committed:
                        job.error, job.result = exc, None
            finally:
                for job in batch:
                    job.done.set()

    @staticmethod
    def _one(conn: Any, job: _Job) -> None:
        """Run one job in its own savepoint of the batch's transaction on ``conn`` (a single statement runs
        without one: SQLite undoes a failed statement alone, and the transaction goes on)."""
        if job.statement is not None:
            try:
                conn.execute(job.statement)
            except BaseException as exc:
                job.error = exc
            return
        session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            with session.begin():
                job.result = job.fn(session)
        except BaseException as exc:  # this job only: its savepoint is rolled back
            job.error, job.result = exc, None
        finally:
            session.close()

    def _take(self, batch: list[_Job]) -> None:
        """Add the jobs waiting now to ``batch`` (in place: the loop sees every job it took)."""
        while len(batch) < self.MAX_JOBS:
            try:
                batch.append(self.jobs.get_nowait())
            except queue.Empty:
                return

    def _commit(self, batch: list[_Job]) -> None:
        writer = _writer_lock(self.engine)
        assert writer is not None
        with writer:
            got = time.perf_counter()
            # The jobs that came while the lock was held by another process (the sweeps of ``tradeguard
            # run``, another API process) join this transaction: taken before the lock, they would each wait
            # for another BEGIN IMMEDIATE, commit and disk sync behind this one.
            self._take(batch)
            lazy = not any(job.durable for job in batch)
            engine = _with_option(self.engine, LAZY_COMMIT) if lazy else self.engine
            try:
                with engine.connect() as conn, conn.begin():
                    for job in batch:
                        # in the caller's context: defaults read at flush (a request id) see its values
                        job.context.run(self._one, conn, job)
            except BaseException as exc:  # the commit (or the BEGIN): nothing of the batch is kept
                for job in batch:
                    if job.error is None:
                        job.error, job.result = exc, None
            else:
                for job in batch:
                    job.committed = job.error is None
            held = time.perf_counter() - got
        observer = _observer
        if observer is not None:
            share = held / len(batch)  # the lock time the batch took, shared out among its jobs
            for job in batch:
                _observed(observer, job.site, got - job.asked, share)


_GROUPS: dict[tuple[int, int], _GroupWriter] = {}
_GROUPS_LOCK = threading.Lock()


def _group(engine: Engine) -> _GroupWriter:
    """This process's group writer for ``engine`` (a forked child starts its own thread)."""
    key = (id(engine), os.getpid())
    with _GROUPS_LOCK:
        group = _GROUPS.get(key)
        if group is None or group.engine is not engine:
            group = _GROUPS[key] = _GroupWriter(engine)
        return group


def _writer_lock(bind: Any) -> WriterLock | None:
    try:
        return _WRITERS.get(bind)
    except TypeError:  # a bind that is not an engine (a connection in a test): no lock of ours
        return None


@contextmanager
def read_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads only: one consistent snapshot, no write lock (SQLite: deferred ``BEGIN`` under
    WAL), rolled back at the end, so a write made in it by mistake is never kept."""
    bind = factory.kw["bind"]
    # Leaving the block closes the session: every object is expunged, its loaded attributes still readable
    # (a rollback would expire them), and the connection is closed, which rolls its transaction back. An
    # explicit rollback first cost 25 µs more of the ORM's snapshot bookkeeping, twice per GET (issue 8).
    with factory(bind=_with_option(bind, READ_ONLY)) as session:
        session.begin()
        yield session


M = TypeVar("M", bound=DeclarativeBase)


def upsert_all(session: Session, model: type[DeclarativeBase], rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` of ``model``, each replacing the columns of a row with the same primary key: one
    ``INSERT ... ON CONFLICT (key) DO UPDATE`` (SQLite and PostgreSQL), not a look-up and a write per row
    (``Session.merge``). Every row names every column. Objects of these rows already in ``session`` are
    not refreshed. Other dialects get ``merge``."""
    if not rows:
        return
    table = model.__table__
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        for values in rows:
            session.merge(model(**values))
        return
    statement = (postgresql if dialect == "postgresql" else sqlite).insert(table).values(list(rows))
    key = [c.key for c in table.primary_key]
    rest = {c.key: statement.excluded[c.key] for c in table.columns if c.key not in key}
    session.execute(statement.on_conflict_do_update(index_elements=key, set_=rest))


def insert_new(session: Session, model: type[M], values: dict[str, Any]) -> M | None:
    """Insert one row of ``model`` unless its primary key or a unique column is taken; the row (persistent
    in ``session``, no query to load it) if it was inserted, else None and nothing changed.

    One ``INSERT ... ON CONFLICT DO NOTHING``: no look-up before it and no savepoint around it. Under group
    commit every statement of a job is paid for by every writer queued behind the lock (issue 8). Other
    dialects get the look-up-free equivalent in a savepoint."""
    row: dict[str, Any] = {}
    for column in model.__table__.columns:
        default = column.default
        if column.key in values:
            row[column.key] = values[column.key]
        elif column.primary_key and default is None:  # an autoincrement key: it would be sent as NULL
            raise ValueError(f"insert_new needs {model.__name__}.{column.key}: give its value")
        elif column.server_default is not None:
            continue  # the database's own
        elif default is None:
            row[column.key] = None
        else:  # the column's Python default, as a flush would compute it (callables take a context)
            row[column.key] = default.arg if default.is_scalar else default.arg(None)
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(model).values(**row)
        key = list(model.__table__.primary_key)
        # RETURNING, not the row count: SQLAlchemy reports none (-1) for it on PostgreSQL
        if session.execute(insert.on_conflict_do_nothing().returning(*key)).first() is None:
            return None
    else:
        try:
            with session.begin_nested():
                session.execute(model.__table__.insert().values(**row))  # type: ignore[attr-defined]
        except sa_exc.IntegrityError:
            return None
    obj = model(**row)
    make_transient_to_detached(obj)  # as if just loaded: what it holds is what the row holds
    session.add(obj)
    return obj
