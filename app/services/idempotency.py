"""``Idempotency-Key`` records: a POST is claimed before it runs and its answer kept after it.

A key belongs to one principal. The first request with it writes an in-flight record; the answer is stored
when it is known, unless it is a 5xx (the record is deleted, so a retry runs again) or carried a secret
(kept without its body: a replay is refused rather than shown the secret again).
A later request with the same key gets one of the :class:`Verdict` values or the stored :class:`Replay`. A
record left in flight longer than :data:`IN_FLIGHT_LEASE_SECONDS` (its request died) is taken over, and so
is a record past its ``expires_at`` that the keeper has not removed yet (the key is free again).

Each step is one short write (the claim and the answer are committed together with other requests' writes:
:func:`app.db.session.write`); the API middleware (:mod:`app.api.middleware`) runs them in a worker thread
around the request. None of them waits for the disk (``durable=False``): the request's own data is
committed durably between the claim and the answer, which writes the claim out with it. What a machine
crash can lose is the kept answer; the key is then in flight for :data:`IN_FLIGHT_LEASE_SECONDS` and a
retry after that runs the request again, which finds its own data
(an order reference, an event hash, an intent) already there.

Expired records are removed by the keeper's sweep (:func:`purge_expired`, a bounded batch per sweep), not by
the requests: a claim writes its own row only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import IdempotencyRecord, utcnow
from app.db.session import transaction, write
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


def claim(
    rt: Runtime, owner: str, key: str, request_hash: str, method: str, path: str
) -> Verdict | Replay | None:
    """Record ``key`` as in flight for ``owner`` (``None``: the request runs), or say what to answer."""
    now = utcnow()
    record = IdempotencyRecord(
        principal_id=owner,
        key=key,
        request_hash=request_hash,
        method=method,
        path=path[:500],
        expires_at=now + timedelta(seconds=rt.settings.idempotency_ttl_seconds),
    )
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


def finish(rt: Runtime, owner: str, key: str, status: int, content_type: str, body: bytes | None) -> None:
    """Keep the answer to ``owner``'s request with ``key`` (``body`` None: never replayed); a 5xx frees
    the key instead, so that the client's retry runs."""

    def keep(s: Session) -> None:
        row = s.get(IdempotencyRecord, (owner, key))
        if row is None:
            return
        if status >= 500:
            s.delete(row)
            return
        row.status_code = status
        row.content_type = content_type
        row.response_body = body

    write(rt.db, keep, durable=False)  # committed with concurrent requests' writes


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
