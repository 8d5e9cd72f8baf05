"""The indexer: follows the escrow's events into the database, behind the confirmation depth, through reorgs.

Each :func:`sync` pass works in block ranges of at most ``max_blocks``, one database transaction per range:

- **fetch** (no transaction open): the range's logs, and the header of the range's last block and of every
  block with an escrow event; every log must carry the hash of the header read for its block, else the chain
  moved while we read and the range is fetched again;
- **verify** (no transaction open either): the cursor block the index stored and the range's last block are
  still the node's, and the range's first block follows the stored cursor block;
- **apply**: lock the cursor (a ``SELECT … FOR UPDATE`` of the ``kv`` row ``indexer`` on PostgreSQL; SQLite's
  ``BEGIN IMMEDIATE`` serialises writers anyway), check that nobody moved it, nor the stored cursor block,
  since the verify step (no call to the node under the write lock), then store each event as a
  :class:`~app.db.models.ChainEvent`, the headers as :class:`~app.db.models.IndexedBlock` rows, replay every
  touched order from all of its events (:mod:`app.services.index.projection`), emit merchant webhooks for its
  transitions (stable ids: replays emit nothing twice) and move the cursor.

**Reorgs.** Before each range the stored hash of the cursor block is compared with the chain. On a mismatch
the indexer walks its stored blocks downwards to the highest one whose hash the chain still has: a block hash
commits to every ancestor, so that block is a common ancestor, even though only the blocks that carry escrow
events and the last block of each range are stored. Events and blocks above it are deleted, the orders they
touched are replayed from their remaining events (so each equals what a fresh index of the new chain gives),
the cursor goes back, and indexing goes on along the new chain. Webhooks already emitted for events the reorg
removed stay emitted (they may have been delivered); the merchant gets an ``order.reorged`` event listing them
and the order's status now. Every block within ``settings.finality_depth`` of the head is stored, so the
common ancestor of a shallow reorg is found exactly; stored blocks older than :data:`BLOCK_HISTORY` behind the
cursor are pruned.

**Never below finality.** The indexer does not rewind more than ``finality_depth`` blocks on its own: a reorg
whose common ancestor is deeper (or not found) sets the persistent halt flag with the reason
(:mod:`app.services.chain_guard`), logs an ERROR and raises :class:`~app.errors.ChainHalted`; nothing is
rolled back. Every pass first checks the chain's identity (genesis hash, chain id), and checks it again,
uncached, before any roll-back: a replaced chain halts, it is never applied as a reorg.

Orders funded directly on chain (without our API) get a row when a merchant principal has the seller's
address; otherwise only their events are kept, and a row the API creates later is caught up on the next pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from eth_utils import to_checksum_address
from sqlalchemy import bindparam, delete, exists, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.chain.abi import Event
from app.chain.client import BlockHeader
from app.chain.escrow import order_key
from app.db.models import (
    ChainEvent,
    IndexedBlock,
    Intent,
    KeyValue,
    Order,
    OrderColumns,
    Principal,
    TimelineEntry,
    WebhookEvent,
    utcnow,
)
from app.db.session import read_transaction, transaction, upsert_all
from app.domain.encoding import rfc3339
from app.domain.order_state import buyer_tag
from app.errors import ChainUnavailable
from app.services import chain_guard
from app.services.index import projection
from app.services.outbox import webhooks
from app.services.runtime import Runtime

log = logging.getLogger(__name__)

CURSOR_KEY = "indexer"
#: The periodic audit's kept per-token sums (:mod:`app.services.index.audit`): a roll-back drops them.
AUDIT_SUMS_KEY = "audit_sums"
#: Blocks of hash history kept behind the cursor to find a reorg's common ancestor.
BLOCK_HISTORY = 10_000
#: Stored blocks read per step of the walk back to a common ancestor.
_WALK_BATCH = 500
#: Steps in a row without progress (the chain moving under a fetch, a lost race) before a pass gives up.
MAX_STALLS = 5


@dataclass
class IndexReport:
    """What one :func:`sync` pass did."""

    head: int = 0
    target: int = 0
    cursor: int = 0
    ranges: int = 0
    events: int = 0
    orders: int = 0
    webhooks: int = 0
    reorgs: int = 0
    rolled_back_to: int | None = None
    removed_events: int = 0
    caught_up: bool = False


@dataclass(frozen=True)
class _Chunk:
    start: int
    end: int
    events: list[Event]
    headers: dict[int, BlockHeader]
    symbols: dict[str, str] = field(default_factory=dict)


class _ChainMoved(Exception):
    """The chain changed while a range was read or applied: read it again."""


# ------------------------------------------------------------------------------------------------ cursor


def _ensure_cursor(rt: Runtime) -> None:
    """Create the cursor if there is none; only a read when there is (every pass but the first)."""
    with read_transaction(rt.db) as s:
        if s.get(KeyValue, CURSOR_KEY) is not None:
            return
    try:
        with transaction(rt.db) as s:
            if s.get(KeyValue, CURSOR_KEY) is None:
                s.add(KeyValue(key=CURSOR_KEY, value={"block": rt.deployment_block - 1}))
    except IntegrityError:  # another indexer created it first
        pass


def _read_cursor(rt: Runtime) -> int:
    with read_transaction(rt.db) as s:
        row = s.get(KeyValue, CURSOR_KEY)
        assert row is not None
        return int(row.value["block"])


def _lock_cursor(s: Session) -> KeyValue:
    row = s.scalars(
        select(KeyValue)
        .where(KeyValue.key == CURSOR_KEY)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return row


def _set_cursor(row: KeyValue, block: int, block_hash: str | None) -> None:
    row.value = {"block": block, "hash": block_hash}


def forget_audit_sums(session: Session) -> None:
    """Drop the audit's kept sums (events were rolled back): its next pass sums the index from the start."""
    session.execute(delete(KeyValue).where(KeyValue.key == AUDIT_SUMS_KEY))


