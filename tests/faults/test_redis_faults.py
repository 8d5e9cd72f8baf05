"""Redis SIGKILLed with work queued and restarted empty (no persistence, as on these machines).

Redis only wakes workers; the database is the record. While Redis is down the API still accepts and stores
input (202); once it is back, beat (which lives through the outage) re-enqueues every sweep and a worker
finishes everything: the fundings queued before the crash (their messages died with Redis) and those
accepted during it. Killed again under a running worker, worker and beat reconnect by themselves. The test
runs its own ``redis-server`` on a free port: the machine's Redis is never touched.

The figures: ``pytest -m faults -s tests/faults/test_redis_faults.py`` prints the measured seconds.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from app.client import demo
from app.db.models import InboxItem, Intent, Order
from tests.faults.conftest import ThrowawayRedis, relayer_checks, service_demo, statuses
from tests.workers.conftest import Stack, create_order, submit_funding, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.anvil, pytest.mark.slow]

UNIT = 10**6
#: From Redis being back to every input done: a beat tick, a worker's start and a few sweeps.
RECOVERY_BOUND = 30.0


def test_redis_killed_and_restarted_empty_loses_nothing(
    killable_stack: Stack, throwaway_redis: ThrowawayRedis
) -> None:
    stack = killable_stack
    d, rt = service_demo(stack)
    beat = stack.spawn("beat")
    worker = stack.spawn("worker")
    first = create_order(d, "RD-0", 10 * UNIT)
    ids = [submit_funding(d, first, permit=False)]
    wait_for(lambda: statuses(rt, Intent, ids) == {"confirmed": 1}, 60, stack, "the worker on this Redis")

    # work queued: the worker is away, three fundings wait as messages in Redis (and as rows in the database)
    worker.terminate()
    worker.wait(timeout=30)
    before = [create_order(d, f"RD-B{i}", (11 + i) * UNIT) for i in range(3)]
    ids += [submit_funding(d, c, permit=False) for c in before]
    broker = throwaway_redis.client()
    assert broker.llen("tradeguard") > 0, "nothing was queued in Redis"
    broker.close()

    throwaway_redis.kill()  # the queued messages are gone
    # while Redis is down the API accepts and stores input: fundings, and a capture (for no known order)
    during = [create_order(d, f"RD-D{i}", (21 + i) * UNIT) for i in range(3)]
    slowest = 0.0
    for c in during:
        started = time.monotonic()
        ids.append(submit_funding(d, c, permit=False))  # 202, or it raises
        slowest = max(slowest, time.monotonic() - started)
    event = demo.object_event(
        d.chain_time() - 10, "shipping", epcList=["https://id.gs1.org/00/012345670000000001"]
    )
    resp = d.http.post(
        "/v1/epcis/capture",
        content=demo.epcis_document(event),
        headers={"Authorization": f"Bearer {d.parties.oracle}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 202, resp.text
    capture = [resp.json()["capture_id"]]
    assert statuses(rt, Intent, ids[1:]) == {"pending": 6}
    assert statuses(rt, InboxItem, capture) == {"received": 1}

    throwaway_redis.start()  # the same port, empty
    back_at = time.monotonic()
    worker = stack.spawn("worker")

    def done() -> bool:
        return statuses(rt, Intent, ids) == {"confirmed": 7} and statuses(rt, InboxItem, capture) == {
            "processed": 1
        }

    wait_for(done, 90, stack, "the work queued before and during the outage")
    recovery = time.monotonic() - back_at
    print(
        f"\nRedis SIGKILLed and restarted empty: 3 queued + 3 accepted while down (slowest 202 took "
        f"{slowest:.2f} s) all done {recovery:.1f} s after Redis was back"
    )
    assert recovery < RECOVERY_BOUND, f"recovery took {recovery:.1f} s (bound {RECOVERY_BOUND} s)"
    assert beat.poll() is None, "beat did not live through the outage"

    relayer_checks(rt, 7)
    refs = [c["order"]["id"] for c in [first, *before, *during]]
    wait_for(lambda: statuses(rt, Order, refs) == {"funded": 7}, 30, stack, "the indexer")
    with rt.db() as s:
        item = s.scalar(select(InboxItem).where(InboxItem.id == capture[0]))
    assert item is not None and item.outcome is not None and item.outcome["unmatched"] == 1

    # Redis dies again under a running worker: worker and beat reconnect, and new work gets done
    throwaway_redis.kill()
    late = create_order(d, "RD-L", 30 * UNIT)
    late_ids = [submit_funding(d, late, permit=False)]
    throwaway_redis.start()
    back_at = time.monotonic()
    wait_for(lambda: statuses(rt, Intent, late_ids) == {"confirmed": 1}, 90, stack, "the running worker")
    again = time.monotonic() - back_at
    print(f"Redis SIGKILLed under a running worker: a funding accepted meanwhile done {again:.1f} s after")
    assert again < RECOVERY_BOUND, f"recovery took {again:.1f} s (bound {RECOVERY_BOUND} s)"
    assert worker.poll() is None and beat.poll() is None
    relayer_checks(rt, 8)
