"""``tradeguard verify``: an audit anyone can run, from the chain's logs alone.

It trusts nothing of ours but the escrow's address: every order is rebuilt from the escrow's events (terms
from ``OrderFunded``, the state word from the newest event, the split from ``OrderReleased`` /
``DisputeResolved`` / ``OrderRefunded``), and then

- **conservation**: per token, the escrow's balance equals what was funded minus what was withdrawn (= the
  open orders' amounts plus the unpaid credits), and every account's credit on chain (``creditOf``) equals the
  credits the events gave it minus its withdrawals;
- **evidence** (``--evidence-dir DIR``): every file under ``DIR/<order id>/`` hashes (SHA-256) to an evidence
  hash anchored on chain for that order;
- **the service** (``--api URL --api-key KEY``, an admin key): every order the API reports has the status and,
  once final, the split the chain has to the unit; every evidence file it serves hashes to an anchored hash;
  and every order funded on chain is known to it.

The report is JSON; any disagreement is a finding and a non-zero exit. This module imports the chain client
and the domain only, never the database layer (tests/client/test_verify.py checks), so a party who distrusts
the service can run it against any node.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_utils import to_checksum_address

from app.chain.abi import Event
from app.chain.client import ChainClient
from app.domain.money import SETTLING_EVENTS, settled_split
from app.domain.order_state import OrderState, Status

ZERO = "0x" + "00" * 32
#: Items asked per page of the service's lists (every list answers at least this many).
PAGE = 50
#: Events whose ``evidenceHash`` anchors a file for the order.
EVIDENCE_EVENTS = ("EvidenceSubmitted", "DisputeOpened", "ReceiptConfirmed")


@dataclass
class ChainOrder:
    """One order as the escrow's events tell it."""

    order_id: str
    token: str
    buyer: str
    seller: str
    tax_recipient: str
    amount: int
    state: int = 0
    split: dict[str, int] | None = None
    evidence: set[str] = field(default_factory=set)

    @property
    def status(self) -> Status:
        return OrderState.unpack(self.state).status


@dataclass
class Ledger:
    """Everything rebuilt from the logs: orders, funded and withdrawn totals and credits per token."""

    orders: dict[str, ChainOrder] = field(default_factory=dict)
    funded: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    withdrawn: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    credits: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    treasury: str | None = None
    events: int = 0


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


def rebuild(events: Iterable[Event], escrow: str) -> Ledger:
    """Replay the escrow's events in chain order."""
    led = Ledger()
    for ev in events:
        if ev.address != escrow:
            continue
        led.events += 1
        a = ev.args
        if ev.name == "TreasurySet":
            led.treasury = to_checksum_address(a["treasury"])
            continue
        if ev.name == "Withdrawn":
            token, account = to_checksum_address(a["token"]), to_checksum_address(a["account"])
            led.withdrawn[token] += int(a["amount"])
            led.credits[(token, account)] -= int(a["amount"])
            continue
        if "orderId" not in a:
            continue
        oid = _hex(a["orderId"])
        if ev.name == "OrderFunded":
            t = a["terms"]
            order = ChainOrder(
                oid,
                to_checksum_address(t["token"]),
                to_checksum_address(t["buyer"]),
                to_checksum_address(t["seller"]),
                to_checksum_address(t["taxRecipient"]),
                int(t["amount"]),
                int(a["state"]),
            )
            led.orders[oid] = order
            led.funded[order.token] += order.amount
            continue
        known = led.orders.get(oid)
        if known is None:
            continue  # an OrderSkipped for an order never funded, say
        order = known
        if "state" in a:
            order.state = int(a["state"])
        if ev.name in EVIDENCE_EVENTS and _hex(a["evidenceHash"]) != ZERO:
            order.evidence.add(_hex(a["evidenceHash"]))
        if ev.name in SETTLING_EVENTS:
            split = order.split = settled_split(ev.name, a, order.amount)
            if led.treasury is not None:
                led.credits[(order.token, led.treasury)] += split["commission"]
            led.credits[(order.token, order.tax_recipient)] += split["tax"]
            led.credits[(order.token, order.seller)] += split["seller_net"]
            led.credits[(order.token, order.buyer)] += split["buyer_refund"]
    return led


@dataclass
class Audit:
    """A verify run: the ledger, what was checked, and every disagreement found."""

    chain_id: int
    escrow: str
    from_block: int
    to_block: int
    ledger: Ledger
    checked: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    findings: list[dict[str, Any]] = field(default_factory=list)

    def find(self, check: str, detail: str, **data: Any) -> None:
        self.findings.append({"check": check, "detail": detail, **data})

    def report(self) -> dict[str, Any]:
        by_status: dict[str, int] = defaultdict(int)
        for o in self.ledger.orders.values():
            by_status[o.status.name.lower()] += 1
        return {
            "ok": not self.findings,
            "chain_id": self.chain_id,
            "escrow": self.escrow,
            "blocks": [self.from_block, self.to_block],
            "events": self.ledger.events,
            "orders": len(self.ledger.orders),
            "by_status": dict(sorted(by_status.items())),
            "checked": dict(sorted(self.checked.items())),
            "findings": self.findings,
        }


