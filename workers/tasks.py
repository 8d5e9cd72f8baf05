"""Celery tasks: thin. Each takes a lock, calls one service over the process runtime, and kicks the next step.

Outcomes live in the database; the tasks return nothing. A task that finds nothing to do is cheap, so beat
runs every sweep often, and any lost or duplicated message is harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import signals
from celery.exceptions import Ignore

from app import heap
from app.errors import ChainHalted, ChainUnavailable
from app.services import metrics
from app.services.runtime import Runtime, get_runtime
from workers import sweepers
from workers.celery_app import SWEEPS, celery_app

log = logging.getLogger(__name__)

#: Seconds a sweep lock lives unless renewed. The holder renews it every third of that while its sweep runs,
#: so a worker killed while holding it (SIGKILL, OOM, power) stalls that sweep for at most this long.
LOCK_TTL_SECONDS = 10
LOCK_PREFIX = "tradeguard:lock:"
#: Set by a sweep that found the lock taken: the holder sweeps once more when it is done.
AGAIN_PREFIX = "tradeguard:again:"


@signals.worker_ready.connect(weak=False)
def settle_heap(**_: Any) -> None:
    """A Celery worker (solo pool: it runs the tasks itself) freezes its start-up heap once it is ready, as
    every long-running process of the service does (:mod:`app.heap`), and counts its full collections."""
    heap.settle()


_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


@contextmanager
def only_one(name: str, rt: Runtime, ttl: float = LOCK_TTL_SECONDS) -> Iterator[bool]:
    """Run a sweep in one place at a time (a Redis lock with a broker, a process lock when eager).

    Yields whether the lock was taken. The Redis lock lives ``ttl`` seconds and a heartbeat thread renews it
    while the sweep runs, so a dead holder blocks the sweep for ``ttl`` at most. The services are safe to run
    concurrently anyway (they claim rows), so a sweep that finds the lock taken skips, after asking the holder
    to sweep once more when it is done (its pass may have read its work before ours arrived).
    """
    if rt.settings.broker_url:
        with _redis_lock(name, rt.settings.broker_url, ttl) as got:
            yield got
        return
    with _local_guard:
        local = _local_locks.setdefault(name, threading.Lock())
    got = local.acquire(blocking=False)
    try:
        yield got
    finally:
        if got:
            local.release()


@contextmanager
def _redis_lock(name: str, url: str, ttl: float) -> Iterator[bool]:
    import redis

    # timeouts: a hung Redis must not hang the sweep (its lock then lapses, which the row claims make safe)
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    # thread_local=False: the heartbeat thread renews with the token the acquiring thread got
    lock = client.lock(LOCK_PREFIX + name, timeout=ttl, blocking=False, thread_local=False)
    again = AGAIN_PREFIX + name
    rerun = False
    try:
        got = bool(lock.acquire())
        if not got:
            client.set(again, 1, ex=max(int(ttl) * 6, 60))
            got = bool(lock.acquire())  # the holder may have finished (and missed the request) meanwhile
        if not got:
            yield False
            return
        client.delete(again)  # this pass does what earlier requests asked for
        stop = threading.Event()
        heartbeat = threading.Thread(
            target=_renew, args=(lock, name, ttl, stop), name=f"lock-{name}", daemon=True
        )
        heartbeat.start()
        try:
            yield True
        finally:
            stop.set()
            heartbeat.join()
            try:
                lock.release()
                rerun = bool(client.delete(again))
            except redis.exceptions.LockError:
                # lapsed (a stall, or Redis restarted empty): someone else may hold it now
                log.warning("%s: the sweep lock lapsed before the sweep ended", name)
            except redis.exceptions.RedisError as exc:  # Redis is down: the lock expires by itself
                log.warning("%s: releasing the sweep lock: %s", name, exc)
    finally:
        client.close()
    if rerun:
        kick(name)


def _renew(lock: Any, name: str, ttl: float, stop: threading.Event) -> None:
    """Reset the lock's TTL every ``ttl / 3`` seconds until ``stop``; give up once it is no longer ours."""
    import redis

    while not stop.wait(ttl / 3):
        try:
            lock.reacquire()
        except redis.exceptions.LockNotOwnedError:
            log.warning("%s: the sweep lock lapsed; another worker may sweep at the same time", name)
            return
        except redis.exceptions.RedisError as exc:  # a hiccup: try again at the next beat
            log.warning("%s: renewing the sweep lock: %s", name, exc)


