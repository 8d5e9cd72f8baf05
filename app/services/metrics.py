"""Operator signals for Prometheus (``GET /metrics``): request latency, and the backlog of every sweep.

Two kinds of series:

- **Counted in process**: :data:`REQUEST_SECONDS`, a histogram of every HTTP request by method, route
  *template* (``/v1/orders/{order_id}``, never the raw path, so an id cannot blow up the series count; a
  path no route matched is ``unmatched``) and status. Its ``_count`` is the request rate.
  :data:`REQUESTS_IN_PROGRESS`, and per sweep (relay, index, keeper, inbox, webhooks, wherever it runs:
  background thread or Celery task) :data:`SWEEP_SECONDS` and :data:`SWEEP_LAST_SUCCESS`.
- **Several processes** (``tradeguard run`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh directory it owns
  before any of its processes imports prometheus-client): every process writes its in-process series to
  files there, and a scrape of any API process merges them all (:data:`MULTIPROCESS`,
  :class:`~prometheus_client.multiprocess.MultiProcessCollector`): the request counts of every API process,
  the parent's sweeps, the Celery worker it started. Counters and histograms of a process that exited stay
  counted; its live gauges are dropped (``mark_process_dead``, called by ``tradeguard run``).
- **Read at scrape time** (:func:`scrape`): everything the database is the record of (intents by kind and
  status, the relayer's backlog and its oldest item, the inbox backlog, webhook deliveries and failed
  attempts, orders by status, the indexer's cursor, the chain halt flag, what the keeper finds due) in one
  read transaction (no write lock, one snapshot), plus what only the node knows (the head block with
  its time, the gas wallet's balance and the relayer's nonce). Nothing is cached between scrapes: a gauge
  is never stale.

The node is asked once per scrape (the latest block, the balance, the nonce), outside any transaction, on a
helper thread the scrape waits for at most :data:`NODE_TIMEOUT_SECONDS`; a probe that is still running (a
hung node) is not started again, and the scrape answers without the node's series and with
``tradeguard_node_up 0``. On the in-process chain (eth-tester) the probe runs inline: the request holds the
runtime lock and the chain cannot hang.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import InboxItem, Intent, KeyValue, Order, WebhookAttempt, WebhookDelivery, utcnow
from app.db.session import observe_writes, read_transaction
from app.services import chain_guard
from app.services.index import audit, indexer
from app.services.outbox import nonce_manager, relayer
from app.services.runtime import Runtime
from app.services.settlement import keeper

#: Content type of the Prometheus text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: How long a scrape waits for the node (head block and balance) before answering without them.
NODE_TIMEOUT_SECONDS = 2.0
#: Inbox items still to be processed.
INBOX_BACKLOG = ("received",)

#: Whether this process writes its in-process series for a multiprocess scrape (``PROMETHEUS_MULTIPROC_DIR``
#: was set when prometheus-client was first imported): then a scrape merges every process's files.
MULTIPROCESS = values.ValueClass is not values.MutexValue

REGISTRY = CollectorRegistry(auto_describe=True)
REQUEST_SECONDS = Histogram(
    "tradeguard_http_request_duration_seconds",
    "HTTP requests by method, route template and status: latency (seconds); _count is the request rate",
    ("method", "route", "status"),
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


REQUESTS_IN_PROGRESS = Gauge(
    "tradeguard_http_requests_in_progress",
    "HTTP requests being served now (summed over the live API processes)",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
SWEEP_SECONDS = Histogram(
    "tradeguard_sweep_duration_seconds",
    "Sweep passes (relay, index, keeper, inbox, webhooks) by outcome (done, failed, halted): seconds",
    ("sweep", "outcome"),
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
SWEEP_LAST_SUCCESS = Gauge(
    "tradeguard_sweep_last_success_timestamp_seconds",
    "When a pass of the sweep last ended without an error (UNIX time; the latest over every process)",
    ("sweep",),
    registry=REGISTRY,
    multiprocess_mode="max",
)


DB_WRITE_SECONDS = Histogram(
    "tradeguard_db_write_seconds",
    "Write transactions by the function that opened them: waiting for the database's write lock "
    "(phase=wait; SQLite: one writer at a time) and holding it to the end of the commit (phase=hold): "
    "seconds",
    ("site", "phase"),
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)


GC_FULL_SECONDS = Histogram(
    "tradeguard_gc_full_collection_seconds",
    "Full (generation 2) garbage collections of the service's processes: how long each held its process "
    "(every request in flight on an API process waits for it; see app.heap)",
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
_gc_started: list[float] = []
#: Full collections timed by :func:`on_gc` and not yet in :data:`GC_FULL_SECONDS` (see :func:`flush_gc`).
_gc_pauses: deque[float] = deque(maxlen=10_000)


def on_gc(phase: str, info: dict[str, int]) -> None:
    """The collector's callback (:data:`gc.callbacks`): times each full collection into :data:`_gc_pauses`;
    the younger generations' collections cost a check and nothing more.

    It never observes a metric itself. A collection starts at any allocation, and prometheus-client holds one
    process-wide lock while it writes a value (multiprocess mode), allocating: a callback that took that lock
    in the thread already holding it would wait for ever. :func:`flush_gc` moves the pauses later, wherever
    the service counts something anyway."""
    if info["generation"] != 2:
        return
    if phase == "start":
        _gc_started[:] = [time.perf_counter()]
    elif _gc_started:
        _gc_pauses.append(time.perf_counter() - _gc_started.pop())  # a deque append takes no lock


def flush_gc() -> None:
    """Observe the full collections timed since the last flush (outside the collector's callback)."""
    while _gc_pauses:
        try:
            pause = _gc_pauses.popleft()
        except IndexError:  # another thread flushed the last one
            return
        GC_FULL_SECONDS.observe(pause)


def observe_gc() -> None:
    """Count this process's full garbage collections from now on (once per process, however often asked):
    they reach :data:`GC_FULL_SECONDS` at the next request, sweep pass or scrape of this process."""
    if on_gc not in gc.callbacks:
        gc.callbacks.append(on_gc)


def observe_write(site: str, wait: float, hold: float) -> None:
    """Count one write transaction opened by ``site`` (see :func:`app.db.session.observe_writes`)."""
    DB_WRITE_SECONDS.labels(site, "wait").observe(wait)
    DB_WRITE_SECONDS.labels(site, "hold").observe(hold)


observe_writes(observe_write)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one served HTTP request (``route`` is the template it matched, or ``unmatched``)."""
    REQUEST_SECONDS.labels(method, route, str(status)).observe(seconds)
    flush_gc()


#: How a sweep pass ended: without an error, with one, or refused because chain work is halted.
SWEEP_OUTCOMES = ("done", "failed", "halted")


def observe_sweep(sweep: str, seconds: float, outcome: str) -> None:
    """Count one pass of ``sweep`` that took ``seconds`` and ended with ``outcome`` (:data:`SWEEP_OUTCOMES`);
    a ``done`` pass also sets the sweep's last success time."""
    SWEEP_SECONDS.labels(sweep, outcome).observe(seconds)
    if outcome == "done":
        SWEEP_LAST_SUCCESS.labels(sweep).set(time.time())
    flush_gc()


def in_process_registry() -> CollectorRegistry:
    """The in-process series to answer: this process's, or every process's files merged (multiprocess)."""
    if not MULTIPROCESS:
        return REGISTRY
    from prometheus_client.multiprocess import MultiProcessCollector

    merged = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


def process_exited(pid: int) -> None:
    """Multiprocess mode: drop the live gauges of a process that exited (its counters stay counted)."""
    if MULTIPROCESS:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class NodeReading:
    """What one scrape learnt from the node."""

    head: int
    chain_time: int
    gas_wallet_wei: int
    #: the relayer's next nonce as the node counts it (its pool included)
    relayer_nonce: int


def _read_node(rt: Runtime) -> NodeReading:
    # one eth_getBlockByNumber for the head and its time (ChainClient asks for them separately), one balance,
    # one nonce
    latest = rt.chain.w3.eth.get_block("latest")
    address = rt.relayer.address
    return NodeReading(
        int(latest["number"]), int(latest["timestamp"]), rt.chain.balance(address), rt.chain.nonce(address)
    )


class _NodeProbe:
    """At most one node probe in flight per process; a scrape waits for it a bounded time."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-node")
        self._lock = threading.Lock()
        self._running: Future[NodeReading] | None = None

    def read(self, rt: Runtime, timeout: float) -> NodeReading | None:
        """The node's reading, or None when it failed or did not answer within ``timeout`` seconds."""
        if rt.chain.backend == "embedded":
            try:
                return _read_node(rt)
            except Exception:  # an eth-tester failure is as good as a node that does not answer
                return None
        with self._lock:
            if self._running is not None and not self._running.done():
                return None  # the previous scrape's probe still hangs: do not pile up another
            running = self._running = self._executor.submit(_read_node, rt)
        try:
            return running.result(timeout=timeout)
        except Exception:  # a timeout, or any node or transport error: the node is down for this scrape
            return None


_PROBE = _NodeProbe()


class _Snapshot(Collector):
    """Hands the families computed for one scrape to ``generate_latest``."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def scrape(rt: Runtime, timeout: float = NODE_TIMEOUT_SECONDS) -> bytes:
    """Every metric in the Prometheus text format: the in-process counters and a fresh snapshot."""
    flush_gc()
    node = _PROBE.read(rt, timeout)  # before the transaction: no network call inside one
    with read_transaction(rt.db) as s:
        families = list(_database_families(s, rt, node, utcnow()))
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(_Snapshot(families))
    return generate_latest(in_process_registry()) + generate_latest(snapshot)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _age(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


def _database_families(s: Session, rt: Runtime, node: NodeReading | None, now: datetime) -> Iterator[Metric]:
    intents = GaugeMetricFamily(
        "tradeguard_intents", "Intents (outbox rows) by kind and status", labels=("kind", "status")
    )
    for kind, status, count in s.execute(
        select(Intent.kind, Intent.status, func.count()).group_by(Intent.kind, Intent.status)
    ):
        intents.add_metric((kind, status), count)
    yield intents

    waiting = (relayer.PENDING, relayer.SENT)
    pending, oldest = s.execute(
        select(func.count(), func.min(Intent.created_at)).where(Intent.status.in_(waiting))
    ).one()
    yield _gauge(
        "tradeguard_relayer_pending_intents", "Intents the relayer has not settled (pending or sent)", pending
    )
    yield _gauge(
        "tradeguard_relayer_oldest_pending_age_seconds",
        "Age of the oldest intent still pending or sent (0 when there is none)",
        _age(now, oldest),
    )

    backlog = GaugeMetricFamily(
        "tradeguard_inbox_backlog", "Inbox items received but not processed, by source", labels=("source",)
    )
    oldest_item: datetime | None = None
    for source, count, first in s.execute(
        select(InboxItem.source, func.count(), func.min(InboxItem.received_at))
        .where(InboxItem.status.in_(INBOX_BACKLOG))
        .group_by(InboxItem.source)
    ):
        backlog.add_metric((source,), count)
        oldest_item = first if oldest_item is None or first < oldest_item else oldest_item
    yield backlog
    yield _gauge(
        "tradeguard_inbox_oldest_age_seconds",
        "Age of the oldest unprocessed inbox item (0 when none)",
        _age(now, oldest_item),
    )

    deliveries = GaugeMetricFamily(
        "tradeguard_webhook_deliveries", "Merchant webhook deliveries by status", labels=("status",)
    )
    for status, count in s.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    ):
        deliveries.add_metric((status,), count)
    yield deliveries
    failed_attempts = s.scalar(
        select(func.count()).select_from(WebhookAttempt).where(WebhookAttempt.error.is_not(None))
    )
    yield CounterMetricFamily(
        "tradeguard_webhook_failed_attempts",
        "Webhook POSTs that did not get a 2xx (timeouts, refusals, non-2xx answers), from the delivery log",
        value=failed_attempts or 0,
    )

    orders = GaugeMetricFamily("tradeguard_orders", "Orders by status", labels=("status",))
    for status, count in s.execute(select(Order.status, func.count()).group_by(Order.status)):
        orders.add_metric((status,), count)
    yield orders

    yield _gauge(
        "tradeguard_chain_halted",
        "1 while chain work is halted (deep reorg, or another chain)",
        int(chain_guard.stored_halt(s) is not None),
    )
    cursor = indexer.cursor(s)
    if cursor is not None:
        yield _gauge("tradeguard_indexer_cursor_block", "Last block the indexer has applied", cursor)
    audited = s.get(KeyValue, audit.AUDIT_KEY)
    if audited is not None:
        yield _gauge(
            "tradeguard_audit_disagreements",
            "Disagreements the last periodic audit found (index vs chain, rows vs events): alert on > 0",
            int(audited.value["disagreements"]),
        )
        yield _gauge(
            "tradeguard_audit_last_run_timestamp_seconds",
            "When the periodic audit last ran (UNIX time)",
            datetime.fromisoformat(audited.value["at"]).timestamp(),
        )

    yield _gauge("tradeguard_node_up", "1 when the node answered this scrape in time", int(node is not None))
    if node is None:
        return
    yield _gauge("tradeguard_chain_head_block", "The node's latest block", node.head)
    if cursor is not None:
        behind = node.head - rt.settings.confirmation_depth - cursor
        yield _gauge(
            "tradeguard_indexer_lag_blocks",
            "Blocks the indexer is behind the head, beyond the confirmation depth it waits for on purpose",
            max(0, behind),
        )
    yield _gauge(
        "tradeguard_gas_wallet_balance_wei", "The relayer's gas wallet balance (wei)", node.gas_wallet_wei
    )
    stored = s.get(KeyValue, nonce_manager.nonce_key(rt.relayer.address))
    allocated = int((stored.value if stored is not None else {}).get("next", node.relayer_nonce))
    yield _gauge(
        "tradeguard_relayer_nonce_gap",
        "Nonces the relayer allocated that the node has not seen (a lost transaction holds every later one)",
        max(0, allocated - node.relayer_nonce),
    )
    due = GaugeMetricFamily(
        "tradeguard_keeper_due_orders",
        "Orders whose release, timeout refund or ERC-792 ruling execution is due at the chain's time but not "
        "done yet",
        labels=("action",),
    )
    counts = {"release": 0, "timeout_refund": 0, "execute_ruling": 0}
    for order in s.scalars(keeper.candidates(node.chain_time)):
        action = keeper.due_action(order, node.chain_time)
        if action is not None:
            counts[action] = counts.get(action, 0) + 1
    for action, count in counts.items():
        due.add_metric((action,), count)
    yield due


__all__ = [
    "CONTENT_TYPE",
    "NODE_TIMEOUT_SECONDS",
    "MULTIPROCESS",
    "REGISTRY",
    "REQUESTS_IN_PROGRESS",
    "REQUEST_SECONDS",
    "SWEEP_LAST_SUCCESS",
    "SWEEP_OUTCOMES",
    "SWEEP_SECONDS",
    "NodeReading",
    "in_process_registry",
    "observe_request",
    "observe_sweep",
    "process_exited",
    "scrape",
]