def cursor(session: Session) -> int | None:
    """The last block indexed (None before the first pass)."""
    row = session.get(KeyValue, CURSOR_KEY)
    return None if row is None else int(row.value["block"])


# ------------------------------------------------------------------------------------------------- sync


def sync(rt: Runtime, max_blocks: int = 5000, *, max_ranges: int | None = None) -> IndexReport:
    """Index the escrow's events up to ``confirmation_depth`` blocks behind the head; returns what it did.

    Safe to run twice (the second pass changes nothing) and from two processes at once (the cursor lock makes
    one of them skip each range the other applied).
    """
    if max_blocks < 1:
        raise ValueError("max_blocks must be at least 1")
    report = IndexReport()
    try:
        _sync(rt, max_blocks, max_ranges, report)
    except OSError as exc:  # requests' connection errors and timeouts are OSErrors
        raise ChainUnavailable(f"indexer: {exc}") from exc
    return report


def _sync(rt: Runtime, max_blocks: int, max_ranges: int | None, report: IndexReport) -> None:
    chain_guard.require(rt)
    _ensure_cursor(rt)
    stalls = 0
    moved = False  # the last range did not continue the indexed chain: look for the fork first
    while (max_ranges is None or report.ranges < max_ranges) and stalls <= MAX_STALLS:
        tip = rt.chain.latest()  # the head's number and its header, one call
        report.head = tip.number
        report.target = report.head - rt.settings.confirmation_depth
        at = report.cursor = _read_cursor(rt)
        ancestor = _find_fork(rt, at) if moved or not _continues(rt, at, tip, report.target) else None
        moved = False
        if ancestor is not None:
            chain_guard.require(rt, force=True)  # a replaced chain is halted on, never rolled back to
            _roll_back(rt, at, ancestor, report)
            stalls += 1  # progress comes with the next range; a chain that keeps reorging ends the pass
            continue
        if at >= report.target:
            _catch_up_rows(rt, report)
            report.caught_up = True
            break
        end = min(report.target, at + max_blocks)
        try:
            applied = _apply(rt, at, _fetch(rt, at + 1, end, tip), report)
        except _ChainMoved as exc:
            log.info(
                "indexer: the chain moved while reading blocks %d..%d (%s); reading again", at + 1, end, exc
            )
            stalls += 1
            moved = True
            continue
        if applied:
            report.ranges += 1
            report.cursor = end
            stalls = 0
            if end >= report.target:
                # caught up with the head this pass began at (the range's own transaction projected the
                # rows waiting for it); newer blocks are the next pass's
                report.caught_up = True
                break
        # else another indexer applied the range first: progress all the same, go on from its cursor