def conservation(audit: Audit, chain: ChainClient) -> None:
    """The escrow's balance per token, and every account's unpaid credit, against the events."""
    escrow = chain.contract("TradeGuardEscrow", audit.escrow)
    led = audit.ledger
    for token in sorted(set(led.funded) | set(led.withdrawn)):
        erc20 = chain.contract("TestUSD", token)  # any ERC-20 reads the same
        balance = int(chain.call(erc20.functions.balanceOf(audit.escrow)))
        expected = led.funded[token] - led.withdrawn[token]
        open_amounts = sum(
            o.amount for o in led.orders.values() if o.token == token and not o.status.is_final
        )
        unpaid = sum(v for (t, _a), v in led.credits.items() if t == token)
        audit.checked["token_balances"] += 1
        if balance != expected or expected != open_amounts + unpaid:
            audit.find(
                "conservation",
                f"the escrow holds {balance} of {token}; the events say {expected} "
                f"(open orders {open_amounts} + unpaid credits {unpaid})",
                token=token,
                balance=str(balance),
                expected=str(expected),
            )
    for (token, account), owed in sorted(led.credits.items()):
        on_chain = int(chain.call(escrow.functions.creditOf(token, account)))
        audit.checked["credits"] += 1
        if on_chain != owed:
            audit.find(
                "credits",
                f"{account} is owed {on_chain} of {token} on chain; the events say {owed}",
                token=token,
                account=account,
                on_chain=str(on_chain),
                expected=str(owed),
            )


def evidence_dir(audit: Audit, root: Path) -> None:
    """Every file under ``root/<order id>/`` hashes to an evidence hash anchored for that order."""
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        oid = folder.name.lower()
        order = audit.ledger.orders.get(oid)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest = "0x" + hashlib.sha256(path.read_bytes()).hexdigest()
            audit.checked["evidence_files"] += 1
            if order is None or digest not in order.evidence:
                audit.find(
                    "evidence_file",
                    f"{path} hashes to {digest}, which is not anchored on chain for order {oid}",
                    order_id=oid,
                    file=str(path),
                    sha256=digest,
                )


def compare_api(audit: Audit, client: httpx.Client) -> None:
    """The service's view of every order (status, final split, evidence files) against the chain's."""
    seen: set[str] = set()
    for item in _pages(client, "/v1/orders"):
        seen.add(item["id"].lower())
        _compare_order(audit, client, item)
    for oid in sorted(set(audit.ledger.orders) - seen):
        audit.find(
            "api_missing", f"order {oid} is funded on chain but the service does not list it", order_id=oid
        )


def _compare_order(audit: Audit, client: httpx.Client, item: dict[str, Any]) -> None:
    oid = item["id"].lower()
    order = audit.ledger.orders.get(oid)
    audit.checked["api_orders"] += 1
    if order is None:
        if item["status"] != "awaiting_funding":
            audit.find(
                "api_status",
                f"the service says order {oid} is {item['status']}; the chain never funded it",
                order_id=oid,
                api=item["status"],
                chain="none",
            )
        return
    chain_status = order.status.name.lower()
    if item["status"] != chain_status:
        audit.find(
            "api_status",
            f"the service says order {oid} is {item['status']}; the chain says {chain_status}",
            order_id=oid,
            api=item["status"],
            chain=chain_status,
        )
    if int(item["amount"]) != order.amount:
        audit.find(
            "api_amount", f"order {oid}: amount {item['amount']} vs {order.amount} on chain", order_id=oid
        )
    if order.split is not None:
        split = item.get("split") or {}
        theirs = {k: int(split.get(k, -1)) for k in order.split}
        if theirs != order.split or not split.get("final"):
            audit.find(
                "api_split",
                f"order {oid}: the service's split {theirs} (final {split.get('final')}) is not the chain's "
                f"{order.split}",
                order_id=oid,
                api={k: str(v) for k, v in theirs.items()},
                chain={k: str(v) for k, v in order.split.items()},
            )
    if order.evidence:
        for ev in _pages(client, f"/v1/orders/{oid}/evidence"):
            resp = client.get(f"/v1/orders/{oid}/evidence/{ev['id']}/content")
            audit.checked["api_evidence_files"] += 1
            digest = "0x" + hashlib.sha256(resp.content).hexdigest() if resp.status_code == 200 else None
            if digest is None or digest not in order.evidence:
                audit.find(
                    "api_evidence",
                    f"order {oid}: evidence {ev['id']} served by the service hashes to {digest}, "
                    "which is not anchored on chain",
                    order_id=oid,
                    evidence_id=ev["id"],
                    sha256=digest,
                )


def _pages(client: httpx.Client, path: str) -> Iterable[dict[str, Any]]:
    cursor: str | None = None
    while True:
        page = _get(client, path, {"limit": PAGE, **({"cursor": cursor} if cursor else {})})
        yield from page.get("items", [])
        cursor = page.get("next_cursor")
        if not cursor:
            return


def _get(client: httpx.Client, path: str, params: dict[str, Any]) -> dict[str, Any]:
    resp = client.get(path, params=params)
    if resp.status_code != 200:
        raise VerifyError(f"GET {path}: {resp.status_code} {resp.text[:300]}")
    body: dict[str, Any] = resp.json()
    return body


class VerifyError(Exception):
    """The audit could not run (a node or API that does not answer, a wrong address)."""


def verify(
    rpc: str,
    escrow: str,
    *,
    from_block: int = 0,
    evidence: Path | None = None,
    api: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Run every check; the JSON report (``ok`` false when anything disagrees)."""
    chain = ChainClient.rpc(rpc, timeout=60)
    try:
        address = to_checksum_address(escrow)
        if not chain.w3.eth.get_code(address):
            raise VerifyError(f"no contract at {address} on chain {chain.chain_id}")
        head = chain.block_number()
        audit = Audit(
            chain.chain_id,
            address,
            from_block,
            head,
            rebuild(chain.get_events(address, from_block, head), address),
        )
        conservation(audit, chain)
        if evidence is not None:
            evidence_dir(audit, evidence)
        if api is not None:
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
            with httpx.Client(base_url=api, headers=headers, timeout=60) as client:
                compare_api(audit, client)
        return audit.report()
    finally:
        chain.close()


__all__ = ["VerifyError", "rebuild", "verify"]
