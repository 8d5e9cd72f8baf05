"""The garbage collector of the service's long-running processes (issue 8).

A full collection (generation 2) walks every object the collector tracks, holding the GIL all along: in an
API process of ``tradeguard run`` each took 108 to 227 ms, a few times a minute under load, and every
request in flight on that process waited for it (the GET trail's p99). Nearly all of those objects are
built at start-up and live as long as the process: modules, the ORM's mappers and compiled statements, the
OpenAPI and pydantic schemas, web3's contract ABIs. :func:`settle` collects once and moves what survived
into the permanent generation, which no collection walks again (:func:`gc.freeze`); what the process
creates afterwards is collected as before. With it, the same full collections took 11 to 48 ms.

Each process calls it once, when it is ready to serve and before it takes work: an API process of
``run``, the parent of ``run`` (the sweeps), a Celery worker. How long full collections take is counted
in ``tradeguard_gc_full_collection_seconds``.
"""

from __future__ import annotations

import gc

from app.services import metrics


def settle() -> int:
    """Count this process's full collections from now on (:func:`~app.services.metrics.observe_gc`),
    collect everything unreachable now, then freeze what is left; how many objects are frozen."""
    metrics.observe_gc()
    gc.collect()
    gc.freeze()
    metrics.flush_gc()
    return gc.get_freeze_count()
