"""``Idempotency-Key`` records: a POST is claimed before it runs and its answer kept after it.

A key belongs to one principal. The first request with it writes an in-flight record; the answer is stored
when it is known, unless it is a 5xx (the record is deleted, so a retry runs again) or carried a secret
(kept without its body: a replay is refused rather than shown the secret again).
A later request with the same key gets one of the :class:`Verdict` values or the stored :class:`Replay`. A
record left in flight longer than :data:`IN_FLIGHT_LEASE_SECONDS` (its request died) is taken over, and so
is a record past its ``expires_at`` that the keeper has not removed yet (the key is free again).

On the POSTs whose every effect is a database write (:data:`DEFERRABLE`: creating, funding and acting on
orders, EPCIS captures, attestations), a key nobody holds yet (the usual case, found by a read that takes
no write lock: :func:`recorded`) is claimed by the request's own first write transaction
(:class:`DeferredClaim`, through :func:`app.db.session.before_first_write`): the claim commits with the
request's data or not at all, and a twin request that claimed the key meanwhile makes that transaction
fail with 409 ``in flight``. A request that writes nothing (a refusal) gets its record with its answer.
Other POSTs, and a key that has a record, go through :func:`claim` (replay, reuse, in flight, takeover of
an expired or abandoned record) in a short write of its own before the request runs. The
answer is kept in one more short write (committed together with other requests' writes:
:func:`app.db.session.write`); the API middleware (:mod:`app.api.middleware`) runs these in a worker
thread around the request. Only the request's data waits for the disk; the answer does not
(``durable=False``). What a machine crash can lose is the kept answer; the key is then in flight for
:data:`IN_FLIGHT_LEASE_SECONDS` and a retry after that runs the request again, which finds its own data
(an order reference, an event hash, an intent) already there.

Expired records are removed by the keeper's sweep (:func:`purge_expired`, a bounded batch per sweep), not by
the requests: a claim writes its own row only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import IdempotencyRecord, Principal, utcnow
from app.db.session import before_first_write, read_transaction, transaction, write, write_statement
from app.errors import IdempotencyConflict
from app.services.runtime import Runtime

#: A key whose first request has run this long without an answer is taken over by the next attempt.
IN_FLIGHT_LEASE_SECONDS = 120
#: Expired records one purge removes (one short transaction; the next sweep takes the rest).
PURGE_BATCH = 500


class Verdict(Enum):
    """Why a request with a known key does not run and has no stored answer to replay."""

    #: Still being processed (or the record vanished between two transactions): try again later.
    IN_FLIGHT = "in_flight"
    #: The key was used with another request.
    REUSED = "reused"
    #: The first request succeeded with an answer that carried a secret, which is never stored.
    WITHHELD = "withheld"


@dataclass(frozen=True)
class Replay:
    """The stored answer of the first request with this key."""

    status: int
    content_type: str
    body: bytes


def _record(
    rt: Runtime, owner: str, key: str, request_hash: str, method: str, path: str
) -> IdempotencyRecord:
    return IdempotencyRecord(
        principal_id=owner,
        key=key,
        request_hash=request_hash,
        method=method,
        path=path[:500],
        expires_at=utcnow() + timedelta(seconds=rt.settings.idempotency_ttl_seconds),
    )


#: POSTs whose every effect is a database write (what reaches the chain or a webhook goes out later, from the
#: outbox): their key can be claimed by their first write transaction. Any other request (the dev faucet,
#: which sends a transaction and writes nothing) claims its key before it runs, so that a twin sent while
#: it runs is refused before it does anything.
DEFERRABLE = re.compile(
    r"^/v1/(orders(/[^/]+/(funding|disputes|evidence|ruling|confirm-receipt|shipments))?"
    r"|carts/funding|epcis/capture|attestations)$"
)


def deferrable(method: str, path: str) -> bool:
    """Whether a request's key may be claimed by its own first write (:data:`DEFERRABLE`)."""
    return method == "POST" and DEFERRABLE.match(path) is not None


def recorded(rt: Runtime, owner: str, key: str) -> bool:
    """Whether ``owner`` has a record for ``key`` (a read: no write lock). When not, the request runs with
    :class:`DeferredClaim`; when so, :func:`claim` says what to do."""
    with read_transaction(rt.db) as s:
        return _recorded(s, owner, key)


def recorded_in(session: Session, owner: Principal, key: str) -> bool:
    """:func:`recorded`, in the read transaction that authenticated ``owner``
    (:func:`app.services.principals.read_as`)."""
    return _recorded(session, owner.id, key)