def _continues(rt: Runtime, at: int, tip: BlockHeader, target: int) -> bool:
    """Whether the indexed chain up to the cursor ``at`` is known to still be the node's without a call.

    With a range to read (``at`` below the target) :func:`_verify` checks that the range's first block
    follows the cursor block before anything is applied, and a range that does not makes the next round
    look for the fork. At the head (the cursor is the tip just read) the tip's hash says it. Otherwise
    (the cursor past the tip, or confirmations held back) :func:`_find_fork` asks the node.
    """
    if at < target:
        return True
    if at != tip.number:
        return False
    with read_transaction(rt.db) as s:
        stored = s.get(IndexedBlock, at)
        stored_hash = None if stored is None else stored.hash
    return stored_hash is None or stored_hash == tip.hash


def _fetch(rt: Runtime, start: int, end: int, tip: BlockHeader) -> _Chunk:
    chain, head = rt.chain, tip.number
    last = tip if end == head else chain.get_block(end)
    if last is None:
        raise _ChainMoved(f"block {end} is gone")
    events = chain.get_events(rt.escrow.address, start, end)
    headers = {end: last}
    # every block that could still be reorged away is stored, so that a fork's depth is known exactly
    for number in range(max(start, head - rt.settings.finality_depth), end):
        header = chain.get_block(number)
        if header is None:
            raise _ChainMoved(f"block {number} is gone")
        headers[number] = header
    for number in sorted(headers):
        child = headers.get(number + 1)
        if child is not None and child.parent_hash != headers[number].hash:
            raise _ChainMoved(f"block {number + 1} does not follow block {number}")
    for number in sorted({e.block_number for e in events}):
        header = headers.get(number) or chain.get_block(number)
        if header is None:
            raise _ChainMoved(f"block {number} is gone")
        headers[number] = header
    for e in events:
        if e.block_hash and e.block_hash != headers[e.block_number].hash:
            raise _ChainMoved(f"log of block {e.block_number} from another fork")
    symbols: dict[str, str] = {}
    for e in events:
        if e.name == "OrderFunded":
            token = to_checksum_address(e.args["terms"]["token"])
            if token not in rt.tokens and token not in symbols:
                symbols[token] = _symbol(rt, token)
    return _Chunk(start, end, events, headers, symbols)


def _symbol(rt: Runtime, token: str) -> str:
    try:
        return str(rt.chain.call(rt.chain.contract("TestUSD", token).functions.symbol()))[:16]
    except Exception:  # a token without symbol() still gets its orders indexed
        return ""


def _still_there(rt: Runtime, number: int, block_hash: str) -> bool:
    header = rt.chain.get_block(number)
    return header is not None and header.hash == block_hash


def _verify(rt: Runtime, expected: int, chunk: _Chunk) -> str | None:
    """Check the range against the node before it is applied; returns the stored hash of the cursor block.

    Runs with no transaction open. The range must continue the indexed chain: its first block's parent is
    the stored cursor block (from the headers read, no call), or, when the range starts deeper than the
    headers kept, the node still has the stored cursor block (one call). A reorg after that (or one that
    replaced the range's own blocks while they were read) is found by the next pass, which compares the
    stored hash of the new cursor block with the node's and rolls back.
    """
    with read_transaction(rt.db) as s:
        below = s.get(IndexedBlock, expected)
        below_hash = None if below is None else below.hash
    if below_hash is None:
        return None
    first = chunk.headers.get(chunk.start)
    if first is not None:
        if first.parent_hash != below_hash:
            raise _ChainMoved(f"block {chunk.start} does not follow block {expected}")
    elif not _still_there(rt, expected, below_hash):
        raise _ChainMoved(f"block {expected} was replaced")
    return below_hash


