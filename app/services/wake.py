"""Waking a sweep: after a request stored work for one (an intent for the relayer, an input for the inbox, a
moved clock for the keeper), it says so with :func:`wake`.

Who is woken depends on how the process runs: the background sweeper threads of ``tradeguard run``, the
parent process over a pipe (``--workers N``), a Celery worker through the broker, or, eagerly, the sweep run
right there. The process's composition root decides once, with :func:`install` (the API's
:func:`app.main.create_app` installs :func:`workers.tasks.kick`), so that the routes and services need
not know which. Losing a wake loses nothing: the database says what is pending, and every sweep also runs
on its own period.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

from app.db.session import without_first_write

Sweep = Literal["relay", "inbox", "index", "keeper", "webhooks"]
#: Hears a wake; returns whether it ran the sweep itself, in the caller, before returning (eagerly).
Waker = Callable[[str], bool]

_waker: Waker | None = None
_lock = threading.Lock()


def install(waker: Waker | None) -> None:
    """Route this process's wakes to ``waker`` (None: nobody; the sweeps' own period still runs them)."""
    global _waker
    with _lock:
        _waker = waker


def wake(sweep: Sweep) -> bool:
    """Tell ``sweep`` there is work; never raises for the caller, whose change is committed already.
    True when the sweep ran right here before this returned (eagerly): only then may what the caller stored
    have moved on already."""
    with _lock:
        waker = _waker
    if waker is None:
        return False
    with without_first_write():  # an eager sweep run right here is not the request's own write
        return waker(sweep)


__all__ = ["Sweep", "Waker", "install", "wake"]
