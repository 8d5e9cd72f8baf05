"""Nonces of the relayer's hot wallet, allocated in the database so that they survive restarts and processes.

The next nonce per sender is a :class:`~app.db.models.KeyValue` row ``nonce:<address>`` (``{"next": n}``). A
nonce is allocated inside the caller's transaction, the same one that records the signed transaction on its
intents, under a lock on that row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
serialises writers). If the transaction rolls back, so does the allocation: an allocated nonce always belongs
to a recorded transaction.

No call to the node is made inside that transaction (it would hold the database's write lock for a network
round trip): the caller reads the chain's pending nonce first (:func:`chain_nonce`) and hands it in. It may be
stale by the time the lock is taken — lower, if transactions of ours were mined meanwhile — so a nonce that a
mined intent used is never handed out again, whatever the chain's figure says.

Every allocation reconciles with the chain:

- the chain's pending nonce is higher than the stored one (someone else sent from the key, or our own
  transactions were mined): jump forward to it;
- a nonce between the chain's pending nonce and the stored one that no ``sent`` or mined intent holds is a gap
  (its transaction was abandoned, or the chain lost it): it is handed out again, lowest first, because every
  later transaction waits behind it;
- nonces held by ``sent`` intents whose transaction the node does not know (a crash between commit and
  broadcast) are skipped: the relayer re-broadcasts those stored raw transactions instead.
"""

from __future__ import annotations

from eth_utils import to_checksum_address
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.chain.client import ChainClient
from app.db.models import Intent, KeyValue, utcnow
from app.db.session import insert_new

SENT = "sent"


def nonce_key(address: str) -> str:
    """The ``KeyValue`` key of ``address``'s next nonce."""
    return f"nonce:{to_checksum_address(address)}"


def _locked_row(session: Session, key: str) -> KeyValue:
    """The row of ``key``, created if missing, locked until the end of the caller's transaction."""
    insert_new(session, KeyValue, {"key": key, "value": {}, "updated_at": utcnow()})
    stmt = select(KeyValue).where(KeyValue.key == key).with_for_update()
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one()


def held_nonces(session: Session, address: str, from_nonce: int = 0) -> set[int]:
    """Nonces (at least ``from_nonce``) of ``address``'s transactions on ``sent`` or mined intents."""
    rows = session.scalars(
        select(Intent.nonce).where(
            Intent.sender == to_checksum_address(address),
            or_(Intent.status == SENT, Intent.block_number.is_not(None)),
            Intent.nonce >= from_nonce,
        )
    )
    return {int(n) for n in rows if n is not None}


def chain_nonce(chain: ChainClient, address: str, max_age: float = 0.0) -> int:
    """The chain's pending nonce of ``address``: read it *before* opening the transaction that allocates.

    ``max_age``: a reading up to that many seconds old will do. It can only be lower than the node's figure
    (our transactions sent since are not in it), which :func:`allocate` already allows for: nonces held by
    ``sent`` or mined intents are never handed out again. Raises :class:`~app.errors.ChainUnavailable` if
    the node does not answer.
    """
    return chain.nonce(address, "pending", max_age=max_age)


def allocate(session: Session, address: str, on_chain: int) -> int:
    """Allocate ``address``'s next nonce inside the caller's (write) transaction; makes no network call.

    Call it in the transaction that records the signed transaction; the row lock is held until it ends.
    ``on_chain`` is the chain's pending nonce read before the transaction (:func:`chain_nonce`).
    """
    row = _locked_row(session, nonce_key(address))
    held = held_nonces(session, address, on_chain)
    nonce, following = _choose(int(row.value.get("next", 0)), on_chain, held)
    row.value = {"next": following, "chain": on_chain}
    return nonce


def _choose(stored: int, on_chain: int, held: set[int]) -> tuple[int, int]:
    """The nonce to allocate, and the stored next nonce after it: the first gap from ``on_chain`` up that no
    recorded transaction holds, else the stored counter."""
    candidate = max(stored, on_chain)
    gaps = [n for n in range(on_chain, candidate) if n not in held]
    nonce = gaps[0] if gaps else candidate
    while nonce in held:  # the stored counter is behind recorded transactions (it never should be)
        nonce += 1
    return nonce, max(candidate, nonce + 1)


def expected(session: Session, address: str, on_chain: int, count: int) -> list[int]:
    """The nonces ``count`` allocations in one transaction would give if nothing changed meanwhile (a read:
    no lock). The relayer signs its transactions at these before it takes the write lock, and signs again
    inside only one whose allocated nonce differs."""
    row = session.get(KeyValue, nonce_key(address))
    stored = 0 if row is None else int(row.value.get("next", 0))
    held = held_nonces(session, address, on_chain)
    nonces: list[int] = []
    for _ in range(count):
        nonce, stored = _choose(stored, on_chain, held)
        held.add(nonce)
        nonces.append(nonce)
    return nonces


def sync(session: Session, address: str, on_chain: int) -> int:
    """Reconcile the stored next nonce with the chain's pending nonce ``on_chain``, read before the
    transaction (:func:`chain_nonce`): jump forward only; returns the stored value."""
    row = _locked_row(session, nonce_key(address))
    stored = int(row.value.get("next", 0))
    nxt = max(stored, on_chain)
    row.value = {"next": nxt, "chain": on_chain}
    return nxt


def peek(session: Session, address: str) -> int | None:
    """The stored next nonce of ``address`` (None before the first allocation)."""
    row = session.get(KeyValue, nonce_key(address))
    return None if row is None or "next" not in row.value else int(row.value["next"])


__all__ = ["allocate", "chain_nonce", "expected", "held_nonces", "nonce_key", "peek", "sync"]
