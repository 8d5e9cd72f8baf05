"""The benchmark's HTTP clients (scripts/bench_service.py): principals and wallets, orders created and
funded by concurrent clients, EPCIS captures, and a watcher that sees orders reach a status.

Every request goes over loopback HTTP to the real server; answers other than the expected status are counted
in :attr:`Bench.errors` by phase, route and status (or exception name), never raised.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import loadgen
from benchlib import Stack, p50_p99
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from app.chain.devchain import ANVIL_MNEMONIC
from app.chain.eip712 import sign_typed_data
from app.client.demo import GS1_COMPANY, epcis_document, object_event
from app.feeds.epcis import gs1_check_digit

ORDER_AMOUNT = 10 * 10**6  # 10 tUSD (6 decimals)
WAIT_S = 300.0


def dev_account(index: int) -> LocalAccount:
    """One of the anvil's pre-funded accounts (the well-known test mnemonic)."""
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return account


@dataclass
class Reply:
    status: int
    body: Any
    seconds: float


class Api:
    """One HTTP client (its own connection pool), counting unexpected answers into ``errors``."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        # plain loopback HTTP: no TLS context (loading one costs ~0.1 s of CPU, holding the GIL, per client)
        self.http = httpx.Client(base_url=bench.stack.url, timeout=120, verify=False)

    def call(
        self,
        phase: str,
        method: str,
        path: str,
        key: str,
        expect: int,
        route: str,
        tolerate: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> Reply:
        headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
        if method == "POST":
            headers["Idempotency-Key"] = uuid.uuid4().hex
        t0 = time.perf_counter()
        try:
            resp = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            self.bench.error(phase, f"{method} {route}: {type(exc).__name__}")
            # the transport error itself, for a caller that reports it (status 0: no HTTP answer)
            return Reply(0, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
        seconds = time.perf_counter() - t0
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        if resp.status_code != expect and resp.status_code not in tolerate:
            code = body.get("code") if isinstance(body, dict) else None
            self.bench.error(phase, f"{method} {route}: {resp.status_code}{f' {code}' if code else ''}")
        return Reply(resp.status_code, body, seconds)

    def close(self) -> None:
        self.http.close()


@dataclass
class Bench:
    """One run against one stack: the parties' keys and wallets, and the errors seen."""

    stack: Stack
    tag: str
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    chain: dict[str, Any] = field(default_factory=dict)
    #: Not the dev merchant: ``tradeguard run`` seeds a demo merchant with that address, and the indexer gives
    #: orders funded directly on chain to the oldest merchant of their seller address.
    merchant: LocalAccount = field(default_factory=lambda: Account.from_key(keccak(b"tg-bench-merchant")))
    merchant_key: str = ""
    oracle_key: str = ""
    buyers: list[tuple[LocalAccount, str]] = field(default_factory=list)
    #: Orders on chain: funded through the API or directly by :mod:`scripts.benchchain`.
    on_chain: int = 0

    def error(self, phase: str, what: str) -> None:
        with self.lock:
            self.errors[f"{phase}: {what}"] += 1

    def api(self) -> Api:
        return Api(self)

    def write_lock(self) -> dict[tuple[str, str], tuple[float, float]]:
        """The server's write transactions so far, from ``/metrics`` (``tradeguard_db_write_seconds``):
        (site, phase) -> (seconds summed, count)."""
        text = httpx.get(f"{self.stack.url}/metrics", timeout=30).text
        out: dict[tuple[str, str], list[float]] = {}
        for line in text.splitlines():
            if not line.startswith("tradeguard_db_write_seconds_"):
                continue
            name, _, value = line.rpartition(" ")
            kind = name.split("{", 1)[0].rsplit("_", 1)[1]
            if kind not in ("sum", "count"):
                continue
            labels = dict(
                part.split("=", 1) for part in name.split("{", 1)[1].rstrip("}").replace('"', "").split(",")
            )
            slot = out.setdefault((labels["site"], labels["phase"]), [0.0, 0.0])
            slot[0 if kind == "sum" else 1] += float(value)
        return {k: (v[0], v[1]) for k, v in out.items()}

    def gc_full(self) -> tuple[float, float]:
        """The full garbage collections of every server process so far, from ``/metrics``
        (``tradeguard_gc_full_collection_seconds``, summed over the processes): (seconds summed, count)."""
        text = httpx.get(f"{self.stack.url}/metrics", timeout=30).text
        found = {"sum": 0.0, "count": 0.0}
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            kind = name.removeprefix("tradeguard_gc_full_collection_seconds_")
            if kind in found and name != kind:
                found[kind] += float(value)
        return found["sum"], found["count"]

    @staticmethod
    def gc_full_between(before: tuple[float, float], after: tuple[float, float]) -> dict[str, float]:
        """Full collections between two :meth:`gc_full` snapshots: how many, their milliseconds in all
        (every process's), and the mean of one."""
        seconds, count = after[0] - before[0], after[1] - before[1]
        return {
            "count": count,
            "ms_total": round(1000 * seconds, 2),
            "ms_mean": round(1000 * seconds / count, 2) if count else 0.0,
        }

    @staticmethod
    def write_lock_per(
        before: dict[tuple[str, str], tuple[float, float]],
        after: dict[tuple[str, str], tuple[float, float]],
        units: int,
        top: int = 8,
    ) -> dict[str, Any]:
        """Write-lock time between two :meth:`write_lock` snapshots, per unit of work (an order, an ack):
        milliseconds held and waited in all, and held by the ``top`` sites."""
        units = max(units, 1)
        zero = (0.0, 0.0)
        delta = {k: (v[0] - before.get(k, zero)[0], v[1] - before.get(k, zero)[1]) for k, v in after.items()}
        held = {site: d for (site, phase), d in delta.items() if phase == "hold" and d[1] > 0}
        waited = sum(d[0] for (_, phase), d in delta.items() if phase == "wait")
        ranked = sorted(held.items(), key=lambda kv: -kv[1][0])[:top]
        return {
            "hold_ms_per_unit": round(1000 * sum(d[0] for d in held.values()) / units, 2),
            "wait_ms_per_unit": round(1000 * waited / units, 2),
            "transactions_per_unit": round(sum(d[1] for d in held.values()) / units, 2),
            "hold_ms_per_unit_by_site": {
                site.removeprefix("app.services."): round(1000 * d[0] / units, 2) for site, d in ranked
            },
        }

    def setup(self, buyers: int, orders_per_buyer: int) -> None:
        """Merchant and oracle principals, ``buyers`` buyer wallets with principals and tokens."""
        api = self.api()
        self.chain = api.call("setup", "GET", "/v1/chain", self.stack.admin_key, 200, "/v1/chain").body
        self.merchant_key = self.principal(api, "merchant", self.merchant.address)
        oracle = self.chain["platform_oracle"]
        self.oracle_key = self.principal(api, "oracle", oracle)

        local = threading.local()

        def one(i: int) -> tuple[LocalAccount, str]:
            if not hasattr(local, "api"):
                local.api = self.api()
            wallet: LocalAccount = Account.from_key(keccak(f"tg-bench-buyer-{self.tag}-{i}".encode()))
            key = self.principal(local.api, "buyer", wallet.address)
            self.faucet(local.api, wallet.address, 2 * orders_per_buyer * ORDER_AMOUNT)
            return wallet, key

        api.close()
        with ThreadPoolExecutor(
            4
        ) as pool:  # setup is not what is measured; the faucet's sends share a nonce lock
            self.buyers = list(pool.map(one, range(buyers)))

    def principal(self, api: Api, role: str, address: str) -> str:
        body = {"role": role, "address": address, "name": f"bench {role} {self.tag}"}
        reply = api.call(
            "setup", "POST", "/v1/principals", self.stack.admin_key, 201, "/v1/principals", json=body
        )
        if reply.status != 201:
            raise RuntimeError(f"cannot create a {role} principal: {reply.status} {reply.body}")
        return str(reply.body["api_key"])

    def faucet(self, api: Api, address: str, amount: int) -> None:
        body = {"address": address, "amount": str(amount)}
        reply = api.call(
            "setup", "POST", "/v1/dev/faucet", self.stack.admin_key, 200, "/v1/dev/faucet", json=body
        )
        if reply.status != 200:
            raise RuntimeError(f"faucet refused: {reply.status} {reply.body}")

    # ------------------------------------------------------------------------------------------- orders

    def create(self, api: Api, phase: str, ref: str, buyer: LocalAccount) -> Reply:
        body = {
            "order_ref": ref,
            "buyer": buyer.address,
            "amount": str(ORDER_AMOUNT),
            "currency": self.chain["tokens"][0]["currency"],
            "destination_country": "DE",
            "goods_category": "apparel",
        }
        return api.call(phase, "POST", "/v1/orders", self.merchant_key, 201, "/v1/orders", json=body)

    def fund(self, api: Api, phase: str, created: dict[str, Any], buyer: LocalAccount, key: str) -> Reply:
        auth = sign_typed_data(buyer.key, created["sign"]["authorization"])
        permit = created["sign"]["permit"]
        permit_sig = sign_typed_data(buyer.key, permit)
        body = {
            "signature": "0x" + auth.hex(),
            "permit": {"deadline": int(permit["message"]["deadline"]), "signature": "0x" + permit_sig.hex()},
        }
        oid = created["order"]["id"]
        return api.call(
            phase, "POST", f"/v1/orders/{oid}/funding", key, 202, "/v1/orders/{id}/funding", json=body
        )

    def fund_cart(
        self, api: Api, phase: str, ids: Sequence[str], buyer: LocalAccount, key: str
    ) -> tuple[Reply, Reply | None]:
        """A buyer's cart: its signing documents (one permit for the total), then one funding request."""
        body = {"order_ids": list(ids)}
        docs = api.call(phase, "POST", "/v1/carts/signing", key, 200, "/v1/carts/signing", json=body)
        if docs.status != 200:
            return docs, None
        permit = docs.body["permit"]
        funding = {
            "items": [
                {
                    "order_id": o["order_id"],
                    "signature": "0x" + sign_typed_data(buyer.key, o["authorization"]).hex(),
                }
                for o in docs.body["orders"]
            ],
            "permit": {
                "deadline": int(permit["message"]["deadline"]),
                "signature": "0x" + sign_typed_data(buyer.key, permit).hex(),
            },
        }
        return docs, api.call(phase, "POST", "/v1/carts/funding", key, 202, "/v1/carts/funding", json=funding)

    def wait_status(
        self, api: Api, phase: str, oid: str, status: str, timeout: float = WAIT_S
    ) -> float | None:
        """Poll one order until it shows ``status`` (a 404 until the indexer has its row is no error); the
        time it was seen, None (and an error) on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            path = f"/v1/orders/{oid}"
            reply = api.call(phase, "GET", path, self.merchant_key, 200, "/v1/orders/{id}", tolerate=(404,))
            if reply.status == 200 and reply.body["status"] == status:
                return time.perf_counter()
            time.sleep(0.05)
        self.error(phase, f"not {status} within {timeout:.0f} s")
        return None

    def orders_phase(self, n: int, clients: int, buyers_per_client: int, cart: int = 1) -> dict[str, Any]:
        """``clients`` threads create and fund ``n`` orders; a buyer's next order waits for its previous one
        to show funded (a permit nonce funds one order). Ends when every order shows funded.

        ``cart`` > 1: each buyer creates that many orders, then funds them as one cart (``/v1/carts``: one
        permit, one funding request, one transaction); ``fund_ms`` is then the cart's funding request."""
        if cart > 1:
            return self.carts_phase(n, clients, buyers_per_client, cart)
        created_s: list[float] = []
        fund_s: list[float] = []
        watcher = Watcher(self, "funded", interval=0.1)
        start = time.perf_counter()

        def client(c: int) -> None:
            api = self.api()
            mine = self.buyers[c * buyers_per_client : (c + 1) * buyers_per_client]
            pending: dict[str, str] = {}
            for j in range(n // clients + (1 if c < n % clients else 0)):
                buyer, key = mine[j % len(mine)]
                if buyer.address in pending:
                    watcher.wait(pending.pop(buyer.address))
                made = self.create(api, "orders", f"{self.tag}-o{c}-{j}", buyer)
                created_s.append(made.seconds)
                if made.status != 201:
                    continue
                sent = self.fund(api, "orders", made.body, buyer, key)
                fund_s.append(sent.seconds)
                if sent.status == 202:
                    pending[buyer.address] = made.body["order"]["id"]
                    watcher.expect(made.body["order"]["id"])
            for oid in pending.values():
                watcher.wait(oid)
            api.close()

        return self._run_orders(n, clients, client, watcher, start, created_s, fund_s)

    def carts_phase(self, n: int, clients: int, buyers_per_client: int, cart: int) -> dict[str, Any]:
        created_s: list[float] = []
        fund_s: list[float] = []
        watcher = Watcher(self, "funded", interval=0.1)
        start = time.perf_counter()

        def client(c: int) -> None:
            api = self.api()
            mine = self.buyers[c * buyers_per_client : (c + 1) * buyers_per_client]
            pending: dict[str, str] = {}
            todo = n // clients + (1 if c < n % clients else 0)
            j = 0
            while todo > 0:
                buyer, key = mine[j % len(mine)]
                if buyer.address in pending:
                    watcher.wait(pending.pop(buyer.address))
                ids: list[str] = []
                for k in range(min(cart, todo)):
                    made = self.create(api, "orders", f"{self.tag}-o{c}-{j}-{k}", buyer)
                    created_s.append(made.seconds)
                    if made.status == 201:
                        ids.append(made.body["order"]["id"])
                todo -= min(cart, todo)
                j += 1
                if not ids:
                    continue
                _docs, sent = self.fund_cart(api, "orders", ids, buyer, key)
                if sent is not None:
                    fund_s.append(sent.seconds)
                if sent is not None and sent.status == 202:
                    pending[buyer.address] = ids[-1]
                    for oid in ids:
                        watcher.expect(oid)
            for oid in pending.values():
                watcher.wait(oid)
            api.close()

        return self._run_orders(n, clients, client, watcher, start, created_s, fund_s)

    def _run_orders(
        self,
        n: int,
        clients: int,
        client: Callable[[int], None],
        watcher: Watcher,
        start: float,
        created_s: list[float],
        fund_s: list[float],
    ) -> dict[str, Any]:
        """Run the clients to the end; the phase's figures (first create to last order seen funded)."""
        with watcher:
            run_all(clients, client)
        funded = watcher.seen_of(watcher.expected)
        self.on_chain += len(funded)
        end = max(funded.values(), default=start)
        return {
            "orders": n,
            "funded": len(funded),
            "orders_per_s": round(len(funded) / (end - start), 2) if funded else None,
            "create_ms": p50_p99([1000 * s for s in created_s]),
            "fund_ms": p50_p99([1000 * s for s in fund_s]),
            "ids": sorted(funded),
        }

    # -------------------------------------------------------------------------------------------- EPCIS

    def ship_all(self, ids: Sequence[str]) -> dict[str, str]:
        """Register a shipment (SSCC) for each order; returns order id -> SSCC."""
        ssccs: dict[str, str] = {}

        def one(i: int, api: Api) -> None:
            body17 = "0" + GS1_COMPANY + f"{i + 1:09d}"
            sscc = body17 + str(gs1_check_digit(body17))
            body = {"carrier": "dhl", "tracking_number": f"JD{i + 1:012d}", "sscc": sscc}
            path = f"/v1/orders/{ids[i]}/shipments"
            reply = api.call(
                "ship", "POST", path, self.merchant_key, 201, "/v1/orders/{id}/shipments", json=body
            )
            if reply.status == 201:
                ssccs[ids[i]] = sscc

        run_indexed(8, len(ids), one, self)
        return ssccs

    @staticmethod
    def capture_document(sscc: str, biz_step: str, when: int) -> bytes:
        """An EPCISDocument of one ObjectEvent of the shipment ``sscc`` at ``biz_step``."""
        event = object_event(
            when,
            biz_step,
            epcList=[f"https://id.gs1.org/00/{sscc}"],
            disposition="in_transit" if biz_step == "shipping" else "in_progress",
            readPoint={"id": f"https://id.gs1.org/414/{GS1_COMPANY}000000"},
        )
        return epcis_document(event)

    def capture(self, api: Api, phase: str, sscc: str, biz_step: str, when: int) -> Reply:
        return api.call(
            phase,
            "POST",
            "/v1/epcis/capture",
            self.oracle_key,
            202,
            "/v1/epcis/capture",
            content=self.capture_document(sscc, biz_step, when),
            headers={"Content-Type": "application/ld+json"},
        )

    def chain_time(self) -> int:
        api = self.api()
        try:
            return int(
                api.call("setup", "GET", "/v1/chain", self.merchant_key, 200, "/v1/chain").body["chain_time"]
            )
        finally:
            api.close()

    def epcis_ack_phase(self, ssccs: dict[str, str], clients: int, client: str = "lean") -> dict[str, Any]:
        """``clients`` concurrent clients post one shipping capture per order; time to the 202. Then waits
        until every order shows shipped (not timed: the next phase starts from shipped orders).

        ``client``: ``lean`` posts through :mod:`loadgen` (one keep-alive connection per client, a closed
        loop, from a process of its own, the documents built beforehand), as the trail phase GETs; ``threads``
        is the harness before it, one ``httpx`` client per thread of this process, each building its
        document, whose GIL the threads share with this process's watchers."""
        items = sorted(ssccs.items())
        when = self.chain_time()
        if client == "lean":
            acked, rate, ack_ms, client_cpu_s = self._lean_captures(items, clients, when)
        else:  # this process's CPU: the caller's /proc reading sees it
            acked, rate, ack_ms, client_cpu_s = (*self._thread_captures(items, clients, when), 0.0)
        shipped_from = time.perf_counter()
        with Watcher(self, "shipped", interval=0.2) as watcher:
            for oid, _ in items:
                watcher.expect(oid)
            for oid, _ in items:
                watcher.wait(oid)
        return {
            "captures": len(items),
            "acked": acked,
            "epcis_ack_per_s": rate,
            "ack_ms": ack_ms,
            "client_cpu_s": client_cpu_s,
            "all_shipped_after_s": round(time.perf_counter() - shipped_from, 2),
            "shipped": sorted(watcher.seen_of(watcher.expected)),
        }

    def _lean_captures(
        self, items: Sequence[tuple[str, str]], clients: int, when: int
    ) -> tuple[int, float | None, dict[str, float | None], float]:
        """Acked count, acks per second (over the client process's span), ack latency p50/p99, and the
        client process's CPU seconds."""
        shares = [items[c::clients] for c in range(min(clients, len(items)))]
        bodies = [[self.capture_document(sscc, "shipping", when).decode() for _, sscc in s] for s in shares]
        done = loadgen.run(
            self.stack.url,
            [["/v1/epcis/capture"] * len(share) for share in shares],
            {"Authorization": f"Bearer {self.oracle_key}", "Content-Type": "application/ld+json"},
            202,
            method="POST",
            bodies=bodies,
            fresh_header="Idempotency-Key",  # as Api.call sends with every POST: the server's bookkeeping too
        )
        for failure, n in done["failures"].items():
            for _ in range(n):
                self.error("epcis_ack", f"POST /v1/epcis/capture: {failure}")
        latencies = done["latencies_ms"]
        rate = round(len(latencies) / done["elapsed_s"], 2) if latencies else None
        return len(latencies), rate, p50_p99(latencies), done["cpu_s"]

    def _thread_captures(
        self, items: Sequence[tuple[str, str]], clients: int, when: int
    ) -> tuple[int, float | None, dict[str, float | None]]:
        """:meth:`_lean_captures` through threads of this process (the harness before it)."""
        acks: list[tuple[float, float]] = []

        def one(i: int, api: Api) -> None:
            reply = self.capture(api, "epcis_ack", items[i][1], "shipping", when)
            if reply.status == 202:
                end = time.perf_counter()
                acks.append((end - reply.seconds, end))

        run_indexed(clients, len(items), one, self)
        first = min((a for a, _ in acks), default=0.0)
        last = max((b for _, b in acks), default=0.0)
        rate = round(len(acks) / (last - first), 2) if acks else None
        return len(acks), rate, p50_p99([1000 * (b - a) for a, b in acks])

    def delivered_phase(
        self, ssccs: dict[str, str], shipped: Sequence[str], rate: float, events: int
    ) -> dict[str, Any]:
        """Receiving captures offered at ``rate`` per second (open loop); time from each 202 to the order
        showing delivered."""
        chosen = [oid for oid in shipped if oid in ssccs][:events]
        when = self.chain_time()
        acked: dict[str, float] = {}
        local = threading.local()

        def send(oid: str) -> None:
            if not hasattr(local, "api"):
                local.api = self.api()
            reply = self.capture(local.api, "delivered", ssccs[oid], "receiving", when)
            if reply.status == 202:
                acked[oid] = time.perf_counter()

        with Watcher(self, "delivered", interval=0.05) as watcher, ThreadPoolExecutor(64) as pool:
            t0 = time.perf_counter()
            for i, oid in enumerate(chosen):
                time.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
                watcher.expect(oid)
                pool.submit(send, oid)
            offered_s = time.perf_counter() - t0
            pool.shutdown(wait=True)
            for oid in acked:
                watcher.wait(oid)
        seen = watcher.seen_of(list(acked))
        # an order already delivered when its 202 arrived (work done inside the request) counts as 0 ms
        latencies = [max(0.0, 1000 * (seen[o] - acked[o])) for o in acked if o in seen]
        return {
            "events": len(chosen),
            "offered_per_s": round(len(chosen) / offered_s, 2) if offered_s > 0 else None,
            "acked": len(acked),
            "delivered": len(latencies),
            "capture_to_delivered_ms": p50_p99(latencies),
        }

    # ----------------------------------------------------------------------------------------- trail

    def trail_phase(self, ids: Sequence[str], clients: int, per_client: int) -> dict[str, Any]:
        """``clients`` concurrent clients GET random orders of ``ids``, ``per_client`` each, through
        :mod:`loadgen` (one connection each, a closed loop, from a process of its own: 32 threads of this
        process would contend for its GIL on the server's cores). ``client_cpu_s``: that process's CPU, which
        a /proc reading after the phase no longer sees."""
        plans = [
            [f"/v1/orders/{rng.choice(ids)}" for _ in range(per_client)]
            for rng in map(random.Random, range(clients))
        ]
        done = loadgen.run(self.stack.url, plans, {"Authorization": f"Bearer {self.merchant_key}"})
        for failure in done["failures"]:
            self.error("trail", f"GET /v1/orders/{{id}}: {failure}")
        if done["failed"] > len(done["failures"]):
            self.error(
                "trail", f"GET /v1/orders/{{id}}: {done['failed'] - len(done['failures'])} more failures"
            )
        latencies = done["latencies_ms"]
        return {
            "orders_queried": len(ids),
            "requests": len(latencies),
            "per_s": round(len(latencies) / done["elapsed_s"], 2),
            "trail_query_ms": p50_p99(latencies),
            "client_cpu_s": done["cpu_s"],
        }


class Watcher:
    """A thread that pages through the merchant's orders in one status and notes when each was first seen
    (one poller instead of one per client, so that polling loads the server little)."""

    def __init__(self, bench: Bench, status: str, interval: float) -> None:
        self.bench, self.status, self.interval = bench, status, interval
        self.seen: dict[str, float] = {}
        self.expected: list[str] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{status}", daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def expect(self, oid: str) -> None:
        with self._cond:
            self.expected.append(oid)

    def seen_of(self, ids: Sequence[str]) -> dict[str, float]:
        with self._cond:
            return {o: self.seen[o] for o in ids if o in self.seen}

    def wait(self, oid: str, timeout: float = WAIT_S) -> bool:
        with self._cond:
            if self._cond.wait_for(lambda: oid in self.seen, timeout=timeout):
                return True
        self.bench.error(f"watch {self.status}", f"not {self.status} within {timeout:.0f} s")
        return False

    def _run(self) -> None:
        api = self.bench.api()
        while not self._stop.is_set():
            cursor: str | None = None
            while True:
                params = {"status": self.status, "limit": 100, **({"cursor": cursor} if cursor else {})}
                reply = api.call(
                    f"watch {self.status}",
                    "GET",
                    "/v1/orders",
                    self.bench.merchant_key,
                    200,
                    "/v1/orders",
                    params=params,
                )
                if reply.status != 200:
                    break
                now = time.perf_counter()
                with self._cond:
                    for item in reply.body["items"]:
                        self.seen.setdefault(item["id"], now)
                    self._cond.notify_all()
                cursor = reply.body.get("next_cursor")
                if not cursor:
                    break
            self._stop.wait(self.interval)
        api.close()


def run_all(n: int, fn: Callable[[int], None]) -> None:
    """``fn(0..n-1)`` on ``n`` threads; an exception in one is re-raised after all have finished."""
    with ThreadPoolExecutor(n) as pool:
        for future in [pool.submit(fn, i) for i in range(n)]:
            future.result()


def run_indexed(threads: int, count: int, fn: Callable[[int, Api], None], bench: Bench) -> None:
    """``fn(i, api)`` for i in 0..count-1, shared out over ``threads`` clients, each its own connection."""
    lock = threading.Lock()
    todo = iter(range(count))

    def client(_: int) -> None:
        api = bench.api()
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                break
            fn(i, api)
        api.close()

    run_all(max(1, min(threads, count)), client)
