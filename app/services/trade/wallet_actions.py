"""Actions a party takes from its own wallet, for which SPEC §4 has no signed message: the API answers with
the exact transaction to send (to, data, value, chain id, gas), checked against the chain first, and the
indexer picks the result up like any other event.

- a seller's refund of a funded order (``refundBySeller``);
- a buyer's opening of a dispute before the order's ERC-792 arbitrator, paying its arbitration cost
  (``submitBuyerDecision`` with ``value``), and anyone's ``executeRuling`` once that arbitrator has ruled
  (SPEC §4.1; see :mod:`app.services.trade.arbitration`);
- a regulator's freeze and unfreeze of an order (``freeze``, ``unfreeze``);
- an account's withdrawal of its credits (``withdraw``), and its unpaid credits per token (``creditOf``);
- the escrow admin's registration and removal of an oracle or arbitrator principal (``addOracle`` …), and
  that principal's role on chain (registered, active from when).

Nothing here writes to the database or holds a transaction open while it asks the node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import func, select
from web3.contract.contract import ContractFunction

from app.chain import speedups
from app.chain.escrow import Order as ChainOrder
from app.chain.escrow import Terms
from app.db.models import ChainEvent, Order, Principal
from app.db.session import read_transaction
from app.domain.encoding import hex32, rfc3339
from app.domain.money import ruling_share_bps
from app.domain.order_state import Decision
from app.errors import DomainError, InvalidInput, NotFound
from app.services import chain_guard
from app.services.index import indexer
from app.services.runtime import Runtime
from app.services.trade import arbitration, orders

#: Roles whose address the escrow must know, and the admin functions that add and remove them.
ONCHAIN_ROLES = {"oracle": ("addOracle", "removeOracle"), "arbitrator": ("addArbitrator", "removeArbitrator")}


@dataclass(frozen=True)
class Prepared:
    """A transaction for a party's own wallet to sign and send."""

    sender: str
    fn: ContractFunction
    gas: int
    chain_id: int
    what: str
    #: native currency sent with it, in wei (an ERC-792 dispute's arbitration cost; else zero)
    value: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "description": self.what,
            "transaction": {
                "from": self.sender,
                "to": self.fn.address,
                "data": speedups.calldata(self.fn),
                "value": hex(self.value),
                "chainId": self.chain_id,
                "gas": hex(self.gas),
            },
        }


def prepare(rt: Runtime, fn: ContractFunction, sender: str, what: str, *, value: int = 0) -> Prepared:
    """Estimate ``fn`` from ``sender`` (sending ``value`` wei): a call the escrow would refuse is its decoded
    error (409/422) now, not a failed transaction in the party's wallet later."""
    chain_guard.require(rt)
    held = rt.chain.balance(sender) if value else 0
    if held < value:
        raise DomainError(
            "insufficient_funds",
            f"{to_checksum_address(sender)} holds {held} wei of the chain's currency; "
            f"this transaction sends {value} wei (and needs gas on top)",
            required=str(value),
        )
    gas = rt.chain.estimate_from(fn, sender, value=value)
    return Prepared(to_checksum_address(sender), fn, gas, rt.chain.chain_id, what, value)


def order_ref(rt: Runtime, viewer: Principal, oid: str) -> ChainOrder:
    """The order's on-chain reference (``orderId``, ``Terms``, state word) from the index; a 409 when it
    is not funded on chain (yet)."""
    with read_transaction(rt.db) as s:
        order = orders.get_visible(s, viewer, oid)
        funded = s.scalars(
            select(ChainEvent.args)
            .where(ChainEvent.order_id == order.id, ChainEvent.name == "OrderFunded")
            .order_by(ChainEvent.block_number.desc())
            .limit(1)
        ).first()
    if funded is None or order.state_word is None:
        raise DomainError("invalid_state", f"order {oid} is {order.status}: not funded on chain yet")
    terms = {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in funded["terms"].items()}
    return ChainOrder(bytes.fromhex(order.id[2:]), Terms.from_event(terms), int(order.state_word))


