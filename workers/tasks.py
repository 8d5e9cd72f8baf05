"""Celery tasks: thin. Each takes a lock, calls one service over the process runtime, and kicks the next step.

Outcomes live in the database; the tasks return nothing. A task that finds nothing to do is cheap, so beat
runs every sweep often, and any lost or duplicated message is harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from app.errors import ChainUnavailable
from app.services.runtime import Runtime, get_runtime
from workers.celery_app import SWEEPS, celery_app

log = logging.getLogger(__name__)

_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


@contextmanager
def only_one(name: str, rt: Runtime, timeout: int = 300) -> Iterator[bool]:
    """Run a sweep in one place at a time (a Redis lock with a broker, a process lock when eager).

    Yields whether the lock was taken; the services are safe to run concurrently anyway (they claim rows),
    so a sweep that finds the lock taken just skips.
    """
    if rt.settings.broker_url:
        import redis

        client = redis.Redis.from_url(rt.settings.broker_url)
        lock = client.lock(f"tradeguard:lock:{name}", timeout=timeout, blocking=False)
        got = bool(lock.acquire())
        try:
            yield got
        finally:
            if got:
                try:
                    lock.release()
                except redis.exceptions.LockError:  # expired meanwhile: someone else may hold it now
                    pass
            client.close()
        return
    with _local_guard:
        local = _local_locks.setdefault(name, threading.Lock())
    got = local.acquire(blocking=False)
    try:
        yield got
    finally:
        if got:
            local.release()


def _run(name: str, job: Callable[[Runtime], Any]) -> Any:
    rt = get_runtime()
    with only_one(name, rt) as got:
        if not got:
            return None
        return job(rt)


_RETRY = {"autoretry_for": (ChainUnavailable,), "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": 5}


@celery_app.task(name="workers.tasks.relay_intents", **_RETRY)
def relay_intents() -> None:
    """Send due intents and reconcile sent ones; kick the indexer when something was mined."""
    from app.services import relayer

    report = _run("relay", relayer.relay)
    if report is not None and report.mined:
        kick("index")


@celery_app.task(name="workers.tasks.index_chain", **_RETRY)
def index_chain() -> None:
    """Follow the escrow's events into the database."""
    from app.services import indexer

    report = _run("index", indexer.sync)
    # eagerly, webhooks wait for the sweeper: a merchant's slow URL never holds up the request that changed
    # the order (with workers they go out at once)
    if report is not None and report.webhooks and not celery_app.conf.task_always_eager:
        kick("webhooks")


@celery_app.task(name="workers.tasks.keeper_sweep", **_RETRY)
def keeper_sweep() -> None:
    """Submit releases and timeout refunds that are due; kick the relayer if it submitted any."""
    from app.services import keeper

    report = _run("keeper", keeper.sweep)
    if report is not None and (report.submitted or report.revived):
        kick("relay")


@celery_app.task(name="workers.tasks.process_inbox", **_RETRY)
def process_inbox() -> None:
    """Map stored logistics inputs to milestones, sign attestations and queue them for the relayer."""
    from app.services import ingestion

    report = _run("inbox", ingestion.process_pending)
    if report is not None and report.intents:
        kick("relay")


@celery_app.task(name="workers.tasks.deliver_webhooks")
def deliver_webhooks() -> None:
    """POST due merchant webhooks."""
    from app.services import webhooks

    _run("webhooks", webhooks.deliver_due)


def kick(name: str) -> None:
    """Wake the worker for one sweep now (eagerly: run it here). Losing this message loses nothing."""
    task = celery_app.tasks[SWEEPS[name]]
    try:
        task.delay()
    except Exception as exc:
        # The caller's change is committed already: a failure here (a broker hiccup; eagerly, the sweep
        # itself) must not turn its answer into an error. The database says what is pending; the next
        # sweep (beat, or the eager sweeper thread) does it.
        log.warning("%s: %s: %s; the next sweep retries", name, type(exc).__name__, exc)


def sweep_all() -> None:
    """Every sweep once, in dependency order (the eager-mode sweeper thread and tests call this)."""
    for name in ("inbox", "relay", "index", "keeper", "relay", "index", "webhooks"):
        celery_app.tasks[SWEEPS[name]].apply()
