"""The sweep lock on the real Redis: short-lived, renewed while held, and honest about a skipped sweep.

A worker killed while holding a lock cannot release it; the lock then blocks that sweep until it expires.
So it lives only :data:`~workers.tasks.LOCK_TTL_SECONDS` and a heartbeat renews it while the sweep runs
(tests/faults measures the recovery of real killed workers end to end).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from celery.exceptions import Ignore

from app.services.outbox import webhooks
from app.services.runtime import Runtime, set_runtime
from tests.service_fixtures import make_settings
from workers import tasks
from workers.celery_app import celery_app, configure

pytestmark = [pytest.mark.redis]


@pytest.fixture
def broker_url(worker_id: str) -> Iterator[str]:
    # databases 14 and 15: away from the worker tests' (10, 11) and the fault tests' (12, 13)
    url = f"redis://127.0.0.1:6379/{14 + (int(worker_id[2:]) if worker_id.startswith('gw') else 0)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def rt(runtime: Runtime, broker_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """The test runtime with a broker: tasks publish to ``broker_url``, locks live there."""
    settings = runtime.settings.model_copy(update={"broker_url": broker_url})
    rt = dataclasses.replace(runtime, settings=settings)
    configure(celery_app, settings)
    set_runtime(rt)
    try:
        yield rt
    finally:
        set_runtime(None)
        configure(celery_app, make_settings("sqlite://", tmp_path))  # back to eager for the other tests


def test_a_lock_outlives_its_ttl_while_held_and_is_released_after(rt: Runtime, broker_url: str) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    key = tasks.LOCK_PREFIX + name
    client = redis.Redis.from_url(broker_url)
    with tasks.only_one(name, rt, ttl=0.9) as got:
        assert got
        time.sleep(2.0)  # more than twice the TTL: only the heartbeat keeps it
        assert 0 < client.pttl(key) <= 900
    assert not client.exists(key)
    client.close()


def test_a_dead_holders_lock_blocks_only_until_its_ttl(rt: Runtime, broker_url: str) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(broker_url)
    # what a SIGKILLed worker leaves: a lock nobody renews or releases
    assert client.lock(tasks.LOCK_PREFIX + name, timeout=1.0).acquire(blocking=False)
    taken_at = time.monotonic()
    with tasks.only_one(name, rt, ttl=1.0) as got:
        assert not got
    while True:
        with tasks.only_one(name, rt, ttl=1.0) as got:
            if got:
                break
        assert time.monotonic() - taken_at < 3.0, "the dead holder's lock did not expire"
        time.sleep(0.05)
    client.close()
    # the real TTL: a killed worker's sweep is blocked for no more than this (recovery < 30 s end to end)
    assert tasks.LOCK_TTL_SECONDS <= 15


def test_a_skipped_sweep_is_not_a_success_and_the_holder_sweeps_again(rt: Runtime, broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    ran: list[str] = []
    with tasks.only_one("webhooks", rt) as got:
        assert got
        # another worker's sweep arrives meanwhile: it skips without running, the task is ignored
        with pytest.raises(Ignore):
            tasks._run("webhooks", lambda _rt: ran.append("second"))
        assert ran == []
        assert client.exists(tasks.AGAIN_PREFIX + "webhooks")
        assert client.llen("tradeguard") == 0
    # the holder, done, asked for one more sweep: a deliver_webhooks message is on the queue
    assert not client.exists(tasks.AGAIN_PREFIX + "webhooks")
    queued = [json.loads(m) for m in client.lrange("tradeguard", 0, -1)]
    assert [m["headers"]["task"] for m in queued] == ["workers.tasks.deliver_webhooks"]
    client.close()


def test_a_sweep_alone_runs_and_asks_for_nothing_more(rt: Runtime, broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    assert tasks._run("webhooks", lambda _rt: "done") == "done"
    assert client.llen("tradeguard") == 0 and not client.keys("tradeguard:*")
    client.close()


def test_a_webhook_claimed_by_a_killed_worker_is_sent_again_within_30_s() -> None:
    # the claim lease is the delay before another worker sends it (tests/services/test_webhooks.py's
    # test_a_worker_lost_mid_send_leads_to_one_resend); a beat tick and a worker's start come on top
    assert webhooks.CLAIM_LEASE <= timedelta(seconds=20)