@contextmanager
def _observed(name: str) -> Iterator[None]:
    """Time one pass of sweep ``name`` into the sweep metrics: done, failed (it raised), or halted."""
    started = time.perf_counter()
    outcome = "failed"
    try:
        yield
        outcome = "done"
    except ChainHalted:
        outcome = "halted"
        raise
    finally:
        metrics.observe_sweep(name, time.perf_counter() - started, outcome)


def _run(name: str, job: Callable[[Runtime], Any]) -> Any:
    """A Celery task's sweep: one at a time across workers; skipped (``Ignore``) when taken or halted."""
    rt = get_runtime()
    with only_one(name, rt) as got:
        if not got:
            log.debug("%s sweep skipped: another worker is running it (and sweeps again when done)", name)
            # not a success: the worker logs the task as ignored, and acknowledges it
            raise Ignore()
        try:
            with _observed(name):
                return job(rt)
        except ChainHalted as exc:
            # the guard logged the halt once (CHAIN HALTED) and /readyz names it; every beat tick would
            # otherwise log a traceback. The other sweeps (inbox, webhooks) go on.
            log.info("%s sweep not run: chain work is halted (%s)", name, exc.code)
            raise Ignore() from exc


# ---------------------------------------------------------------------------------------- the sweeps
# Each runs one pass over the process runtime, kicks the sweeps that have work because of it, and says
# whether it left work behind (the background sweepers then run it again at once).

#: Intents one relayer pass plans: several fund batches, so that a backlog drains in few passes.
RELAY_LIMIT = 200


#: How soon the relayer looks again for the receipts of transactions still in flight (dev chain, other).
RECEIPT_POLL_SECONDS = (0.2, 2.0)


def relay_step(rt: Runtime, wait_seconds: float | None = None) -> bool | float:
    """Send due intents and reconcile sent ones; kick the indexer when something was mined. Again at once
    when it sent or settled something; soon (to read their receipts) while transactions are in flight."""
    from app.services.outbox import relayer

    limit = max(RELAY_LIMIT, 2 * rt.settings.fund_batch)
    report = relayer.relay(rt, limit=limit, wait_seconds=wait_seconds)
    if report.mined:
        kick("index")
    # at once: what was settled may free intents that waited on it, and a full pass may have left due ones.
    # What was only sent is looked at after the receipt pause: asked for at once, a receipt is not there yet
    # (two to three receipt calls per order at 10,000 orders on chain, measured)
    if report.mined or report.rebroadcast or report.sent >= limit:
        return True
    if report.in_flight:
        return RECEIPT_POLL_SECONDS[0] if rt.chain.is_dev_chain else RECEIPT_POLL_SECONDS[1]
    return False


def index_step(rt: Runtime) -> bool:
    """Follow the escrow's events into the database; queue the webhooks the changes owe."""
    from app.services.index import indexer

    report = indexer.sync(rt)
    # inline (eager, no background sweepers), webhooks wait for the sweeper: a merchant's slow URL never
    # holds up the request that changed the order
    if report.webhooks and not _inline():
        kick("webhooks")
    return report.target > report.cursor


def keeper_step(rt: Runtime) -> bool:
    """Submit releases and timeout refunds that are due; kick the relayer if it submitted any."""
    from app.services.settlement import keeper

    report = keeper.sweep(rt)
    if report.submitted or report.revived:
        kick("relay")
    _audit_when_due(rt)
    return False


def _audit_when_due(rt: Runtime) -> None:
    """The service's own audit (:mod:`app.services.index.audit`) every ``settings.audit_seconds``."""
    from datetime import datetime

    from app.db.models import utcnow
    from app.services.index import audit

    every = rt.settings.audit_seconds
    if every <= 0:
        return
    last = audit.last(rt)
    if last is not None and (utcnow() - datetime.fromisoformat(last["at"])).total_seconds() < every:
        return
    try:
        audit.run(rt)
    except Exception as exc:  # the node or the database went away: the next keeper pass tries again
        log.warning("audit: %s: %s", type(exc).__name__, exc)


