"""The demo: three orders driven through the HTTP API only, as a merchant, a buyer, an oracle and an
arbitrator would, each signing with its own wallet.

1. happy path: order → buyer signs authorization + permit → shipment → EPCIS shipping and receiving events →
   the dev clock passes T+N → the keeper releases → the split is read back;
2. dispute: funded and shipped → the buyer disputes → both sides upload evidence → the arbitrator rules 40/60;
3. ship-by timeout: funded, never shipped → the clock passes ``ship_by`` → refunded in full.

It works against any :class:`httpx.Client` (a live server, or FastAPI's TestClient in tests).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount

from app.chain.eip712 import sign_typed_data
from app.client.wallet import NodeWallet
from app.domain.encoding import rfc3339
from app.feeds.epcis import gs1_check_digit

DAY = 86_400
GS1_COMPANY = "0614141"


def object_event(when: int, biz_step: str, **fields: Any) -> dict[str, Any]:
    """An EPCIS 2.0 ObjectEvent (OBSERVE) at unix time ``when``; ``fields`` are added as given."""
    return {
        "type": "ObjectEvent",
        "eventTime": rfc3339(when),
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "bizStep": biz_step,
        **fields,
    }


def epcis_document(*events: dict[str, Any]) -> bytes:
    """An EPCISDocument (JSON-LD) carrying ``events``."""
    document = {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": events[0]["eventTime"] if events else rfc3339(0),
        "epcisBody": {"eventList": list(events)},
    }
    return json.dumps(document).encode()


class DemoError(Exception):
    """The API answered something the demo did not expect."""


@dataclass(frozen=True)
class Wallets:
    """The private keys the demo's parties sign with (a buyer's, a merchant's, an arbitrator's wallet)."""

    merchant: LocalAccount
    buyer: LocalAccount
    arbitrator: LocalAccount
    oracle_address: str


@dataclass
class Parties:
    """API keys of the principals the demo created."""

    admin: str
    merchant: str
    buyer: str
    oracle: str
    arbitrator: str


def _headers(key: str, idem: bool = True) -> dict[str, str]:
    h = {"Authorization": f"Bearer {key}"}
    if idem:
        h["Idempotency-Key"] = uuid.uuid4().hex
    return h


def _ok(resp: httpx.Response, *expected: int) -> Any:
    if resp.status_code not in expected:
        raise DemoError(
            f"{resp.request.method} {resp.request.url.path} → {resp.status_code}: {resp.text[:500]}"
        )
    if resp.headers.get("content-type", "").startswith(("application/json", "application/problem+json")):
        return resp.json()
    return resp.text


class Demo:
    """One demo run against ``client``; ``say`` prints progress."""

    def __init__(self, client: httpx.Client, admin_key: str, wallets: Wallets, say: Callable[[str], None]):
        self.http = client
        self.wallets = wallets
        self.say = say
        self.admin_key = admin_key
        self.chain: dict[str, Any] = _ok(client.get("/v1/chain"), 200)
        self.currency = self.chain["tokens"][0]["currency"]
        self.decimals: int = int(self.chain["tokens"][0]["decimals"])
        self.run_id = uuid.uuid4().hex[:8]
        self.parties = self._principals()

    # ---------------------------------------------------------------- helpers

    def post(self, key: str, path: str, body: Any, *expected: int) -> Any:
        return _ok(self.http.post(path, json=body, headers=_headers(key)), *expected)

    def get(self, key: str, path: str) -> Any:
        return _ok(self.http.get(path, headers=_headers(key, idem=False)), 200)

    def units(self, whole: int) -> int:
        return int(whole * 10**self.decimals)

    def money(self, units: str | int) -> str:
        return f"{Decimal(int(units)).scaleb(-self.decimals):,.2f}"

    def chain_time(self) -> int:
        return int(_ok(self.http.get("/v1/chain"), 200)["chain_time"])

    def advance(self, seconds: int) -> None:
        self.post(self.parties.admin, "/v1/dev/advance-time", {"seconds": seconds}, 200)

    def _principals(self) -> Parties:
        def create(role: str, address: str | None) -> str:
            body = {"role": role, "address": address, "name": f"demo {role} {self.run_id}"}
            return str(self.post(self.admin_key, "/v1/principals", body, 201)["api_key"])

        w = self.wallets
        return Parties(
            admin=self.admin_key,
            merchant=create("merchant", w.merchant.address),
            buyer=create("buyer", w.buyer.address),
            oracle=create("oracle", w.oracle_address),
            arbitrator=create("arbitrator", w.arbitrator.address),
        )

    # ---------------------------------------------------------------- steps

    def create_and_fund(self, ref: str, amount: int, country: str = "DE", **extra: Any) -> dict[str, Any]:
        """Merchant creates the order (``extra``: more fields of ``POST /v1/orders``, e.g. an ERC-792
        ``arbitrator``); the buyer signs what the API returned and funds it."""
        p = self.parties
        self.post(
            p.admin, "/v1/dev/faucet", {"address": self.wallets.buyer.address, "amount": str(amount)}, 200
        )
        created = self.post(
            p.merchant,
            "/v1/orders",
            {
                "order_ref": ref,
                "buyer": self.wallets.buyer.address,
                "amount": str(amount),
                "currency": self.currency,
                "destination_country": country,
                "goods_category": "apparel",
                **extra,
            },
            201,
        )
        oid = created["order"]["id"]
        auth_sig = sign_typed_data(self.wallets.buyer.key, created["sign"]["authorization"])
        permit = created["sign"]["permit"]
        permit_sig = sign_typed_data(self.wallets.buyer.key, permit)
        funded = self.post(
            p.buyer,
            f"/v1/orders/{oid}/funding",
            {
                "signature": "0x" + auth_sig.hex(),
                "permit": {
                    "deadline": int(permit["message"]["deadline"]),
                    "signature": "0x" + permit_sig.hex(),
                },
            },
            202,
        )
        order = self.wait_status(oid, "funded")
        tx = _chain_tx(order, "OrderFunded") or funded["intent"]["tx_hash"]
        self.say(f"  {ref}: funded {self.money(amount)} {self.currency} (tx {tx})")
        return order

    def ship(self, order: dict[str, Any], serial: int) -> str:
        """Merchant registers the shipment by SSCC; returns the SSCC."""
        body17 = "0" + GS1_COMPANY + f"{serial:09d}"
        sscc = body17 + str(gs1_check_digit(body17))
        self.post(
            self.parties.merchant,
            f"/v1/orders/{order['id']}/shipments",
            {"carrier": "dhl", "tracking_number": f"JD{serial:012d}", "sscc": sscc},
            201,
        )
        return sscc

    def order_urn(self, order_ref: str) -> str:
        """How an EPCIS bizTransaction names one of this merchant's orders."""
        return f"urn:tradeguard:order:{self.wallets.merchant.address.lower()}:{order_ref}"

    def epcis(
        self, sscc: str, biz_step: str, when: int, *, order_ref: str, event_id: str | None = None
    ) -> dict[str, Any]:
        """The oracle captures an EPCIS 2.0 ObjectEvent for the SSCC, naming the order too."""
        event = object_event(
            when,
            biz_step,
            epcList=[f"https://id.gs1.org/00/{sscc}"],
            disposition="in_transit" if biz_step == "shipping" else "in_progress",
            readPoint={"id": f"https://id.gs1.org/414/{GS1_COMPANY}000000"},
            bizTransactionList=[{"type": "po", "bizTransaction": self.order_urn(order_ref)}],
        )
        if event_id is not None:
            event["eventID"] = event_id
        outcome = self.capture(event)
        self.say(f"    EPCIS {biz_step}: capture {outcome['capture_id']} → {outcome['status']}")
        return outcome

    def capture(self, *events: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """Post an EPCISDocument of ``events`` (as the demo oracle, or ``key``) and read back its outcome."""
        key = key or self.parties.oracle
        resp = self.http.post(
            "/v1/epcis/capture",
            content=epcis_document(*events),
            headers={**_headers(key), "Content-Type": "application/ld+json"},
        )
        capture = _ok(resp, 202)
        return dict(self.get(key, f"/v1/epcis/capture/{capture['capture_id']}"))

    def decision(
        self, order: dict[str, Any], decision: int, evidence: bytes = b"\x00" * 32
    ) -> dict[str, Any]:
        valid_until = self.chain_time() + DAY
        doc = self._typed(
            "BuyerDecision",
            {
                "orderId": order["id"],
                "decision": decision,
                "evidenceHash": "0x" + evidence.hex(),
                "validUntil": valid_until,
            },
        )
        sig = sign_typed_data(self.wallets.buyer.key, doc)
        path = "confirm-receipt" if decision == 1 else "disputes"
        body = {
            "signature": "0x" + sig.hex(),
            "valid_until": valid_until,
            "evidence_hash": "0x" + evidence.hex(),
        }
        return dict(self.post(self.parties.buyer, f"/v1/orders/{order['id']}/{path}", body, 202))

    def evidence(self, order: dict[str, Any], who: str, content: bytes, name: str) -> dict[str, Any]:
        wallet = self.wallets.buyer if who == "buyer" else self.wallets.merchant
        key = self.parties.buyer if who == "buyer" else self.parties.merchant
        valid_until = self.chain_time() + DAY
        digest = hashlib.sha256(content).digest()
        doc = self._typed(
            "EvidenceSubmission",
            {
                "orderId": order["id"],
                "party": wallet.address,
                "evidenceHash": "0x" + digest.hex(),
                "validUntil": valid_until,
            },
        )
        sig = sign_typed_data(wallet.key, doc)
        resp = self.http.post(
            f"/v1/orders/{order['id']}/evidence",
            files={"file": (name, content, "text/plain")},
            data={"signature": "0x" + sig.hex(), "valid_until": str(valid_until)},
            headers=_headers(key),
        )
        result = dict(_ok(resp, 202))
        intent = result["intent"]
        sent = f"tx {intent['tx_hash']}" if intent["tx_hash"] else f"intent {intent['id']} {intent['status']}"
        self.say(f"    {who} evidence {name}: sha256 {digest.hex()[:16]}… {sent}")
        return result

    def ruling(self, order: dict[str, Any], buyer_share_bps: int, rationale: bytes) -> dict[str, Any]:
        valid_until = self.chain_time() + DAY
        rationale_hash = "0x" + hashlib.sha256(rationale).hexdigest()
        doc = self._typed(
            "Ruling",
            {
                "orderId": order["id"],
                "buyerShareBps": buyer_share_bps,
                "rationaleHash": rationale_hash,
                "validUntil": valid_until,
            },
        )
        sig = sign_typed_data(self.wallets.arbitrator.key, doc)
        body = {
            "buyer_share_bps": buyer_share_bps,
            "rationale_hash": rationale_hash,
            "valid_until": valid_until,
            "signature": "0x" + sig.hex(),
        }
        return dict(self.post(self.parties.arbitrator, f"/v1/orders/{order['id']}/ruling", body, 202))

    def _typed(self, primary: str, message: dict[str, Any]) -> dict[str, Any]:
        """Typed data built from ``GET /v1/chain`` alone, as any wallet could."""
        types = self.chain["types"]
        return {
            "types": {"EIP712Domain": types["EIP712Domain"], primary: types[primary]},
            "primaryType": primary,
            "domain": self.chain["domain"],
            "message": message,
        }

    def order(self, key: str, oid: str) -> dict[str, Any]:
        return dict(self.get(key, f"/v1/orders/{oid}"))

    def wait_status(self, oid: str, *statuses: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll the order until its status is one of ``statuses`` (at once when tasks run eagerly)."""
        deadline = time.monotonic() + timeout
        while True:
            order = self.order(self.parties.merchant, oid)
            if order["status"] in statuses:
                return order
            if time.monotonic() > deadline:
                raise DemoError(f"order {oid} is {order['status']}, expected {'/'.join(statuses)}")
            time.sleep(0.2)

    # ---------------------------------------------------------------- scenarios

    def happy_path(self) -> dict[str, Any]:
        self.say("1. happy path: EPCIS shipping + receiving, T+N passes, released")
        ref = f"DEMO-{self.run_id}-1"
        order = self.create_and_fund(ref, self.units(250))
        sscc = self.ship(order, 1)
        now = self.chain_time()
        self.epcis(sscc, "shipping", now - 60, order_ref=ref)
        self.epcis(sscc, "receiving", self.chain_time(), order_ref=ref)
        order = self.wait_status(order["id"], "delivered")
        self.say(f"    status {order['status']}, release_at {order['release_at']}")
        self.advance(order["hold_seconds"] + 1)
        order = self.wait_status(order["id"], "released")
        self.say(f"    after T+N: {order['status']}")
        return order

    def dispute(self) -> dict[str, Any]:
        self.say("2. dispute: evidence from both sides, split ruling 40% to the buyer")
        ref = f"DEMO-{self.run_id}-2"
        order = self.create_and_fund(ref, self.units(400))
        sscc = self.ship(order, 2)
        self.epcis(sscc, "shipping", self.chain_time() - 60, order_ref=ref)
        self.wait_status(order["id"], "shipped")
        self.decision(order, 2)
        self.wait_status(order["id"], "disputed")
        self.say("    buyer opened a dispute")
        self.evidence(
            order, "buyer", b"photo: parcel arrived damaged, 3 of 5 items broken", "damage-report.txt"
        )
        self.evidence(
            order, "merchant", b"packing list and carrier scan: packed intact, insured", "packing.txt"
        )
        self.ruling(order, 4000, b"Partial damage shown by photos; seller packed adequately. 40% refund.")
        order = self.wait_status(order["id"], "resolved")
        self.say(f"    after ruling: {order['status']}")
        return order

    def ship_timeout(self) -> dict[str, Any]:
        self.say("3. ship-by timeout: never shipped, refunded in full")
        order = self.create_and_fund(f"DEMO-{self.run_id}-3", self.units(90), country="US")
        ship_by = int(datetime.fromisoformat(order["ship_by"].replace("Z", "+00:00")).timestamp())
        self.advance(ship_by - self.chain_time() + 1)
        order = self.wait_status(order["id"], "refunded")
        self.say(f"    after ship_by: {order['status']}")
        return order

    def seller_refund_and_withdrawal(self, wallet: NodeWallet) -> dict[str, Any]:
        """Actions from the parties' own wallets (the API answers with the transaction to send)."""
        self.say("4. seller refund from the merchant's wallet, then the buyer withdraws the credit")
        order = self.create_and_fund(f"DEMO-{self.run_id}-4", self.units(60))
        answer = self.get(self.parties.merchant, f"/v1/orders/{order['id']}/refund-transaction")
        tx = wallet.send(self.wallets.merchant, answer)
        order = self.wait_status(order["id"], "refunded")
        self.say(f"    merchant sent refundBySeller (tx {tx}): {order['status']}")
        owed = self.get(self.parties.buyer, "/v1/credits")["items"]
        credit = next(int(i["amount"]) for i in owed if i["currency"] == self.currency)
        self.say(f"    buyer's credit on the escrow: {self.money(credit)} {self.currency}")
        answer = self.get(self.parties.buyer, f"/v1/credits/withdrawal?currency={self.currency}")
        tx = wallet.send(self.wallets.buyer, answer)
        left = self.get(self.parties.buyer, "/v1/credits")["items"]
        remaining = next(int(i["amount"]) for i in left if i["currency"] == self.currency)
        self.say(f"    buyer withdrew {self.money(credit - remaining)} {self.currency} (tx {tx})")
        return {**order, "withdrawn": str(credit - remaining), "credit_left": str(remaining)}

    def settlement_table(self) -> str:
        report = self.get(self.parties.merchant, "/v1/settlements")
        lines = [
            f"{'order_ref':<22} {'status':<9} {'amount':>10} {'commission':>11} {'tax':>9} "
            f"{'seller_net':>11} "
            f"{'refund':>9}  release_at / closed_at",
        ]
        for row in report["items"]:
            refund = int(row["buyer_refund"])
            lines.append(
                f"{row['order_ref']:<22} {row['status']:<9} {self.money(row['amount']):>10} "
                f"{self.money(row['commission']):>11} {self.money(row['tax']):>9} "
                f"{self.money(row['seller_net']):>11} "
                f"{self.money(refund):>9}  {row['release_at'] or row['closed_at'] or '-'}"
            )
        return "\n".join(lines)


def run(
    client: httpx.Client,
    admin_key: str,
    wallets: Wallets,
    say: Callable[[str], None] = print,
    wallet: NodeWallet | None = None,
) -> dict[str, Any]:
    """All scenarios (the fourth, from the parties' own wallets, when ``wallet`` reaches the chain); returns
    the final orders and the settlement table."""
    demo = Demo(client, admin_key, wallets, say)
    results = {"happy": demo.happy_path(), "dispute": demo.dispute(), "timeout": demo.ship_timeout()}
    if wallet is not None:
        results["refund"] = demo.seller_refund_and_withdrawal(wallet)
    table = demo.settlement_table()
    say("\nsettlement table (merchant view, GET /v1/settlements)\n" + table)
    return {**results, "table": table}


def _chain_tx(order: dict[str, Any], kind: str) -> str | None:
    """The transaction of the order's last on-chain fact of ``kind`` (from its timeline), if any."""
    found = [
        t["tx_hash"] for t in order.get("timeline") or [] if t["source"] == "chain" and t["kind"] == kind
    ]
    return str(found[-1]) if found else None