def _apply(rt: Runtime, expected: int, chunk: _Chunk, report: IndexReport) -> bool:
    verified = _verify(rt, expected, chunk)
    # all of it is read again from the chain if a machine crash loses it (the cursor moves in the same
    # transaction): its commit need not wait for the disk, and a burst of blocks does not queue writers on it
    with transaction(rt.db, durable=False) as s:
        row = _lock_cursor(s)
        if int(row.value["block"]) != expected:
            return False  # another indexer applied this range (or rolled back) meanwhile
        below = s.get(IndexedBlock, expected)
        if (None if below is None else below.hash) != verified:
            raise _ChainMoved(f"the index's block {expected} changed since it was checked")
        touched: set[str] = set()
        disputes: dict[tuple[str, int], str] = {}  # this range's ERC-792 disputes → their order
        recorded = utcnow()
        rows: list[dict[str, Any]] = []
        for e in chunk.events:
            header = chunk.headers[e.block_number]
            order_id = projection.event_order_id(e.name, e.args)
            if e.name == "Dispute" and order_id is not None:
                found = projection.dispute_of(e.name, e.args)
                if found is not None:
                    disputes[found] = order_id
            elif e.name in projection.BY_DISPUTE:
                order_id = _order_of_dispute(s, projection.dispute_of(e.name, e.args), disputes)
            rows.append(
                {
                    "block_number": e.block_number,
                    "block_hash": header.hash,
                    "block_time": header.timestamp,
                    "tx_hash": e.tx_hash,
                    "log_index": e.log_index,
                    "name": e.name,
                    "order_id": order_id,
                    "args": projection.json_safe(e.args),
                    "recorded_at": recorded,
                }
            )
            if order_id is not None:
                touched.add(order_id)
        # one statement each for the range's events and its blocks, no ORM objects: this runs under the
        # write lock, and a unit-of-work flush of one object per event, and a look-up and an insert per block
        # (``merge``), were a third of the indexer's time (issue 8)
        if rows:
            s.execute(insert(ChainEvent), rows)
        blocks = [
            {"number": h.number, "hash": h.hash, "parent_hash": h.parent_hash} for h in chunk.headers.values()
        ]
        upsert_all(s, IndexedBlock, blocks)
        touched.update(_rows_to_catch_up(s))
        symbols = {**{a: t.symbol for a, t in rt.tokens.items()}, **chunk.symbols}
        _project_all(s, sorted(touched), symbols, report)
        _set_cursor(row, chunk.end, chunk.headers[chunk.end].hash)
        s.execute(delete(IndexedBlock).where(IndexedBlock.number < chunk.end - BLOCK_HISTORY))
        report.events += len(chunk.events)
    return True


def _order_of_dispute(
    s: Session, dispute: tuple[str, int] | None, fresh: dict[tuple[str, int], str]
) -> str | None:
    """The order of an ERC-792 (arbitrator, dispute id): from this range's ``Dispute`` events, else from the
    indexed ones (a ruling comes blocks or days after its dispute). None if the escrow created no such
    dispute (it then has no ruling to record either)."""
    if dispute is None:
        return None
    if dispute in fresh:
        return fresh[dispute]
    arbitrator, dispute_id = dispute
    for order_id, args in s.execute(
        select(ChainEvent.order_id, ChainEvent.args).where(
            ChainEvent.name == "Dispute",
            func.lower(ChainEvent.args["_arbitrator"].as_string()) == arbitrator,
        )
    ):
        if projection.dispute_of("Dispute", args) == dispute:
            return str(order_id)
    return None


def _catch_up_rows(rt: Runtime, report: IndexReport) -> None:
    """Project rows the API created after their order was indexed, when no new range does it. Looked for
    in a read transaction first: a pass with nothing to do takes no write lock."""
    with read_transaction(rt.db) as s:
        if not _rows_to_catch_up(s):
            return
    with transaction(rt.db) as s:
        if not _rows_to_catch_up(s):
            return
        _lock_cursor(s)
        symbols = {a: t.symbol for a, t in rt.tokens.items()}
        _project_all(s, _rows_to_catch_up(s), symbols, report)


#: Rows the API created after their order was already funded (and indexed) on chain. Each order awaiting
#: funding is looked up in the events by its id (an index search). ``id IN (SELECT order_id ...)`` read every
#: indexed event on SQLite, in each pass and under the write lock: a pass cost more the older the chain.
CATCH_UP = select(Order.id).where(
    Order.status == projection.AWAITING_FUNDING,
    exists().where(ChainEvent.order_id == Order.id, ChainEvent.name == "OrderFunded"),
)