def seller_refund(rt: Runtime, seller: Principal, oid: str) -> dict[str, Any]:
    """The seller's ``refundBySeller`` for one of its funded orders (the buyer gets the whole amount)."""
    orders.require_role(seller, "refund its orders", "merchant")
    ref = order_ref(rt, seller, oid)
    if to_checksum_address(ref.terms.seller) != seller.address:
        raise NotFound("order", oid)
    fn = rt.escrow.contract.functions.refundBySeller(*ref.ref())
    return prepare(rt, fn, str(seller.address), f"refund order {oid} in full to its buyer").public()


#: The longest freeze one transaction asks for (the escrow bounds it too).
MAX_FREEZE_SECONDS = 90 * 86_400


def freeze(rt: Runtime, regulator: Principal, oid: str, seconds: int, reason: str) -> dict[str, Any]:
    """The regulator's ``freeze`` of an open order for ``seconds`` (its timers stop; nothing moves), with
    the SHA-256 of ``reason`` anchored as the reason hash."""
    orders.require_role(regulator, "freeze orders", "regulator")
    ref = order_ref(rt, regulator, oid)
    reason_hash = hashlib.sha256(reason.encode()).digest()
    fn = rt.escrow.contract.functions.freeze(*ref.ref(), seconds, reason_hash)
    what = f"freeze order {oid} for {seconds} s (reason sha256 0x{reason_hash.hex()})"
    return prepare(rt, fn, _address(regulator), what).public()


def unfreeze(rt: Runtime, regulator: Principal, oid: str) -> dict[str, Any]:
    """The regulator's ``unfreeze`` of a frozen order (its timers resume)."""
    orders.require_role(regulator, "unfreeze orders", "regulator")
    ref = order_ref(rt, regulator, oid)
    fn = rt.escrow.contract.functions.unfreeze(*ref.ref())
    return prepare(rt, fn, _address(regulator), f"unfreeze order {oid}").public()


def _external(rt: Runtime, viewer: Principal, oid: str) -> Order:
    with read_transaction(rt.db) as s:
        order = orders.get_visible(s, viewer, oid)
    if not order.arbitrator:
        raise DomainError(
            "platform_arbitration_conflict",
            f"order {oid} is arbitrated by the platform: open its dispute with a signed BuyerDecision "
            "(POST /v1/orders/{id}/disputes), which the relayer sends",
        )
    return order


def dispute_transaction(rt: Runtime, buyer: Principal, oid: str, evidence_hash: bytes) -> dict[str, Any]:
    """The buyer's ``submitBuyerDecision(OPEN_DISPUTE)`` for an order with an ERC-792 arbitrator, paying the
    arbitrator's current ``arbitrationCost`` from its own wallet (the escrow forwards all of it to
    ``createDispute``, keeps none and refunds none). Estimated from the buyer first: an order that cannot be
    disputed now is the escrow's decoded error (409/422)."""
    orders.require_role(buyer, "open disputes", "buyer")
    order = _external(rt, buyer, oid)
    ref = order_ref(rt, buyer, oid)
    assert order.arbitrator is not None
    extra = order.arbitrator_extra_data or b""
    cost = arbitration.arbitration_cost(rt, order.arbitrator, extra)
    fn = rt.escrow.buyer_decision_call(ref, Decision.OPEN_DISPUTE, evidence_hash, 0, b"", extra)
    what = (
        f"open a dispute on order {oid} before ERC-792 arbitrator {order.arbitrator}, paying its arbitration "
        f"cost of {cost} wei (the escrow forwards it to createDispute; it is not refunded)"
    )
    prepared = prepare(rt, fn, str(buyer.address), what, value=cost)
    out = prepared.public()
    out["arbitration_cost"] = str(cost)
    out["arbitrator"] = order.arbitrator
    out["evidence_hash"] = hex32(evidence_hash)
    return out


