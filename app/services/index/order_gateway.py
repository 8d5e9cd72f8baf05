"""The order gateway: "the current order" (terms + packed state word, what every escrow call passes back) for
the relayer, the intent call builders and ingestion.

The index is the source: the indexer (:mod:`app.services.index.indexer`) stores every escrow event up to its
cursor, ``OrderFunded`` with the order's full terms, every later state event with the new state word; the
``orders`` row is the replay of exactly those events. The indexer runs ``confirmation_depth`` blocks (and
whatever it lags) behind the head, so the gateway catches an order up **incrementally**: it asks the node only
for this order's state events from the cursor + 1 to the head (one ``eth_getLogs`` filtered by the ``orderId``
topic for any number of orders) and applies them to an in-memory copy. The cost of a look-up is therefore
bounded by the indexer's lag, never by the chain's age; nothing is scanned from the deployment block unless
the indexer has never run. The cursor block's hash is checked first (one ``eth_getBlockByNumber``): after a
reorg the indexer has not rolled back yet, only the index below the finality depth is trusted and the rest is
read from the node. The gateway writes nothing (the projection is the indexer's) and holds no transaction open
across a call to the node."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, sessionmaker

from app.chain.client import ChainClient
from app.chain.escrow import STATE_EVENTS, Escrow, Order, Terms
from app.db.models import ChainEvent, KeyValue
from app.db.session import read_transaction
from app.services.index import projection
from app.services.index.indexer import CURSOR_KEY
from app.services.runtime import Runtime


def order_key(order_id: str | bytes) -> str:
    """An order id as the index keys it: ``0x`` + 64 lowercase hex digits."""
    if isinstance(order_id, bytes | bytearray):
        return "0x" + bytes(order_id).hex()
    return order_id.lower()


@dataclass(frozen=True)
class IndexedOrders:
    """What the index holds for some orders: the cursor (block and hash) and each order's state events up to
    it as (block, name, stored args)."""

    cursor: int | None
    cursor_hash: str | None
    events: dict[str, list[tuple[int, str, Mapping[str, Any]]]]


def fold(order_id: bytes, events: Iterable[tuple[str, Mapping[str, Any]]]) -> Order | None:
    """The order after its state events (name, stored or JSON-safe args) in chain order; None if unfunded.

    Terms come from ``OrderFunded``, the state word from the newest event that carries one.
    """
    order: Order | None = None
    for name, args in events:
        if name == "OrderFunded":
            terms = Terms(**asdict(projection.terms_from_args(args["terms"])))
            order = Order(order_id, terms, projection.as_int(args["state"]))
        elif order is not None and "state" in args:
            order = replace(order, state=projection.as_int(args["state"]))
    return order


class OrderGateway:
    """The one place that knows each order's current terms and state word (see the module docstring)."""

    def __init__(
        self,
        db: sessionmaker[Session],
        chain: ChainClient,
        escrow: Escrow,
        deployment_block: int,
        finality_depth: int,
    ) -> None:
        self.db, self.chain, self.escrow = db, chain, escrow
        self.deployment_block, self.finality_depth = deployment_block, finality_depth
        by_name = {item["name"]: topic for topic, item in chain.abis.events.items()}
        self._topics = [by_name[name] for name in STATE_EVENTS]

    @classmethod
    def of(cls, rt: Runtime) -> OrderGateway:
        """The gateway over a runtime's database, chain and escrow."""
        return cls(rt.db, rt.chain, rt.escrow, rt.deployment_block, rt.settings.finality_depth)

    # ------------------------------------------------------------------ reads

    def indexed(self, order_ids: Sequence[str], session: Session | None = None) -> IndexedOrders:
        """The index's view of ``order_ids`` (0x hex): the cursor and their state events up to it.

        One statement, so the cursor and the events are of one snapshot on every backend (the indexer moves
        the cursor in the transaction that stores the events). ``session`` reads through a caller's open
        transaction; without one a read transaction is used (no write lock).
        """
        keys = sorted({order_key(o) for o in order_ids})
        stmt = (
            select(
                KeyValue.value, ChainEvent.order_id, ChainEvent.block_number, ChainEvent.name, ChainEvent.args
            )
            .select_from(KeyValue)
            .outerjoin(ChainEvent, and_(ChainEvent.order_id.in_(keys), ChainEvent.name.in_(STATE_EVENTS)))
            .where(KeyValue.key == CURSOR_KEY)
            .order_by(ChainEvent.block_number, ChainEvent.log_index)
        )
        if session is not None:
            rows = session.execute(stmt).all()
        else:
            with read_transaction(self.db) as s:
                rows = s.execute(stmt).all()
        events: dict[str, list[tuple[int, str, Mapping[str, Any]]]] = {k: [] for k in keys}
        cursor: int | None = None
        cursor_hash: str | None = None
        for value, oid, block, name, args in rows:
            cursor, cursor_hash = int(value["block"]), value.get("hash")
            if oid is not None and block <= cursor:  # the cursor commits with its events: a guard only
                events[oid].append((int(block), name, args))
        return IndexedOrders(cursor, cursor_hash, events)

    def trusted_until(self, index: IndexedOrders) -> int:
        """The first block whose events are read from the node rather than from the index.

        The cursor + 1 while the node still has the cursor block the indexer stored (a block hash commits to
        every ancestor); if it does not, a reorg the indexer has not rolled back yet replaced it, and only
        what lies deeper than the finality depth is trusted (a deeper fork halts the indexer). One
        ``eth_getBlockByNumber``.
        """
        if index.cursor is None or index.cursor < self.deployment_block:
            return self.deployment_block  # nothing indexed yet
        if index.cursor_hash is not None:
            header = self.chain.get_block(index.cursor)
            if header is not None and header.hash == index.cursor_hash:
                return index.cursor + 1
        return max(self.deployment_block, index.cursor - self.finality_depth + 1)

    def current_many(
        self, order_ids: Iterable[str | bytes], *, at_least: int | None = None
    ) -> dict[str, Order | None]:
        """The current orders by 0x id (None: never funded); one database read and, when the index lags,
        one bounded log query for all of them.

        ``at_least``: the block the caller needs the state as of; when the index already covers it the node
        is not asked at all. Otherwise (the default) the orders are caught up to the node's head from the
        cursor + 1. Raises :class:`~app.errors.ChainUnavailable` when the node cannot be reached. Call it with
        no database write transaction open: it may ask the node.
        """
        keys = sorted({order_key(o) for o in order_ids})
        if not keys:
            return {}
        index = self.indexed(keys)
        if at_least is not None and index.cursor is not None and index.cursor >= at_least:
            start = index.cursor + 1  # the index covers what the caller needs: the node is not asked
            fresh: list[tuple[str, str, Mapping[str, Any]]] = []
        else:
            start = self.trusted_until(index)
            ids = [bytes.fromhex(k[2:]) for k in keys]
            topic: bytes | list[bytes] = ids[0] if len(ids) == 1 else ids
            found = self.chain.find_events(self.escrow.address, [self._topics, topic], start)
            fresh = [
                (order_key(bytes(e.args["orderId"])), e.name, projection.json_safe(e.args)) for e in found
            ]
        out: dict[str, Order | None] = {}
        for k in keys:
            stored = [(name, args) for block, name, args in index.events[k] if block < start]
            caught_up = [(name, args) for oid, name, args in fresh if oid == k]
            out[k] = fold(bytes.fromhex(k[2:]), [*stored, *caught_up])
        return out

    def current(self, order_id: str | bytes, *, at_least: int | None = None) -> Order | None:
        """The current order (None if the chain never funded it); see :meth:`current_many`."""
        key = order_key(order_id)
        return self.current_many([key], at_least=at_least)[key]


__all__ = ["IndexedOrders", "OrderGateway", "fold", "order_key"]