def _rows_to_catch_up(s: Session) -> list[str]:
    return list(s.scalars(CATCH_UP))


#: The statements a GET of an order runs, built once: building a select and its cache key on every call cost
#: more than running it (issue 8: about 55-90 µs of CPU a statement, against 60-70 µs to run a prebuilt one).
_ORDER_EVENTS = (
    select(ChainEvent)
    .where(ChainEvent.order_id == bindparam("order_id"))
    .order_by(ChainEvent.block_number, ChainEvent.log_index)
)
#: The timeline's reads select plain columns and run on the session's connection: loading ORM objects that a
#: view only reads cost about as much again as the query (issue 8: an order's events 111 -> 54 µs of CPU).
_EVENT_FACTS = (
    select(
        ChainEvent.name,
        ChainEvent.args,
        ChainEvent.order_id,
        ChainEvent.tx_hash,
        ChainEvent.block_number,
        ChainEvent.log_index,
        ChainEvent.block_time,
        ChainEvent.recorded_at,
    )
    .where(ChainEvent.order_id == bindparam("order_id"))
    .order_by(ChainEvent.block_number, ChainEvent.log_index)
)
_REQUESTED_TXS = select(Intent.tx_hash, Intent.request_id).where(
    Intent.order_id == bindparam("order_id"), Intent.tx_hash.is_not(None), Intent.request_id.is_not(None)
)
_TIMELINE_ENTRIES = select(
    TimelineEntry.kind, TimelineEntry.at, TimelineEntry.data, TimelineEntry.request_id, TimelineEntry.id
).where(TimelineEntry.order_id == bindparam("order_id"))


class EventFact(NamedTuple):
    """An indexed event as a view reads it: the columns of a :class:`ChainEvent` row that a timeline and an
    order's funding terms use, without the ORM object."""

    name: str
    args: dict[str, Any]
    order_id: str | None
    tx_hash: str
    block_number: int
    log_index: int
    block_time: int
    recorded_at: datetime | None


class _Event(Protocol):
    """What :func:`_belongs_to` reads of an event: a :class:`ChainEvent` row or an :class:`EventFact`."""

    @property
    def name(self) -> str: ...
    @property
    def args(self) -> dict[str, Any]: ...
    @property
    def order_id(self) -> str | None: ...


_E = TypeVar("_E", bound=_Event)


def _events_of(s: Session, order_id: str) -> Sequence[ChainEvent]:
    """The order's events, without those of another buyer's order under the same order id.

    The escrow v2 keys an order by its id and its buyer, so anyone may fund an order id of ours under another
    buyer (a "squatted" id that blocks nothing): its ``OrderFunded`` names another buyer and the buyer tag of
    its state words differs. The buyer is the row's, or else the first ``OrderFunded``'s.
    """
    events = s.scalars(_ORDER_EVENTS, {"order_id": order_id}).all()
    return _own_events(events, s.get(Order, order_id))


def _own_events(events: Sequence[_E], row: OrderColumns | None) -> Sequence[_E]:
    """``events`` (one order id's, in chain order) without those of another buyer's order: see
    :func:`_events_of`."""
    buyer = row.buyer if row is not None else _first_buyer(events)
    if buyer is None:
        return events
    return [e for e in events if _belongs_to(e, buyer)]


def _first_buyer(events: Sequence[_Event]) -> str | None:
    for e in events:
        if e.name == "OrderFunded":
            return str(e.args["terms"]["buyer"])
    return None


def _belongs_to(e: _Event, buyer: str) -> bool:
    """Whether an event is of ``buyer``'s order: ``OrderFunded`` by its terms, state events by the buyer tag;
    ``RulingRecorded`` by the order key it carries; events without any of these (attestations, ERC-1497
    evidence) are kept."""
    if e.name == "OrderFunded":
        return str(e.args["terms"]["buyer"]).lower() == buyer.lower()
    if "state" in e.args:
        return projection.as_int(e.args["state"]) >> 176 == buyer_tag(buyer)
    if e.name == "RulingRecorded" and e.order_id is not None:  # its orderId argument is the order key
        key = order_key(bytes.fromhex(e.order_id[2:]), buyer)
        return str(e.args["orderId"]).lower() == "0x" + key.hex()
    return True