def execute_ruling_transaction(rt: Runtime, who: Principal, oid: str) -> dict[str, Any]:
    """``executeRuling`` for a party's own wallet once the order's ERC-792 arbitrator has ruled (anyone may
    send it; the keeper does on its own). Before the ruling, the escrow's ``NoRuling`` (409)."""
    order = _external(rt, who, oid)
    if not who.address:
        raise DomainError("no_address", "this principal has no address on chain")
    ref = order_ref(rt, who, oid)
    fn = rt.escrow.execute_ruling_call(ref)
    ruling = order.ruling
    what = f"settle order {oid} by the ruling of ERC-792 arbitrator {order.arbitrator}"
    if ruling is not None:
        what += f" (ruling {ruling}: {ruling_share_bps(ruling)} bps to the buyer)"
    return prepare(rt, fn, str(who.address), what).public()


def credits(rt: Runtime, who: Principal) -> dict[str, Any]:
    """The caller's unpaid credits in every settlement token (none for a principal without an address)."""
    if not who.address:
        return {"address": None, "items": []}
    address = _address(who)
    fns = rt.escrow.contract.functions
    items = [
        {
            "currency": t.symbol,
            "token": t.address,
            "amount": str(int(rt.chain.call(fns.creditOf(t.address, address)))),
        }
        for t in rt.tokens.values()
    ]
    return {"address": address, "items": items}


def withdrawal(
    rt: Runtime, who: Principal, currency: str, amount: int | None, to: str | None
) -> dict[str, Any]:
    """The caller's ``withdraw`` of ``amount`` (all of it by default) of its credit in ``currency``."""
    address = _address(who)
    token = rt.token_by_symbol(currency)
    if token is None:
        raise InvalidInput(
            "unknown_currency",
            f"currency {currency!r} is not a settlement token here",
            errors=[{"field": "currency", "message": "unknown"}],
        )
    owed = int(rt.chain.call(rt.escrow.contract.functions.creditOf(token.address, address)))
    amount = owed if amount is None else amount
    if amount == 0 or amount > owed:
        raise DomainError(
            "insufficient_credit",
            f"{address} is owed {owed} of {currency}; cannot withdraw {amount}",
            owed=str(owed),
        )
    target = to_checksum_address(to) if to else address
    fn = rt.escrow.contract.functions.withdraw(token.address, target, amount)
    return prepare(rt, fn, address, f"withdraw {amount} {currency} of credit to {target}").public()


#: How a transaction a party sent from its own wallet stands, as :func:`transaction_status` answers.
TX_STATES = ("pending", "reverted", "mined", "indexed")


def transaction_status(rt: Runtime, tx_hash: str) -> dict[str, Any]:
    """Where a transaction sent from a party's own wallet stands: ``pending`` (not mined), ``reverted``,
    ``mined`` (the indexer has not reached its block yet) or ``indexed`` (the index, and so every order and
    list, shows its effect), with the escrow events the index holds for it. Its receipt is asked of the node
    first, outside any transaction; then one read of the index."""
    receipt = rt.chain.receipt(tx_hash)
    if receipt is None:
        return {"tx_hash": tx_hash, "status": "pending", "block_number": None, "events": []}
    block = int(receipt["blockNumber"])
    if int(receipt["status"]) != 1:
        return {"tx_hash": tx_hash, "status": "reverted", "block_number": block, "events": []}
    with read_transaction(rt.db) as s:
        at = indexer.cursor(s)
        events = [
            {"name": name, "order_id": order_id}
            for name, order_id in s.execute(
                select(ChainEvent.name, ChainEvent.order_id)
                .where(ChainEvent.tx_hash == tx_hash)
                .order_by(ChainEvent.log_index)
            )
        ]
    status = "indexed" if at is not None and at >= block else "mined"
    return {"tx_hash": tx_hash, "status": status, "block_number": block, "events": events}


