"""The service processes' garbage collector: start-up objects frozen, full collections counted."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from app import heap
from app.services import metrics

FULL_COUNT = "tradeguard_gc_full_collection_seconds_count"


def _full_collections() -> float:
    return metrics.REGISTRY.get_sample_value(FULL_COUNT) or 0.0


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.disable()  # no automatic collection in between: only the test's own are counted
    try:
        yield
    finally:
        gc.unfreeze()  # the rest of the test process collects as before
        gc.enable()


class _Node:
    me: object


def test_settle_freezes_what_survives_and_what_comes_later_is_still_collected(unfrozen: None) -> None:
    metrics.observe_gc()  # already observed or not, settle counts its own collection
    before = _full_collections()
    frozen = heap.settle()
    assert frozen > 1000  # this process's modules, classes and functions at least
    assert gc.get_freeze_count() == frozen
    assert _full_collections() == before + 1  # counted once: the callback is installed once per process
    assert gc.callbacks.count(metrics.on_gc) == 1

    cycle = _Node()
    cycle.me = cycle  # only the cycle collector frees this
    ref = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert ref() is None
    metrics.flush_gc()  # what a request, a sweep pass or a scrape does
    assert _full_collections() == before + 2


def test_a_full_collection_inside_a_metric_write_does_not_wait_for_the_metrics_lock(unfrozen: None) -> None:
    """A collection can start at any allocation, also inside prometheus-client's write of a value, under its
    lock: the collector's callback must not take that lock (it would wait for itself)."""
    metrics.observe_gc()
    metrics.flush_gc()
    before = _full_collections()
    lock = metrics.GC_FULL_SECONDS._sum._lock  # the value's lock (one process-wide lock in multiprocess mode)

    def collect_under_the_lock() -> None:
        with lock:
            gc.collect()

    worker = threading.Thread(target=collect_under_the_lock, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the collector's callback waited for the metric's lock"
    assert _full_collections() == before  # timed, not yet observed
    metrics.flush_gc()
    assert _full_collections() == before + 1