def _merchant_for(s: Session, seller: str) -> Principal | None:
    """The first merchant registered with the seller's address (stored checksummed, as every principal's
    address is: a search of the address index, not a read of every principal for ``lower(address)``)."""
    return s.scalars(
        select(Principal)
        .where(Principal.role == "merchant", Principal.address == to_checksum_address(seller))
        .order_by(Principal.created_at, Principal.id)
        .limit(1)
    ).first()


#: Orders projected per set of look-ups (a bound on the statements' parameters).
PROJECT_SLICE = 500


def _project(s: Session, order_id: str, symbols: dict[str, str], report: IndexReport) -> None:
    """Replay one order from all its events onto its row and emit webhooks for transitions not yet emitted."""
    _project_all(s, [order_id], symbols, report)


def _project_all(s: Session, order_ids: Sequence[str], symbols: dict[str, str], report: IndexReport) -> None:
    """:func:`_project` for each of ``order_ids`` (a range's touched orders). Their events, their rows and
    which of their transitions were emitted already are read with one query each for all of them: per order
    that was three statements or more, each under the write lock (issue 8)."""
    for start in range(0, len(order_ids), PROJECT_SLICE):
        ids = list(dict.fromkeys(order_ids[start : start + PROJECT_SLICE]))
        events: dict[str, list[ChainEvent]] = {oid: [] for oid in ids}
        for e in s.scalars(
            select(ChainEvent)
            .where(ChainEvent.order_id.in_(ids))
            .order_by(ChainEvent.block_number, ChainEvent.log_index)
        ):
            events[str(e.order_id)].append(e)
        rows = {row.id: row for row in s.scalars(select(Order).where(Order.id.in_(ids)))}
        replays = {oid: projection.replay(_own_events(events[oid], rows.get(oid))) for oid in ids}
        wanted = [t.webhook_id for _result, transitions in replays.values() for t in transitions]
        emitted: set[str] = set()
        if wanted:
            emitted.update(s.scalars(select(WebhookEvent.id).where(WebhookEvent.id.in_(wanted))))
        for oid in ids:
            result, transitions = replays[oid]
            _project_one(s, oid, rows.get(oid), result, transitions, emitted, symbols, report)


def _project_one(
    s: Session,
    order_id: str,
    order: Order | None,
    result: projection.Projection,
    transitions: Sequence[projection.Transition],
    emitted: set[str],
    symbols: dict[str, str],
    report: IndexReport,
) -> None:
    """Put one order's replayed ``result`` on its row (made if the seller is our merchant) and emit its
    transitions not in ``emitted`` (which it extends)."""
    terms = result.terms
    if order is None:
        merchant = None if terms is None else _merchant_for(s, terms.seller)
        if terms is None or merchant is None:
            return  # nobody of ours to own it: its ChainEvents are kept all the same
        currency = symbols.get(to_checksum_address(terms.token), "")
        order = projection.new_order_row(order_id, merchant.id, terms, currency)
        s.add(order)
    elif terms is not None and not order.needs_review:
        mismatch = projection.terms_mismatch(order, terms)
        if mismatch:
            log.warning(
                "order %s was funded with other terms than its row: %s", order_id, ", ".join(mismatch)
            )
            order.needs_review = True
    if projection.apply(order, result):
        report.orders += 1
    s.flush()
    for t in transitions:
        event_id = t.webhook_id
        if event_id not in emitted:
            emitted.add(event_id)
            webhooks.emit(
                s,
                order.merchant_id,
                t.type,
                order_id,
                projection.webhook_data(order_id, order.currency, t),
                event_id,
                new=True,
            )
            report.webhooks += 1


# ------------------------------------------------------------------------------------------------ reorgs


