"""``before_first_write`` (app/db/session.py): a step the first write transaction of a context runs as part
of itself — the request's ``Idempotency-Key`` claim rides in the request's own write instead of a write of
its own. Committed with that transaction or rolled back with it (the next one carries it then); never run
by a read; shared by threads that copy the context."""

from __future__ import annotations

import contextvars
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.db.session import (
    FirstWrite,
    before_first_write,
    make_engine,
    make_session_factory,
    read_transaction,
    transaction,
    without_first_write,
    write,
)


@pytest.fixture
def db(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'first.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE steps (name TEXT PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE work (name TEXT PRIMARY KEY)")
    return make_session_factory(engine)


def rows(db: sessionmaker[Session], table: str) -> list[str]:
    with read_transaction(db) as s:
        return list(s.scalars(text(f"SELECT name FROM {table} ORDER BY name")))


def step(session: Session) -> None:
    session.execute(text("INSERT INTO steps (name) VALUES ('claim')"))


def work(name: str):  # type: ignore[no-untyped-def]
    def job(session: Session) -> None:
        session.execute(text("INSERT INTO work (name) VALUES (:n)"), {"n": name})

    return job


class Refused(Exception):
    pass


def test_the_first_write_transaction_carries_the_step_and_later_ones_do_not(
    db: sessionmaker[Session],
) -> None:
    with before_first_write(step) as first:
        with read_transaction(db) as s:  # a read never runs it
            s.execute(text("SELECT 1"))
        assert not first.done and rows(db, "steps") == []
        with transaction(db) as s:
            work("a")(s)
        assert first.done and rows(db, "steps") == ["claim"]
        with transaction(db) as s:  # would raise IntegrityError if the step ran twice
            work("b")(s)
    assert rows(db, "work") == ["a", "b"]
    with transaction(db) as s:  # outside the context: nothing to carry
        work("c")(s)
    assert rows(db, "steps") == ["claim"]


def test_a_rolled_back_transaction_takes_the_step_with_it_and_the_next_carries_it(
    db: sessionmaker[Session],
) -> None:
    with before_first_write(step) as first:
        with pytest.raises(Refused), transaction(db) as s:
            work("a")(s)
            raise Refused
        assert not first.done and rows(db, "steps") == [] and rows(db, "work") == []
        with transaction(db) as s:
            work("b")(s)
        assert first.done
    assert (rows(db, "steps"), rows(db, "work")) == (["claim"], ["b"])


def test_group_committed_writes_carry_it_in_the_jobs_own_savepoint(db: sessionmaker[Session]) -> None:
    def refused(session: Session) -> None:
        work("a")(session)
        raise Refused

    with before_first_write(step) as first:
        with pytest.raises(Refused):
            write(db, refused)
        assert not first.done and rows(db, "steps") == []
        write(db, work("b"))
        assert first.done
        write(db, work("c"))
    assert (rows(db, "steps"), rows(db, "work")) == (["claim"], ["b", "c"])


def test_what_the_step_raises_is_the_transactions_error_and_nothing_is_kept(
    db: sessionmaker[Session],
) -> None:
    def taken(session: Session) -> None:
        raise Refused("the key is another request's")

    with before_first_write(taken) as first:
        with pytest.raises(Refused):
            write(db, work("a"))
        with pytest.raises(Refused), transaction(db) as s:
            work("b")(s)
        assert not first.done
    assert rows(db, "work") == []


def test_a_thread_with_a_copy_of_the_context_shares_the_step(db: sessionmaker[Session]) -> None:
    """As ``anyio.to_thread`` runs a sync route: the claim made there is seen done by the request."""
    with before_first_write(step) as first:
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(write, db, work("a")))
        thread.start()
        thread.join()
        assert first.done
    assert rows(db, "steps") == ["claim"]


def test_an_open_transaction_carrying_the_step_keeps_a_concurrent_one_from_running_it_again() -> None:
    """Two write transactions of one context at once (group commit may run both in one batch): the second
    goes without the step rather than insert it twice or wait for a commit that would never come; after a
    rollback the step is pending again, after a commit done."""
    ran: list[str] = []
    first = FirstWrite(lambda s: ran.append("step"))
    session = None  # the step here does not touch the session
    assert first.run(session) is True  # type: ignore[arg-type]
    assert first.run(session) is False and ran == ["step"]  # type: ignore[arg-type]
    first.ended(committed=False)
    assert not first.done and first.run(session) is True  # type: ignore[arg-type]
    first.ended(committed=True)
    assert first.done and first.run(session) is False and ran == ["step", "step"]  # type: ignore[arg-type]


def test_work_that_is_not_the_requests_own_does_not_carry_it(db: sessionmaker[Session]) -> None:
    with before_first_write(step) as first:
        with without_first_write():  # an eager sweep run inline by a request's wake
            write(db, work("sweep"))
        assert not first.done and rows(db, "steps") == []
        write(db, work("request"))
        assert first.done
    assert rows(db, "steps") == ["claim"]
