"""A tripwire for network calls made inside an open database write transaction.

While a write transaction is open — SQLite's ``BEGIN IMMEDIATE`` holds the database-wide write lock, a
PostgreSQL transaction may hold row locks — a network call (JSON-RPC, HTTP, DNS) can take seconds and every
other writer waits behind it. This module only knows about transactions: once :func:`arm`-ed it follows, per
connection, every transaction that SQLAlchemy begins (explicitly with :func:`~app.db.session.transaction`, or
implicitly by a session's autobegin) until its commit or rollback, and which thread began it. Transactions on
connections marked :data:`~app.db.session.READ_ONLY` (:func:`~app.db.session.read_transaction`) and on
``AUTOCOMMIT`` connections are not write transactions and are not followed.

Whoever wraps a network exit calls :func:`check` before it: the call is refused with
:class:`NetworkInWriteTransaction` (an ``AssertionError``) naming the call and where the transaction began,
and the violation is also kept (:func:`take_violations`), so that one swallowed by a broad ``except`` still
fails the test. The test fixtures in ``tests/service_fixtures.py`` wrap the chain client's JSON-RPC, outbound
HTTP and DNS; :mod:`app.chain` does not import this module (layering).
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
import weakref
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from app.db.session import READ_ONLY

#: Frames of the project's own code (not of installed packages) are the ones shown for "where it began".
_ROOT = str(Path(__file__).resolve().parents[2]) + os.sep
_THIS_FILE = str(Path(__file__).resolve())


class NetworkInWriteTransaction(AssertionError):
    """A network call was made while the calling thread had a database write transaction open."""


#: Frames kept of where a transaction began.
_FRAMES = 6


class _Open:
    __slots__ = ("frames", "thread")

    def __init__(self, thread: int, frames: list[traceback.FrameSummary]) -> None:
        self.thread = thread
        self.frames = frames

    def where(self) -> str:
        return "".join(traceback.format_list(self.frames)).rstrip()


def _where_now() -> list[traceback.FrameSummary]:
    """The innermost frames of our own code (else of any code), outermost first; cheap enough to run at every
    BEGIN (no source lines are read until a violation is reported)."""
    own: list[traceback.FrameSummary] = []
    other: list[traceback.FrameSummary] = []
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and len(own) < _FRAMES:
        name = frame.f_code.co_filename
        mine = name.startswith(_ROOT) and "site-packages" not in name and name != _THIS_FILE
        if mine or len(other) < _FRAMES:
            summary = traceback.FrameSummary(name, frame.f_lineno, frame.f_code.co_name, lookup_line=False)
            (own if mine else other).append(summary)
        frame = frame.f_back
    return list(reversed(own or other))


_lock = threading.Lock()
_open: weakref.WeakKeyDictionary[Connection, _Open] = weakref.WeakKeyDictionary()
_violations: list[str] = []
_armed = 0


def _on_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    if options.get(READ_ONLY, False) or options.get("isolation_level") == "AUTOCOMMIT":
        return
    where = _where_now()
    with _lock:
        _open[conn] = _Open(threading.get_ident(), where)


def _on_end(conn: Connection) -> None:
    with _lock:
        _open.pop(conn, None)


def arm() -> None:
    """Start following write transactions on every engine (nests: each call needs one :func:`disarm`)."""
    global _armed
    with _lock:
        _armed += 1
        if _armed > 1:
            return
    event.listen(Engine, "begin", _on_begin)
    event.listen(Engine, "commit", _on_end)
    event.listen(Engine, "rollback", _on_end)


def disarm() -> None:
    """Undo one :func:`arm`; the last one stops following transactions and forgets the open ones."""
    global _armed
    with _lock:
        _armed = max(0, _armed - 1)
        if _armed:
            return
        _open.clear()
    for name, fn in (("begin", _on_begin), ("commit", _on_end), ("rollback", _on_end)):
        if event.contains(Engine, name, fn):
            event.remove(Engine, name, fn)


def armed() -> bool:
    """Whether write transactions are being followed."""
    return _armed > 0


def open_write_transaction() -> str | None:
    """Where the calling thread's open write transaction began (a short traceback), or None if it has none."""
    me = threading.get_ident()
    with _lock:
        found = [o for o in _open.values() if o.thread == me]
    return found[0].where() if found else None


def check(call: str) -> None:
    """Refuse the network call described by ``call`` if the calling thread has a write transaction open.

    Raises :class:`NetworkInWriteTransaction`, and keeps the violation for :func:`take_violations`.
    """
    if not _armed:
        return
    where = open_write_transaction()
    if where is None:
        return
    message = (
        f"network call {call} inside an open database write transaction "
        f"(thread {threading.current_thread().name}); the transaction began at:\n{where}"
    )
    with _lock:
        _violations.append(message)
    raise NetworkInWriteTransaction(message)


def take_violations() -> list[str]:
    """The violations seen since the last call (and forget them)."""
    with _lock:
        taken = list(_violations)
        _violations.clear()
    return taken


def describe(method: Any, params: Any = None) -> str:
    """A short name for a call in a violation message (``eth_getBlockByNumber(['latest', False])``)."""
    shown = repr(params)
    return f"{method}({shown[:80]}{'…' if len(shown) > 80 else ''})" if params is not None else str(method)


__all__ = [
    "NetworkInWriteTransaction",
    "arm",
    "armed",
    "check",
    "describe",
    "disarm",
    "open_write_transaction",
    "take_violations",
]