def _find_fork(rt: Runtime, at: int) -> int | None:
    """None if block ``at`` is still the one indexed; else the block to roll back to (a common ancestor).

    Only ancestors within ``finality_depth`` of the cursor are looked for: a deeper fork halts (raises
    :class:`~app.errors.ChainHalted` after setting the halt flag), it is never rolled back on our own.
    """
    floor = at - rt.settings.finality_depth
    upper = at
    while True:
        with read_transaction(rt.db) as s:
            stored = s.execute(
                select(IndexedBlock.number, IndexedBlock.hash)
                .where(IndexedBlock.number <= upper, IndexedBlock.number >= floor)
                .order_by(IndexedBlock.number.desc())
                .limit(_WALK_BATCH)
            ).all()
        if not stored:
            if upper == at:
                return None  # nothing indexed yet (or only the deployment's parent): nothing to compare
            # nothing stored within the finality window matches: the escrow's whole indexed history is
            # inside the window (re-index from the deployment), or the fork is deeper than finality
            if rt.deployment_block - 1 >= floor:
                return rt.deployment_block - 1
            return _halt_deep(rt, at, floor)
        for number, block_hash in stored:
            if _still_there(rt, number, block_hash):
                return None if number == at else number
        upper = stored[-1][0] - 1


def _halt_deep(rt: Runtime, at: int, floor: int) -> int:
    chain_guard.require(rt, force=True)  # a replaced chain is a mismatch, not a reorg
    depth = rt.settings.finality_depth
    raise chain_guard.halt(
        rt,
        "deep_reorg",
        f"reorg deeper than the finality depth ({depth} blocks): no block the index stored between {floor} "
        f"and the cursor {at} is on the node's chain; the indexer does not rewind that far on its own "
        "(check the node; to let it rewind, raise TRADEGUARD_FINALITY_DEPTH and run "
        "`tradeguard chain resume`, or re-index into a new database)",
        cursor=at,
        finality_depth=depth,
        node_head=rt.chain.block_number(),
    )


def _roll_back(rt: Runtime, expected: int, ancestor: int, report: IndexReport) -> bool:
    """Forget everything above ``ancestor`` and replay the orders it touched."""
    with transaction(rt.db) as s:
        row = _lock_cursor(s)
        if int(row.value["block"]) != expected:
            return False
        order_ids = sorted(
            {
                oid
                for oid in s.scalars(select(ChainEvent.order_id).where(ChainEvent.block_number > ancestor))
                if oid
            }
        )
        before = {
            oid: {t.webhook_id: t for t in projection.replay(_events_of(s, oid))[1]} for oid in order_ids
        }
        removed = len(s.scalars(select(ChainEvent.id).where(ChainEvent.block_number > ancestor)).all())
        s.execute(delete(ChainEvent).where(ChainEvent.block_number > ancestor))
        s.execute(delete(IndexedBlock).where(IndexedBlock.number > ancestor))
        forget_audit_sums(s)
        s.expire_all()
        symbols = {a: t.symbol for a, t in rt.tokens.items()}
        for oid in order_ids:
            _project(s, oid, symbols, report)
            _announce_reorg(s, oid, before[oid], ancestor, report)
        kept = s.get(IndexedBlock, ancestor)
        _set_cursor(row, ancestor, None if kept is None else kept.hash)
        log.warning(
            "indexer: reorg below block %d; rolled back to block %d (%d events, %d orders)",
            expected,
            ancestor,
            removed,
            len(order_ids),
        )
        report.rolled_back_to = ancestor
        report.removed_events += removed
        report.reorgs += 1
    return True


def _announce_reorg(
    s: Session, order_id: str, before: dict[str, projection.Transition], ancestor: int, report: IndexReport
) -> None:
    """``order.reorged`` for an order whose already-emitted webhooks a reorg took back."""
    order = s.get(Order, order_id)
    if order is None:
        return
    now_ids = {t.webhook_id for t in projection.replay(_events_of(s, order_id))[1]}
    gone = [wid for wid in before if wid not in now_ids]
    emitted = (
        set(s.scalars(select(WebhookEvent.id).where(WebhookEvent.id.in_(gone))).all()) if gone else set()
    )
    withdrawn = [before[wid] for wid in gone if wid in emitted]
    if not withdrawn:
        return
    ids = sorted(t.webhook_id for t in withdrawn)
    event_id = projection.stable_id("reorged", order_id, *ids)
    if s.get(WebhookEvent, event_id) is not None:
        return
    data = {
        "order_id": order_id,
        "status": order.status,
        "common_ancestor_block": ancestor,
        "withdrawn": [
            {
                "event_id": t.webhook_id,
                "type": t.type,
                "tx_hash": t.event.tx_hash,
                "block_number": t.event.block_number,
            }
            for t in withdrawn
        ],
    }
    webhooks.emit(s, order.merchant_id, "order.reorged", order_id, data, event_id)
    report.webhooks += 1


