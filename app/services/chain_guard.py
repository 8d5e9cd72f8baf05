"""The chain guard: chain work stops, and says why, rather than rewrite the database for another chain.

Two conditions halt the indexer, the relayer and the keeper (each pass calls :func:`require` first and
raises :class:`~app.errors.ChainHalted`); ``/readyz`` answers 503 naming the reason, and so does every
route that needs the chain. Nothing in the database is changed by a halt.

- **Identity.** The database belongs to one chain: the deployment record (``kv`` row ``deployment``,
  written on first start) holds its chain id and genesis block hash. :func:`check` compares them with the
  node's ``eth_chainId`` and block 0 (two cheap calls), at most once every
  ``settings.chain_check_seconds`` per process. A node that now serves another chain (a dev chain started
  afresh on the same port, a URL pointed at another network) is a :class:`~app.errors.ChainMismatch`; it
  clears by itself once the right node answers again.
- **Halt flag.** A persistent ``kv`` row ``chain_halt`` (code, reason, details), written by the indexer when
  a reorg is deeper than ``settings.finality_depth``. Only an operator clears it (``tradeguard chain
  resume``), after looking at the chain.

The first problem found, and the recovery, are logged at ERROR / WARNING once per process.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from app.db.models import KeyValue
from app.db.session import read_transaction, transaction
from app.errors import ChainError, ChainHalted, ChainUnavailable
from app.services.chain_halt import GuardState, Halt

if TYPE_CHECKING:
    from app.services.runtime import Runtime

log = logging.getLogger(__name__)

HALT_KEY = "chain_halt"
DEPLOYMENT_KEY = "deployment"


def check(rt: Runtime, *, force: bool = False, max_age: float | None = None) -> Halt | None:
    """What stops chain work now (None: nothing). Cached for ``settings.chain_check_seconds`` (or
    ``max_age``, if shorter) unless ``force``. Raises :class:`~app.errors.ChainUnavailable` when the node
    does not answer."""
    state = rt.guard
    ttl = (
        rt.settings.chain_check_seconds if max_age is None else min(max_age, rt.settings.chain_check_seconds)
    )
    with state.lock:
        if not force and state.checked_at is not None and time.monotonic() - state.checked_at < ttl:
            return state.halt
    halt = _stored_halt(rt.db) or _identity_halt(rt)
    _remember(rt, halt)
    return halt


def require(rt: Runtime, *, force: bool = False, max_age: float | None = None) -> None:
    """Raise :class:`~app.errors.ChainHalted` (or ``ChainMismatch``) if chain work must not go on."""
    halt = check(rt, force=force, max_age=max_age)
    if halt is not None:
        raise halt.error()


def cached(rt: Runtime) -> Halt | None:
    """The last check's finding, without any I/O (for error paths)."""
    with rt.guard.lock:
        return rt.guard.halt


def halt(rt: Runtime, code: str, reason: str, **details: Any) -> ChainHalted:
    """Set the persistent halt flag (in its own transaction: call it with none open) and log it; returns the
    error for the caller to raise."""
    value = {"code": code, "reason": reason, "at": datetime.now(UTC).isoformat(), "details": details}
    with transaction(rt.db) as s:
        row = s.get(KeyValue, HALT_KEY)
        if row is None:
            s.add(KeyValue(key=HALT_KEY, value=value))
        else:
            row.value = value
    found = Halt(code, reason, details)
    _remember(rt, found)
    return found.error()


def stored_halt(session: Session) -> Halt | None:
    """The persistent halt flag, if set."""
    row = session.get(KeyValue, HALT_KEY)
    if row is None:
        return None
    value = dict(row.value)
    return Halt(
        str(value.get("code", "halted")), str(value.get("reason", "")), dict(value.get("details") or {})
    )


def clear_halt(db: sessionmaker[Session], guard: GuardState | None = None) -> Halt | None:
    """Operator: remove the persistent halt flag; returns what it said (None if it was not set). Other
    processes see it within ``chain_check_seconds``; ``guard`` (this process's) forgets its cache at once."""
    with transaction(db) as s:
        found = stored_halt(s)
        row = s.get(KeyValue, HALT_KEY)
        if row is not None:
            s.delete(row)
    if guard is not None:
        with guard.lock:
            guard.checked_at = None
    if found is not None:
        log.warning("chain halt cleared by the operator (was %s: %s)", found.code, found.reason)
    return found


# ------------------------------------------------------------------------------------------------ checks


def _stored_halt(db: sessionmaker[Session]) -> Halt | None:
    with read_transaction(db) as s:  # every check reads it: no write lock for that
        return stored_halt(s)


def _expected(rt: Runtime) -> tuple[int, str]:
    with rt.guard.lock:
        if rt.guard.expected is not None:
            return rt.guard.expected
    with read_transaction(rt.db) as s:
        row = s.get(KeyValue, DEPLOYMENT_KEY)
        record = dict(row.value) if row is not None else {}
    if "chain_id" not in record or "genesis" not in record:
        # a record from before the guard: the chain it was made on is the one the runtime attached to
        chain_id, genesis = _found(rt)
        with transaction(rt.db) as s:
            row = s.get(KeyValue, DEPLOYMENT_KEY)
            if row is not None:
                row.value = {**dict(row.value), "chain_id": chain_id, "genesis": genesis}
        record = {"chain_id": chain_id, "genesis": genesis}
    expected = (int(record["chain_id"]), str(record["genesis"]))
    with rt.guard.lock:
        rt.guard.expected = expected
    return expected


def _found(rt: Runtime) -> tuple[int, str]:
    try:
        chain_id = int(rt.chain.w3.eth.chain_id)
        genesis = rt.chain.get_block(0)
    except ChainError:
        raise
    except Exception as exc:  # any transport error means the node is not there
        raise ChainUnavailable(f"chain identity check: {type(exc).__name__}: {exc}") from exc
    if genesis is None:
        raise ChainUnavailable("chain identity check: the node has no block 0")
    return chain_id, genesis.hash


def _identity_halt(rt: Runtime) -> Halt | None:
    expected_id, expected_genesis = _expected(rt)
    chain_id, genesis = _found(rt)
    if (chain_id, genesis) == (expected_id, expected_genesis):
        return None
    what = []
    if chain_id != expected_id:
        what.append(f"chain id {chain_id} where the database has {expected_id}")
    if genesis != expected_genesis:
        what.append(f"genesis block {genesis} where the database has {expected_genesis}")
    return Halt(
        "chain_mismatch",
        "the node serves another chain than the one this database indexed: "
        + "; ".join(what)
        + " (was the chain replaced, or the node URL changed?); indexer, relayer and keeper are stopped",
        {
            "expected_chain_id": expected_id,
            "found_chain_id": chain_id,
            "expected_genesis": expected_genesis,
            "found_genesis": genesis,
        },
    )


def _remember(rt: Runtime, found: Halt | None) -> None:
    state = rt.guard
    with state.lock:
        before, state.halt, state.checked_at = state.halt, found, time.monotonic()
    if found is not None and before != found:
        log.error("CHAIN HALTED (%s): %s %s", found.code, found.reason, found.details)
    elif found is None and before is not None:
        log.warning("chain checks pass again (was %s: %s)", before.code, before.reason)


__all__ = [
    "HALT_KEY",
    "GuardState",
    "Halt",
    "cached",
    "check",
    "clear_halt",
    "halt",
    "require",
    "stored_halt",
]