def inbox_step(rt: Runtime) -> bool:
    """Map stored logistics inputs to milestones, sign attestations and queue them for the relayer."""
    from app.services.inbox import ingestion

    report = ingestion.process_pending(rt, limit=INBOX_LIMIT)
    if report.intents:
        kick("relay")
    return report.processed >= INBOX_LIMIT


#: Stored logistics inputs one inbox pass processes.
INBOX_LIMIT = 50


def webhooks_step(rt: Runtime) -> bool:
    """POST due merchant webhooks."""
    from app.services.outbox import webhooks

    webhooks.deliver_due(rt)
    return False


_RETRY = {"autoretry_for": (ChainUnavailable,), "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": 5}

STEPS: dict[str, Callable[[Runtime], bool | float]] = {
    "inbox": inbox_step,
    "relay": relay_step,
    "index": index_step,
    "keeper": keeper_step,
    "webhooks": webhooks_step,
}


@celery_app.task(name="workers.tasks.relay_intents", **_RETRY)
def relay_intents() -> None:
    _run("relay", relay_step)


@celery_app.task(name="workers.tasks.index_chain", **_RETRY)
def index_chain() -> None:
    _run("index", index_step)


@celery_app.task(name="workers.tasks.keeper_sweep", **_RETRY)
def keeper_sweep() -> None:
    _run("keeper", keeper_step)


@celery_app.task(name="workers.tasks.process_inbox", **_RETRY)
def process_inbox() -> None:
    _run("inbox", inbox_step)


@celery_app.task(name="workers.tasks.deliver_webhooks")
def deliver_webhooks() -> None:
    _run("webhooks", webhooks_step)


def _inline() -> bool:
    """Whether ``kick`` runs the sweep in the caller (eager Celery, no background sweepers)."""
    return bool(celery_app.conf.task_always_eager) and not sweepers.running()


def kick(name: str) -> bool:
    """Wake the sweep now: the background sweepers' thread, a Celery worker, or (eager, with neither) the
    sweep itself, here; True in that last case (:data:`app.services.wake.Waker`). Losing this message loses
    nothing."""
    if sweepers.wake(name):
        return False
    task = celery_app.tasks[SWEEPS[name]]
    inline = _inline()
    try:
        task.delay()
    except Exception as exc:
        # The caller's change is committed already: a failure here (a broker hiccup; eagerly, the sweep
        # itself) must not turn its answer into an error. The database says what is pending; the next
        # sweep (beat, or the background sweepers) does it.
        log.warning("%s: %s: %s; the next sweep retries", name, type(exc).__name__, exc)
    return inline


def start_background(rt: Runtime, stop: threading.Event) -> sweepers.Sweepers:
    """The default mode's workers (no broker): every sweep on its own thread in this process.

    The relayer does not wait for receipts inside a pass: it sends and goes on, and its next pass (at once,
    while it has work) settles what was mined.
    """

    def step(name: str) -> sweepers.Step:
        job = STEPS[name] if name != "relay" else (lambda r: relay_step(r, wait_seconds=0))

        def run() -> bool | float:
            with only_one(name, rt) as got:
                if not got:  # someone called the sweep directly meanwhile (tests): it does the work
                    return False
                try:
                    with _observed(name):
                        return job(rt)
                except ChainHalted as exc:
                    log.info("%s sweep not run: chain work is halted (%s)", name, exc.code)
                    return False

        return run

    lock = rt.lock if rt.chain.backend == "embedded" else None
    return sweepers.Sweepers(
        {n: step(n) for n in STEPS}, rt.settings.sweep_seconds, stop, lock, nice=rt.settings.sweep_nice
    ).start()


def sweep_all() -> None:
    """Every sweep once, in dependency order, in the caller (tests call this)."""
    for name in ("inbox", "relay", "index", "keeper", "relay", "index", "webhooks"):
        celery_app.tasks[SWEEPS[name]].apply()