# ---------------------------------------------------------------------------------------------- timeline


def order_events(session: Session, order_id: str) -> Sequence[ChainEvent]:
    """The order's indexed events in chain order, without those of another buyer's order under its id."""
    return _events_of(session, order_id)


def order_facts(session: Session, order: OrderColumns) -> Sequence[EventFact]:
    """:func:`order_events` of ``order`` (a row the session has read), as :class:`EventFact` tuples."""
    return _facts_of(session, order.id, order)


def _facts_of(session: Session, order_id: str, row: OrderColumns | None) -> Sequence[EventFact]:
    """:func:`_events_of` as :class:`EventFact` tuples, given the order's row (None: there is none)."""
    facts = [EventFact(*r) for r in session.connection().execute(_EVENT_FACTS, {"order_id": order_id})]
    return _own_events(facts, row)


def timeline(
    session: Session, order_id: str, events: Sequence[EventFact] | None = None
) -> list[dict[str, Any]]:
    """An order's on-chain facts (indexed events) and off-chain facts (timeline entries), in the order the
    service recorded them (one clock, the wall clock; a chain's block time may run ahead of it, as a dev
    chain's does after ``advance-time``, or behind it).

    Each item: ``source`` (``chain`` | ``service``), ``kind`` (event name or entry kind), ``at`` (RFC 3339
    UTC: the block time of a chain fact, the wall clock of a service fact), ``recorded_at`` (wall clock, when
    the service recorded it), ``request_id`` (the X-Request-Id of the request that wrote the fact, or whose
    intent sent the fact's transaction; None when no request did), ``tx_hash``, ``block_number``,
    ``log_index`` (None off chain) and ``data`` (key arguments, amounts as decimal strings). ERC-1497 mirror
    events (``Dispute``, ``Evidence``) are left out. ``events``: the order's :func:`order_events`, when the
    caller has read them already.
    """
    keyed: list[tuple[tuple[float, int, int, int, int], dict[str, Any]]] = []
    # the request whose intent sent a transaction, by its hash (the request id follows into the chain facts)
    requested: dict[str, str] = {}
    conn = session.connection()
    for tx, rid in conn.execute(_REQUESTED_TXS, {"order_id": order_id}):
        if tx is not None and rid is not None:  # the query's filter, for the type checker
            requested[tx] = rid
    if events is None:
        events = _facts_of(session, order_id, session.get(Order, order_id))
    for e in events:
        if e.name in projection.TIMELINE_DUPLICATES:
            continue
        # a row indexed before recorded_at existed sorts by its block time, as timelines used to
        recorded = e.recorded_at.timestamp() if e.recorded_at is not None else float(e.block_time)
        item = {
            "source": "chain",
            "kind": e.name,
            "at": rfc3339(e.block_time),
            "recorded_at": webhooks.seconds(e.recorded_at) if e.recorded_at is not None else None,
            "request_id": requested.get(e.tx_hash),
            "tx_hash": e.tx_hash,
            "block_number": e.block_number,
            "log_index": e.log_index,
            "data": projection.timeline_args(e.name, e.args),
        }
        keyed.append(((recorded, 0, e.block_number, e.log_index, 0), item))
    for kind, at, data, request_id, entry_id in conn.execute(_TIMELINE_ENTRIES, {"order_id": order_id}):
        item = {
            "source": "service",
            "kind": kind,
            "at": webhooks.seconds(at),
            "recorded_at": webhooks.seconds(at),
            "request_id": request_id,
            "tx_hash": None,
            "block_number": None,
            "log_index": None,
            "data": dict(data or {}),
        }
        keyed.append(((at.timestamp(), 1, 0, 0, entry_id), item))
    keyed.sort(key=lambda pair: pair[0])
    return [item for _, item in keyed]


__all__ = [
    "BLOCK_HISTORY",
    "CURSOR_KEY",
    "EventFact",
    "IndexReport",
    "cursor",
    "order_events",
    "order_facts",
    "sync",
    "timeline",
]