def _recorded(session: Session, owner: str, key: str) -> bool:
    return session.connection().execute(_RECORDED, {"owner": owner, "idem_key": key}).first() is not None


# The statements every POST with a key runs, built once and run on the session's connection: built per call
# and run through the ORM, the answer's UPDATE alone was 10-18 % of an API process's CPU during a burst of
# captures (py-spy, issue 8).
_TABLE = cast(Table, IdempotencyRecord.__table__)
_MINE = (_TABLE.c.principal_id == bindparam("owner")) & (_TABLE.c.key == bindparam("idem_key"))
_RECORDED = select(_TABLE.c.key).where(_MINE)
_CLAIM = insert(_TABLE)
_KEEP = (
    update(_TABLE)
    .where(_MINE)
    .values(
        status_code=bindparam("kept_status"),
        content_type=bindparam("kept_type"),
        response_body=bindparam("kept_body"),
    )
)


#: An answer as kept: status, content type, body (None: never replayed).
Answer = tuple[int, str, bytes | None]


class DeferredClaim:
    """The claim of a key nobody holds, made by the request's first write transaction itself (run it as
    :func:`app.db.session.before_first_write`'s step): one write transaction less per request. Another
    request that claimed the same key meanwhile makes that transaction raise
    :class:`~app.errors.IdempotencyConflict` (in flight, 409), and nothing of it is kept (``refused``).

    A request whose answer is known once its data is stored (an EPCIS capture's 202) keeps it in that same
    transaction (:func:`keep_answer`): one more write transaction less, and :func:`finish` has nothing to
    do when the answer sent is the one kept."""

    def __init__(self, rt: Runtime, owner: str, key: str, request_hash: str, method: str, path: str) -> None:
        self.rt, self.owner, self.key = rt, owner, key
        self.request_hash, self.method, self.path = request_hash, method, path
        self.refused = False
        #: set by the caller once the request is over: a committed write transaction carried the claim
        self.made = False
        #: the session of the transaction that carries the claim now (the last one that tried)
        self.carrier: Session | None = None
        #: the answer kept with the claim, in the transaction ``carrier`` (valid once ``made``)
        self.kept: Answer | None = None

    @contextmanager
    def carried(self) -> Iterator[None]:
        """Around the request: its first write transaction makes the claim; ``made`` after it."""
        token = _CARRIED.set(self)
        try:
            with before_first_write(self) as first:
                try:
                    yield
                finally:
                    self.made = first.done
        finally:
            _CARRIED.reset(token)

    def __call__(self, session: Session) -> None:
        if self.refused:  # a twin holds the key: nothing more of this request is written
            raise IdempotencyConflict(self.key, in_flight=True)
        # a transaction that carried the claim before and rolled back took its kept answer with it
        self.carrier, self.kept = session, None
        # one Core INSERT, no savepoint of its own: a refusal fails the whole transaction it rides in (and
        # the job's savepoint under group commit), which is what the request answers then
        now = utcnow()
        try:
            session.connection().execute(
                _CLAIM,
                {
                    "principal_id": self.owner,
                    "key": self.key,
                    "request_hash": self.request_hash,
                    "method": self.method,
                    "path": self.path[:500],
                    "created_at": now,
                    "expires_at": now + timedelta(seconds=self.rt.settings.idempotency_ttl_seconds),
                },
            )
        except IntegrityError:
            self.refused = True
            raise IdempotencyConflict(self.key, in_flight=True) from None


#: The request's deferred claim, while the request runs (:meth:`DeferredClaim.carried`).
_CARRIED: ContextVar[DeferredClaim | None] = ContextVar("idempotency_claim", default=None)


def keep_answer(session: Session, status: int, content_type: str, body: bytes | None) -> None:
    """Keep the request's answer in ``session``'s transaction, the one that stores the request's data and
    carries its key's claim, when its answer is known there (issue 8: the answer's own write transaction
    was a third of an EPCIS capture's). Nothing happens when the request has no deferred claim, or another
    transaction carries it; :func:`finish` then keeps the answer as usual, and it also does when the
    answer sent differs from the one kept here (it replaces it)."""
    claim = _CARRIED.get()
    if claim is None or claim.carrier is not session or status >= 500:
        return
    session.connection().execute(
        _KEEP,
        {
            "owner": claim.owner,
            "idem_key": claim.key,
            "kept_status": status,
            "kept_type": content_type,
            "kept_body": body,
        },
    )
    claim.kept = (status, content_type, body)


