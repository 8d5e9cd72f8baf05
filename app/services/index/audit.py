"""The service's own audit, run periodically by the keeper: ``tradeguard verify``'s checks against the
database instead of the API.

- **The projection against the indexed events**: each order's stored status agrees with its state word, the
  state word with the newest indexed event of the order, and a settled order's split with the event that
  settled it (``OrderReleased``, ``DisputeResolved``, ``OrderRefunded``). A row changed behind the
  service's back disagrees here.
- **The index against the chain**: per token, what the indexed events say the escrow holds (funded minus
  withdrawn) equals its balance on chain at the indexer's cursor block (one ``eth_call`` per token).

**A pass costs the same whatever the chain's age.** The per-token sums are kept (``kv['audit_sums']``) with
the id of the last event they include; a pass adds the events indexed since. Each pass checks the orders those
new events touched plus the next :data:`ORDER_SLICE` orders of a rolling sweep, and re-adds the next
:data:`EVENT_SLICE` kept events from the start of the index: when that re-sum reaches the kept sums' mark, the
two must agree (an old event row changed behind the service's back disagrees, check ``history``). So every
order and every event is read again within ``orders / ORDER_SLICE`` and ``events / EVENT_SLICE`` passes. A
reorg the indexer rolls back drops the kept sums (:func:`indexer.forget_audit_sums`); the next pass sums
from the start.

The result is kept (``kv['audit']``: when, how many disagreements, the first ones) for ``GET /metrics``
(``tradeguard_audit_disagreements``), and every disagreement is logged as an error. The database is read in
one read transaction; the node is asked after it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import ChainEvent, IndexedBlock, KeyValue, Order, utcnow
from app.db.session import read_transaction, transaction
from app.domain.money import SETTLING_EVENTS, settled_split
from app.domain.order_state import OrderState
from app.services.index import indexer
from app.services.runtime import Runtime

log = logging.getLogger(__name__)

AUDIT_KEY = "audit"
#: The kept per-token sums and the sweeps' positions (see the module docstring); the indexer drops them when
#: it rolls events back.
SUMS_KEY = indexer.AUDIT_SUMS_KEY
#: Disagreements kept in the stored result (all are logged).
KEPT = 20
#: Orders of the rolling sweep checked per pass, besides those touched since the last pass.
ORDER_SLICE = 2_000
#: Kept events re-added per pass to check the kept sums.
EVENT_SLICE = 20_000
#: Events whose amounts the sums follow.
_SUMMED = ("OrderFunded", "Withdrawn")


@dataclass
class AuditResult:
    orders: int = 0
    tokens: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)

    def find(self, check: str, detail: str, **data: Any) -> None:
        self.findings.append({"check": check, "detail": detail, **data})


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


@dataclass
class _Sums:
    """Per-token amounts funded into and withdrawn from the escrow, over the events up to ``through`` (an
    event id)."""

    through: int = 0
    funded: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    withdrawn: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, ev: ChainEvent) -> None:
        if ev.name == "Withdrawn":
            self.withdrawn[to_checksum_address(ev.args["token"])] += _int(ev.args["amount"])
        elif ev.name == "OrderFunded":
            terms = ev.args["terms"]
            self.funded[to_checksum_address(terms["token"])] += _int(terms["amount"])
        self.through = max(self.through, ev.id)

    def dump(self) -> dict[str, Any]:
        return {
            "through": self.through,
            "funded": {k: str(v) for k, v in self.funded.items() if v},
            "withdrawn": {k: str(v) for k, v in self.withdrawn.items() if v},
        }

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> _Sums:
        sums = cls()
        if data:
            sums.through = int(data["through"])
            sums.funded.update({k: int(v) for k, v in data["funded"].items()})
            sums.withdrawn.update({k: int(v) for k, v in data["withdrawn"].items()})
        return sums

    def totals(self) -> tuple[dict[str, int], dict[str, int]]:
        return {k: v for k, v in self.funded.items() if v}, {k: v for k, v in self.withdrawn.items() if v}


def run(rt: Runtime) -> AuditResult:
    """One audit pass; stores and logs its result."""
    result = AuditResult()
    with read_transaction(rt.db) as s:
        if s.get_bind().dialect.name == "postgresql":
            # one snapshot for every statement (READ COMMITTED, the default, takes one per statement): the
            # cursor, the newest event id and the events summed must agree, or the kept sums would skip events
            # committed between two statements
            s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        at = indexer.cursor(s)
        top = s.scalar(select(func.max(ChainEvent.id))) or 0
        at_hash = None if at is None else s.scalar(select(IndexedBlock.hash).where(IndexedBlock.number == at))
        row = s.get(KeyValue, SUMS_KEY)
        kept = dict(row.value) if row is not None else {}
        sums = _Sums.load(kept.get("sums"))
        mark = sums.through
        resum = _Sums.load(kept.get("resum"))
        # the kept sums' own check: the next slice of kept events, added up again from the start
        for ev in s.scalars(
            select(ChainEvent)
            .where(ChainEvent.id > resum.through, ChainEvent.id <= mark, ChainEvent.name.in_(_SUMMED))
            .order_by(ChainEvent.id)
            .limit(EVENT_SLICE)
        ):
            resum.add(ev)
        more = s.scalar(
            select(ChainEvent.id)
            .where(ChainEvent.id > resum.through, ChainEvent.id <= mark, ChainEvent.name.in_(_SUMMED))
            .limit(1)
        )
        if more is None:
            if resum.totals() != sums.totals():
                result.find(
                    "history",
                    f"the indexed events up to event {mark} no longer add up to what they did when audited",
                    through=mark,
                    now=_Sums.dump(resum),
                    then=_Sums.dump(sums),
                )
            resum = _Sums()
        # the events indexed since the last pass: into the sums, and their orders checked
        for ev in s.scalars(
            select(ChainEvent)
            .where(ChainEvent.id > mark, ChainEvent.id <= top, ChainEvent.name.in_(_SUMMED))
            .order_by(ChainEvent.id)
        ):
            sums.add(ev)
        sums.through = max(sums.through, top)
        touched = {
            oid
            for oid in s.scalars(
                select(ChainEvent.order_id).where(ChainEvent.id > mark, ChainEvent.id <= top)
            )
            if oid is not None
        }
        after = str(kept.get("orders_after", ""))
        sweep = _orders_after(s, after, ORDER_SLICE)
        if len(sweep) < ORDER_SLICE and after:  # the end: the sweep goes on from the first order
            sweep += _orders_after(s, "", ORDER_SLICE - len(sweep))
        after = sweep[-1] if sweep else ""
        _check_orders(s, result, touched | set(sweep))
    funded, withdrawn = sums.totals()
    if at is not None:
        for token in sorted(set(funded) | set(withdrawn)):
            result.tokens += 1
            erc20 = rt.chain.contract("TestUSD", token)
            balance = int(erc20.functions.balanceOf(rt.escrow.address).call(block_identifier=at))
            expected = funded.get(token, 0) - withdrawn.get(token, 0)
            if balance != expected:
                result.find(
                    "conservation",
                    f"the escrow holds {balance} of {token} at block {at}; the index says {expected}",
                    token=token,
                    block=at,
                    balance=str(balance),
                    expected=str(expected),
                )
    state = {"sums": sums.dump(), "resum": resum.dump(), "orders_after": after}
    _keep(rt, result, state, at, at_hash)
    return result


def _orders_after(s: Session, after: str, limit: int) -> list[str]:
    """The next ``limit`` order ids after ``after`` (orders with a state word: on chain)."""
    return list(
        s.scalars(
            select(Order.id)
            .where(Order.id > after, Order.state_word.is_not(None))
            .order_by(Order.id)
            .limit(limit)
        )
    )


def _check_orders(s: Session, result: AuditResult, ids: set[str]) -> None:
    """Checks the orders ``ids`` (those with a state word) against their indexed events."""
    todo = sorted(ids)
    for i in range(0, len(todo), 500):
        chunk = todo[i : i + 500]
        latest: dict[str, ChainEvent] = {}
        settled: dict[str, ChainEvent] = {}
        for ev in s.scalars(
            select(ChainEvent)
            .where(ChainEvent.order_id.in_(chunk))
            .order_by(ChainEvent.block_number, ChainEvent.log_index)
        ):
            assert ev.order_id is not None
            if "state" in ev.args:
                latest[ev.order_id] = ev
            if ev.name in SETTLING_EVENTS:
                settled[ev.order_id] = ev
        for order in s.scalars(select(Order).where(Order.id.in_(chunk), Order.state_word.is_not(None))):
            result.orders += 1
            _check_order(result, order, latest.get(order.id), settled.get(order.id))


def _check_order(
    result: AuditResult, order: Order, latest: ChainEvent | None, settled: ChainEvent | None
) -> None:
    word = int(order.state_word or 0)
    status = OrderState.unpack(word).status.name.lower()
    if order.status != status:
        result.find(
            "status",
            f"order {order.id} is stored {order.status}; its state word says {status}",
            order_id=order.id,
        )
    if latest is not None and _int(latest.args["state"]) != word:
        result.find(
            "state_word", f"order {order.id}'s state word is not its newest event's", order_id=order.id
        )
    if settled is None:
        return
    want = settled_split(settled.name, settled.args, order.amount)
    stored = {k: _int(getattr(order, k)) for k in want}
    if stored != want:
        result.find(
            "split",
            f"order {order.id}'s stored split {stored} is not its {settled.name} event's {want}",
            order_id=order.id,
        )


def _keep(
    rt: Runtime, result: AuditResult, state: dict[str, Any], at: int | None, at_hash: str | None
) -> None:
    for f in result.findings:
        log.error("AUDIT DISAGREEMENT %s: %s", f["check"], f["detail"])
    value = {
        "at": utcnow().isoformat(),
        "orders": result.orders,
        "tokens": result.tokens,
        "disagreements": len(result.findings),
        "findings": result.findings[:KEPT],
    }
    with transaction(rt.db) as s:
        _put(s, AUDIT_KEY, value)
        # The sums are kept only if no reorg rolled the index back since they were read: the cursor's block
        # is still the one that was read (a roll-back deletes it; the kept sums were dropped then too).
        same = (
            at_hash is not None
            and s.scalar(select(IndexedBlock.hash).where(IndexedBlock.number == at)) == at_hash
        )
        if same or at is None:
            _put(s, SUMS_KEY, state)
        else:
            indexer.forget_audit_sums(s)


def _put(s: Session, key: str, value: dict[str, Any]) -> None:
    row = s.get(KeyValue, key)
    if row is None:
        s.add(KeyValue(key=key, value=value))
    else:
        row.value = value


def last(rt: Runtime) -> dict[str, Any] | None:
    """The stored result of the last audit (None before the first)."""
    with read_transaction(rt.db) as s:
        row = s.get(KeyValue, AUDIT_KEY)
        return None if row is None else dict(row.value)


__all__ = ["AUDIT_KEY", "SUMS_KEY", "AuditResult", "last", "run"]
