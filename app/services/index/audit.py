"""The service's own audit, run periodically by the keeper: ``tradeguard verify``'s checks against the
database instead of the API.

- **The projection against the indexed events**: each order's stored status agrees with its state word, the
  state word with the newest indexed event of the order, and a settled order's split with the event that
  settled it (``OrderReleased``, ``DisputeResolved``, ``OrderRefunded``). A row changed behind the
  service's back disagrees here.
- **The index against the chain**: per token, what the indexed events say the escrow holds (funded minus
  withdrawn) equals its balance on chain at the indexer's cursor block (one ``eth_call`` per token).

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
from sqlalchemy import select

from app.db.models import ChainEvent, KeyValue, Order, utcnow
from app.db.session import read_transaction, transaction
from app.domain.money import SETTLING_EVENTS, settled_split
from app.domain.order_state import OrderState
from app.services.index import indexer
from app.services.runtime import Runtime

log = logging.getLogger(__name__)

AUDIT_KEY = "audit"
#: Disagreements kept in the stored result (all are logged).
KEPT = 20


@dataclass
class AuditResult:
    orders: int = 0
    tokens: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)

    def find(self, check: str, detail: str, **data: Any) -> None:
        self.findings.append({"check": check, "detail": detail, **data})


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def run(rt: Runtime) -> AuditResult:
    """One audit pass; stores and logs its result."""
    result = AuditResult()
    funded: dict[str, int] = defaultdict(int)
    withdrawn: dict[str, int] = defaultdict(int)
    with read_transaction(rt.db) as s:
        at = indexer.cursor(s)
        latest: dict[str, ChainEvent] = {}
        settled: dict[str, ChainEvent] = {}
        for ev in s.scalars(select(ChainEvent).order_by(ChainEvent.block_number, ChainEvent.log_index)):
            if ev.name == "Withdrawn":
                withdrawn[to_checksum_address(ev.args["token"])] += _int(ev.args["amount"])
            if ev.order_id is None:
                continue
            if ev.name == "OrderFunded":
                funded[to_checksum_address(ev.args["terms"]["token"])] += _int(ev.args["terms"]["amount"])
            if "state" in ev.args:
                latest[ev.order_id] = ev
            if ev.name in SETTLING_EVENTS:
                settled[ev.order_id] = ev
        for order in s.scalars(select(Order).where(Order.state_word.is_not(None))):
            result.orders += 1
            _check_order(result, order, latest.get(order.id), settled.get(order.id))
    if at is not None:
        for token in sorted(set(funded) | set(withdrawn)):
            result.tokens += 1
            erc20 = rt.chain.contract("TestUSD", token)
            balance = int(erc20.functions.balanceOf(rt.escrow.address).call(block_identifier=at))
            expected = funded[token] - withdrawn[token]
            if balance != expected:
                result.find(
                    "conservation",
                    f"the escrow holds {balance} of {token} at block {at}; the index says {expected}",
                    token=token,
                    block=at,
                    balance=str(balance),
                    expected=str(expected),
                )
    _keep(rt, result)
    return result


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


def _keep(rt: Runtime, result: AuditResult) -> None:
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
        row = s.get(KeyValue, AUDIT_KEY)
        if row is None:
            s.add(KeyValue(key=AUDIT_KEY, value=value))
        else:
            row.value = value


def last(rt: Runtime) -> dict[str, Any] | None:
    """The stored result of the last audit (None before the first)."""
    with read_transaction(rt.db) as s:
        row = s.get(KeyValue, AUDIT_KEY)
        return None if row is None else dict(row.value)


__all__ = ["AUDIT_KEY", "AuditResult", "last", "run"]