def claim(
    rt: Runtime, owner: str, key: str, request_hash: str, method: str, path: str
) -> Verdict | Replay | None:
    """Record ``key`` as in flight for ``owner`` (``None``: the request runs), or say what to answer."""
    now = utcnow()
    record = _record(rt, owner, key, request_hash, method, path)
    try:
        write(rt.db, lambda s: s.add(record), durable=False)  # committed with concurrent requests' writes
        return None
    except IntegrityError:
        pass
    with transaction(rt.db, durable=False) as s:
        row = s.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.principal_id == owner, IdempotencyRecord.key == key
            )
        )
        if row is None:  # expired and purged between the two transactions: ask for a retry
            return Verdict.IN_FLIGHT
        if row.expires_at < now:
            # expired, not purged yet: the key is free. Guarded, so that of two requests taking it over at
            # once only one runs (the other is told it is in flight).
            taken: Any = s.execute(
                update(IdempotencyRecord)
                .where(
                    IdempotencyRecord.principal_id == owner,
                    IdempotencyRecord.key == key,
                    IdempotencyRecord.expires_at < now,
                )
                .values(
                    request_hash=request_hash,
                    method=method,
                    path=path[:500],
                    status_code=None,
                    response_body=None,
                    content_type=None,
                    created_at=now,
                    expires_at=now + timedelta(seconds=rt.settings.idempotency_ttl_seconds),
                )
            )
            return None if taken.rowcount == 1 else Verdict.IN_FLIGHT
        if row.request_hash != request_hash:
            return Verdict.REUSED
        if row.status_code is None:
            if row.created_at > now - timedelta(seconds=IN_FLIGHT_LEASE_SECONDS):
                return Verdict.IN_FLIGHT
            # the first attempt died mid-request (a crash, a kill): this one takes the key over
            row.created_at = now
            return None
        if row.response_body is None:
            return Verdict.WITHHELD
        return Replay(row.status_code, row.content_type or "application/json", row.response_body)


def finish(
    rt: Runtime,
    owner: str,
    key: str,
    status: int,
    content_type: str,
    body: bytes | None,
    claimed: DeferredClaim | None = None,
) -> None:
    """Keep the answer to ``owner``'s request with ``key`` (``body`` None: never replayed); a 5xx frees
    the key instead, so that the client's retry runs. ``claimed``: the request's deferred claim; when no
    write transaction of the request made it (a refusal before anything was written), the record is written
    here with its answer, unless a twin request holds the key by now (its record is left alone)."""
    if claimed is not None and claimed.refused and not claimed.made:
        return  # the key is another request's
    if claimed is not None and claimed.made and claimed.kept == (status, content_type, body):
        return  # kept with the request's data (:func:`keep_answer`)

    if claimed is not None and not claimed.made:  # the request wrote nothing: its record, with its answer
        if status >= 500:
            return
        row = _record(rt, owner, key, claimed.request_hash, claimed.method, claimed.path)
        row.status_code, row.content_type, row.response_body = status, content_type, body

        def keep(s: Session) -> None:
            try:
                with s.begin_nested():
                    s.add(row)
            except IntegrityError:  # a twin request claimed it meanwhile: its answer is the key's
                pass

        write(rt.db, keep, durable=False)  # committed with concurrent requests' writes
        return
    # one Core statement on the request's own record: no load, no unit of work and (group commit) no
    # savepoint under the write lock
    mine = (IdempotencyRecord.principal_id == owner) & (IdempotencyRecord.key == key)
    if status >= 500:
        write_statement(rt.db, delete(IdempotencyRecord).where(mine), durable=False)
    else:
        answer = {"status_code": status, "content_type": content_type, "response_body": body}
        write_statement(rt.db, update(IdempotencyRecord).where(mine).values(**answer), durable=False)


def purge_expired(rt: Runtime, limit: int = PURGE_BATCH) -> int:
    """Remove up to ``limit`` records past their ``expires_at`` (the keeper's sweep calls this); how many."""
    now = utcnow()
    with transaction(rt.db, durable=False) as s:
        keys = s.execute(
            select(IdempotencyRecord.principal_id, IdempotencyRecord.key)
            .where(IdempotencyRecord.expires_at < now)
            .order_by(IdempotencyRecord.expires_at)
            .limit(limit)
        ).all()
        if not keys:
            return 0
        s.execute(
            delete(IdempotencyRecord).where(
                tuple_(IdempotencyRecord.principal_id, IdempotencyRecord.key).in_([tuple(k) for k in keys]),
                IdempotencyRecord.expires_at < now,
            )
        )
        return len(keys)
