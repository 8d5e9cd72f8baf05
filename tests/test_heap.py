"""The service processes' garbage collector: start-up objects frozen, full collections counted."""

from __future__ import annotations

import gc
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
    assert _full_collections() == before + 2
