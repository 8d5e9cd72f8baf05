"""A real Celery worker on the real Redis: ingestion → relay → chain → index, none of it in this process.

And the restart test: the worker is SIGKILLed, the service keeps accepting work, Redis is flushed (it keeps
nothing on disk here) and the service stops; it restarts, beat's sweeps re-enqueue from the database, and
afterwards every accepted input is still there, nothing was relayed twice, and the database agrees with the
chain.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from app.client import demo
from app.db.models import InboxItem, Intent, Order
from app.domain.order_state import Status
from tests.workers.conftest import (
    Stack,
    admin_key,
    create_order,
    shipping_capture,
    submit_funding,
    wait_for,
    wallets,
)
from workers import sweepers

pytestmark = [pytest.mark.anvil, pytest.mark.redis, pytest.mark.slow, pytest.mark.sqlite_only]

UNIT = 10**6


def test_worker_takes_an_epcis_event_to_the_chain(stack: Stack) -> None:
    client = stack.start_service()
    worker = stack.spawn("worker")
    d = demo.Demo(client, admin_key(stack), wallets(stack), say=lambda _l: None)
    ref = "CW-1"
    order = stack.wait_funded(d, ref, 75 * UNIT)  # polls until the worker has relayed and indexed the funding
    # the worker runs its sweeps below the API's priority (the stack sets TRADEGUARD_SWEEP_NICE=5), on Linux
    if sweepers.THREAD_NICE:
        stat = Path(f"/proc/{worker.pid}/stat").read_text()
        nice = int(stat[stat.rindex(")") + 2 :].split()[16])  # the 19th field of proc(5)'s stat
        assert nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)
    sscc = d.ship(order, 11)
    capture = d.epcis(sscc, "receiving", d.chain_time() - 5, order_ref=ref)
    assert capture["status"] in ("received", "processed")
    d.wait_status(order["id"], "delivered", timeout=60)

    rt = stack.runtime
    assert rt is not None
    with rt.db() as s:
        item = s.get(InboxItem, capture["capture_id"])
        assert item is not None and item.status == "processed" and item.outcome and item.outcome["intents"]
        intent = s.get(Intent, item.outcome["intents"][0])
        assert intent is not None and intent.status == "confirmed" and intent.tx_hash
    receipt = rt.chain.receipt(intent.tx_hash)
    assert receipt is not None and receipt["status"] == 1
    on_chain = rt.escrow.load_order(bytes.fromhex(order["id"][2:]))
    assert on_chain is not None and on_chain.status == Status.DELIVERED


def test_restart_with_work_in_flight_loses_nothing_and_relays_nothing_twice(stack: Stack) -> None:
    client = stack.start_service()
    worker = stack.spawn("worker")
    d = demo.Demo(client, admin_key(stack), wallets(stack), say=lambda _l: None)
    # fund three orders through the worker, so that there is something to ship
    funded = [stack.wait_funded(d, f"RS-{i}", (10 + i) * UNIT) for i in range(3)]
    ssccs = [d.ship(o, 100 + i) for i, o in enumerate(funded)]

    # the worker dies; the service still accepts a burst of work (three shipping captures, a funding)
    stack.kill(worker)
    captures = [
        d.http.post(
            "/v1/epcis/capture",
            content=shipping_capture(d, sscc),
            headers={"Authorization": f"Bearer {d.parties.oracle}", "Content-Type": "application/json"},
        ).json()["capture_id"]
        for i, sscc in enumerate(ssccs)
    ]
    late = [submit_funding(d, create_order(d, "RS-L0", 5 * UNIT))]
    rt = stack.runtime
    assert rt is not None
    with rt.db() as s:  # accepted, stored, not done
        assert {i.status for i in s.scalars(select(InboxItem).where(InboxItem.id.in_(captures)))} == {
            "received"
        }
        assert {i.status for i in s.scalars(select(Intent).where(Intent.id.in_(late)))} == {"pending"}
    redis.Redis.from_url(str(stack.settings.broker_url)).flushdb()  # Redis keeps nothing: messages are gone
    stack.stop_service()

    # the service comes back: API, a new worker, and beat re-enqueueing every sweep from the database
    stack.start_service()
    stack.spawn("worker")
    stack.spawn("beat")
    rt = stack.runtime
    assert rt is not None
    assert rt.chain.nonce(rt.relayer.address, "latest") == 3  # the three fundings before the crash

    def settled() -> bool:
        with rt.db() as s:
            busy = s.scalar(select(Intent.id).where(Intent.status.in_(("pending", "sent"))).limit(1))
            waiting = s.scalar(select(InboxItem.id).where(InboxItem.status == "received").limit(1))
            statuses = {o.order_ref: o.status for o in s.scalars(select(Order))}
        return (
            busy is None
            and waiting is None
            and all(statuses.get(f"RS-{i}") == "shipped" for i in range(3))
            and statuses.get("RS-L0") == "funded"
        )

    wait_for(settled, 120, stack, "the restarted service to finish the work in flight")

    with rt.db() as s:
        # every accepted input is still there, processed
        items = {i.id: i for i in s.scalars(select(InboxItem))}
        assert set(captures) <= set(items) and all(items[c].status == "processed" for c in captures)
        intents = list(s.scalars(select(Intent)))
        orders = list(s.scalars(select(Order)))
    assert {i.status for i in intents} == {"confirmed"}, [(i.kind, i.status, i.error_name) for i in intents]
    assert len(late) == 1

    # nothing relayed twice: each relayer transaction on chain is a distinct recorded one, nonces without gaps
    relayer = rt.relayer.address
    tx_hashes = {i.tx_hash for i in intents}
    assert None not in tx_hashes
    assert rt.chain.nonce(relayer, "latest") == len(tx_hashes)
    funded_events = Counter(
        e.args["orderId"]
        for e in rt.chain.get_events(rt.escrow.address, 0, rt.chain.block_number())
        if e.name == "OrderFunded"
    )
    assert all(n == 1 for n in funded_events.values()) and len(funded_events) == 4

    # the database agrees with the chain, order by order
    for order in orders:
        on_chain = rt.escrow.load_order(bytes.fromhex(order.id[2:]))
        assert on_chain is not None
        assert order.status == on_chain.status.name.lower(), order.order_ref
        assert order.state_word == on_chain.state