def withdrawals(rt: Runtime, who: Principal, limit: int = 20) -> list[dict[str, Any]]:
    """The caller's latest withdrawals as indexed (``Withdrawn`` events of its address), newest first."""
    if not who.address:
        return []
    symbols = {t.address.lower(): t.symbol for t in rt.tokens.values()}
    with read_transaction(rt.db) as s:
        rows = list(
            s.scalars(
                select(ChainEvent)
                .where(
                    ChainEvent.name == "Withdrawn",
                    func.lower(ChainEvent.args["account"].as_string()) == who.address.lower(),
                )
                .order_by(ChainEvent.block_number.desc(), ChainEvent.log_index.desc())
                .limit(limit)
            )
        )
    return [
        {
            "currency": symbols.get(str(e.args["token"]).lower(), ""),
            "token": e.args["token"],
            "amount": str(e.args["amount"]),
            "to": e.args["to"],
            "tx_hash": e.tx_hash,
            "block_number": e.block_number,
            "at": rfc3339(e.block_time),
        }
        for e in rows
    ]


def _address(who: Principal) -> str:
    if not who.address:
        raise DomainError("no_address", "this principal has no address on chain")
    return str(to_checksum_address(who.address))


def _onchain_principal(rt: Runtime, principal_id: str) -> Principal:
    with read_transaction(rt.db) as s:
        found = s.get(Principal, principal_id)
    if found is None:
        raise NotFound("principal", principal_id)
    if found.role not in ONCHAIN_ROLES or not found.address:
        raise DomainError(
            "no_onchain_role",
            f"a {found.role} has no role on the escrow (only oracles and arbitrators are registered there)",
        )
    return found


def role_status(rt: Runtime, principal_id: str) -> dict[str, Any]:
    """Whether the principal's address holds its role on the escrow now, and from when it counts."""
    p = _onchain_principal(rt, principal_id)
    fns = rt.escrow.contract.functions
    address = to_checksum_address(str(p.address))
    now = rt.chain.now(rt.settings.head_cache_seconds)
    if p.role == "oracle":
        info = rt.chain.call(fns.oracleInfo(address))
        index, active, active_from = int(info[0]), bool(info[1]), int(info[2])
        registered = active
    else:
        active_from = int(rt.chain.call(fns.arbitratorActiveFrom(address)))
        registered, index = active_from > 0, None
    return {
        "principal_id": p.id,
        "role": p.role,
        "address": address,
        "registered": registered,
        "active": registered and now >= active_from,
        "active_from": rfc3339(active_from) if registered else None,
        **({"oracle_index": index} if p.role == "oracle" and registered else {}),
    }


def role_change(rt: Runtime, principal_id: str, add: bool, admin_address: str | None) -> dict[str, Any]:
    """The escrow admin's transaction that registers (or removes) the principal's address in its role.

    ``admin_address`` is the wallet holding the escrow's admin role (on a dev chain: the deployer's)."""
    p = _onchain_principal(rt, principal_id)
    sender = admin_address or (rt.dev_accounts["deployer"].address if "deployer" in rt.dev_accounts else None)
    if sender is None:
        raise InvalidInput(
            "admin_address_required",
            "name the wallet that holds the escrow's admin role (admin_address)",
            errors=[{"field": "admin_address", "message": "required on this chain"}],
        )
    add_fn, remove_fn = ONCHAIN_ROLES[p.role]
    fn = getattr(rt.escrow.contract.functions, add_fn if add else remove_fn)(
        to_checksum_address(str(p.address))
    )
    what = f"{'register' if add else 'remove'} {p.role} {p.address} on the escrow"
    if add:
        delay = int(rt.chain.call(rt.escrow.contract.functions.ROLE_DELAY()))
        what += f" (it counts once ROLE_DELAY, {delay} s, has passed)"
    return prepare(rt, fn, to_checksum_address(sender), what).public()


__all__ = [
    "TX_STATES",
    "credits",
    "dispute_transaction",
    "execute_ruling_transaction",
    "freeze",
    "order_ref",
    "prepare",
    "role_change",
    "role_status",
    "seller_refund",
    "transaction_status",
    "unfreeze",
    "withdrawal",
    "withdrawals",
]
