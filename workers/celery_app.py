"""The Celery application. Redis only wakes workers: every task re-reads its work from the database.

Without ``TRADEGUARD_BROKER_URL`` tasks run eagerly, in the caller's process. With it, workers acknowledge
late, take one task at a time, re-queue a task whose worker died, and beat re-enqueues the sweeps every
``TRADEGUARD_SWEEP_SECONDS``: whatever a lost message would have done, the next sweep does (TOOLCHAIN.md).

Recovery from a worker killed mid-sweep does not wait for Celery's redelivery of its message (after the
``visibility_timeout``): beat's next sweep runs once the dead worker's sweep lock expires
(``workers.tasks.LOCK_TTL_SECONDS``), so within ``sweep_seconds`` + that TTL of a worker being up again. The
visibility timeout stays above the longest retry countdown (60 s) plus a sweep, else Redis would hand a task
that is waiting for its retry to a second worker again and again.

Logs: a worker and beat write the API's log lines (:func:`app.logs.configure`: with
``TRADEGUARD_LOG_FORMAT=json`` one JSON object per line), set up on Celery's own logging signals, with the
task's name and id on the lines a task writes; the relayer's lines carry the ``request_id`` of the request
that submitted each intent, beside the transaction's hash.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from app import logs
from app.config import Settings, get_settings

SWEEPS = {
    "relay": "workers.tasks.relay_intents",
    "index": "workers.tasks.index_chain",
    "keeper": "workers.tasks.keeper_sweep",
    "inbox": "workers.tasks.process_inbox",
    "webhooks": "workers.tasks.deliver_webhooks",
}


def configure(app: Celery, settings: Settings) -> None:
    """(Re)apply the settings to ``app``: the CLI and tests call this after changing the settings.

    Connections made under the old settings are dropped (as Celery does after a fork), so that a changed
    broker URL takes effect: otherwise the cached producer pool keeps publishing to the old broker.
    """
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    app.conf.update(
        broker_url=settings.broker_url or "memory://",
        task_always_eager=settings.eager,
        task_eager_propagates=True,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # a dead Redis must not hold up a request that kicks a sweep for long (it answers 202 regardless)
        broker_transport_options={
            "visibility_timeout": 120,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 2,
        },
        task_default_queue="tradeguard",
        timezone="UTC",
        beat_schedule={
            f"sweep-{name}": {
                "task": task,
                "schedule": settings.sweep_seconds,
                "options": {"expires": max(settings.sweep_seconds * 5, 10)},
            }
            for name, task in SWEEPS.items()
        },
    )


celery_app = Celery("tradeguard", include=["workers.tasks"])
configure(celery_app, get_settings())


class TaskContext(logging.Filter):
    """Stamps ``task_name`` and ``task_id`` of the Celery task this thread runs (if any) on each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        from celery._state import get_current_task

        task = get_current_task()
        if task is not None and getattr(task.request, "id", None) is not None:
            record.task_name, record.task_id = task.name, task.request.id
        return True


def structured_logs(logger: logging.Logger, **_: Any) -> None:
    """Celery's ``after_setup_logger`` and ``after_setup_task_logger``: once Celery has set up the worker's
    (or beat's) handlers, they write what the API writes (:func:`app.logs.configure`), and in the JSON format
    with the running task's name and id."""
    settings = get_settings()
    logs.configure(settings, logger)
    if settings.log_format != "json":
        return
    for handler in logger.handlers:
        if not any(isinstance(f, TaskContext) for f in handler.filters):
            handler.addFilter(TaskContext())


signals.after_setup_logger.connect(structured_logs, weak=False)
signals.after_setup_task_logger.connect(structured_logs, weak=False)
