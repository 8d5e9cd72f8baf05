"""ASGI middleware: request body limits, and ``Idempotency-Key`` on every POST.

An idempotent POST is recorded before it runs and its answer afterwards (kept ``idempotency_ttl_seconds``,
at least 24 h). The same key again replays the stored answer (header ``Idempotent-Replayed: true``); the same
key with another request is a 422; a key whose first request is still running is a 409. A 5xx answer is not
kept, so the client can retry. Keys are scoped to the caller's API key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from anyio.lowlevel import RunVar
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import AuthError, FeedError
from app.feeds.hashing import check_nesting
from app.services import idempotency
from app.services.principals import Principal, read_as
from app.services.principals import touch as touch_key
from app.services.runtime import Runtime, get_runtime

T = TypeVar("T")

PROBLEM = b"application/problem+json"
#: JSON bodies nest at most this deep. py-evm raises Python's recursion limit to 100 000, so a deeply
#: nested body would overflow the C stack inside ``json.loads`` (a crash, not an exception): refuse it first.
JSON_MAX_DEPTH = 64


def _problem(status: int, code: str, detail: str) -> tuple[int, bytes]:
    body = {
        "type": f"https://tradeguard.dev/problems/{code}",
        "title": {413: "Content Too Large", 409: "Conflict", 422: "Unprocessable Content"}.get(
            status, "Error"
        ),
        "status": status,
        "detail": detail,
        "code": code,
    }
    return status, json.dumps(body).encode()


async def _send_problem(send: Send, status: int, code: str, detail: str) -> None:
    status, body = _problem(status, code, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", PROBLEM), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass


class IdempotencyMiddleware:
    """Body limits and idempotent POSTs (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        rt = get_runtime()
        headers = {k.lower(): v for k, v in scope["headers"]}
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = rt.settings.max_upload_bytes if ctype.startswith("multipart/") else rt.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_problem(send, 413, "too_large", f"the request body is larger than {limit} bytes")
            return
        try:
            body = await self._read(receive, limit)
        except BodyTooLarge:
            await _send_problem(send, 413, "too_large", f"the request body is larger than {limit} bytes")
            return
        if "json" in ctype and body:
            try:
                check_nesting(body.decode("utf-8", errors="replace"), JSON_MAX_DEPTH)
            except FeedError as exc:
                await _send_problem(send, 413 if exc.code == "too_large" else 400, exc.code, str(exc))
                return
        replay = _replayer(body, receive)
        key = headers.get(b"idempotency-key")
        if key is None:
            await self.app(scope, replay, send)
            return
        key_text = key.decode("latin-1").strip()
        if not 1 <= len(key_text) <= 255:
            await _send_problem(
                send, 422, "invalid_idempotency_key", "Idempotency-Key must be 1-255 characters"
            )
            return
        deferrable = idempotency.deferrable(scope["method"], scope["path"])
        admitted = await run_read(_admit, rt, headers.get(b"authorization"), key_text, deferrable)
        if admitted is None:  # not authenticated: the app answers 401 and nothing is kept
            await self.app(scope, replay, send)
            return
        principal, stale_key, known = admitted
        if stale_key is not None:
            await anyio.to_thread.run_sync(touch_key, rt.db, stale_key)
        scope.setdefault("state", {})["principal"] = principal  # the route's dependency reuses it
        owner = principal.id
        request_hash = hashlib.sha256(
            b"\n".join(
                [
                    scope["method"].encode(),
                    scope["path"].encode(),
                    scope.get("query_string", b""),
                    _canonical(body, ctype),
                ]
            )
        ).hexdigest()
        deferred: idempotency.DeferredClaim | None = None
        outcome: idempotency.Verdict | idempotency.Replay | None = None
        if not deferrable or known:
            outcome = await anyio.to_thread.run_sync(
                idempotency.claim, rt, owner, key_text, request_hash, scope["method"], scope["path"]
            )
        else:  # a new key (the usual case): the request's first write transaction claims it
            deferred = idempotency.DeferredClaim(
                rt, owner, key_text, request_hash, scope["method"], scope["path"]
            )
        if outcome is not None:
            if outcome is idempotency.Verdict.IN_FLIGHT:
                await _send_problem(
                    send, 409, "idempotency_key_in_flight", f"{key_text!r} is still being processed"
                )
            elif outcome is idempotency.Verdict.WITHHELD:
                await _send_problem(
                    send,
                    409,
                    "idempotent_replay_withheld",
                    f"the request with Idempotency-Key {key_text!r} succeeded; its answer carried a "
                    "secret that is shown only once",
                )
            elif outcome is idempotency.Verdict.REUSED:
                await _send_problem(
                    send,
                    422,
                    "idempotency_key_reused",
                    f"Idempotency-Key {key_text!r} was used with another request",
                )
            else:
                await send(
                    {
                        "type": "http.response.start",
                        "status": outcome.status,
                        "headers": [
                            (b"content-type", outcome.content_type.encode()),
                            (b"content-length", str(len(outcome.body)).encode()),
                            (b"idempotent-replayed", b"true"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": outcome.body})
            return
        captured: dict[str, Any] = {
            "status": 500,
            "content_type": "application/json",
            "body": [],
            "keep": True,
        }

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                for k, v in message.get("headers", []):
                    if k.lower() == b"content-type":
                        captured["content_type"] = v.decode("latin-1")
                    if k.lower() == b"cache-control" and b"no-store" in v.lower():
                        captured["keep"] = False  # a secret shown once is never stored
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        try:
            if deferred is None:
                await self.app(scope, replay, capture)
            else:
                with deferred.carried():
                    await self.app(scope, replay, capture)
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled request must still release its key
                await anyio.to_thread.run_sync(
                    idempotency.finish,
                    rt,
                    owner,
                    key_text,
                    captured["status"],
                    captured["content_type"],
                    b"".join(captured["body"]) if captured["keep"] else None,
                    deferred,
                )

    @staticmethod
    async def _read(receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _canonical(body: bytes, content_type: str) -> bytes:
    """The body as compared between attempts: a multipart body without its random boundary, so that a
    client's retry of the same upload (with a new boundary) is the same request."""
    if not content_type.startswith("multipart/"):
        return body
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "boundary" and value:
            return body.replace(value.strip('"').encode("latin-1"), b"BOUNDARY")
    return body


def _admit(
    rt: Runtime, authorization: bytes | None, key: str, deferrable: bool
) -> tuple[Principal, str | None, bool] | None:
    """For a POST with an ``Idempotency-Key``, in one read transaction: the principal of a valid bearer API
    key (idempotency keys are scoped to the principal), the key id whose ``last_used_at`` is due
    (:func:`~app.services.principals.touch`), and, for a :func:`~app.services.idempotency.deferrable`
    request, whether the principal has a record for ``key`` already (else True: the request claims its key
    before it runs). None when the caller is not authenticated."""
    if not authorization or not authorization.lower().startswith(b"bearer "):
        return None
    try:
        return read_as(
            rt.db,
            authorization[7:].decode("latin-1").strip(),
            idempotency.recorded_in if deferrable else _claimed_first,
            key,
        )
    except AuthError:
        return None


def _claimed_first(_session: Session, _principal: Principal, _key: str) -> bool:
    return True


def _replayer(body: bytes, upstream: Receive) -> Receive:
    """Hand the app the buffered body once, then the real stream (which reports a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive


class EmbeddedChainLock:
    """On the in-process chain, one request at a time (eth-tester is not thread-safe); no-op on a node."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = get_runtime() if scope["type"] == "http" else None
        if rt is None or rt.chain.backend != "embedded":
            await self.app(scope, receive, send)
            return
        await anyio.to_thread.run_sync(rt.lock.acquire)
        try:
            await self.app(scope, receive, send)
        finally:
            rt.lock.release()


_READS: RunVar[anyio.CapacityLimiter | None] = RunVar("tradeguard_read_threads")


class ThreadBudget:
    """Sets the process's thread budget for blocking request work (``to_thread``, sync routes and
    dependencies) to ``settings.api_threads`` on the first request, in the event loop that serves them, and
    where reads run (:func:`run_read`): on ``settings.read_threads`` threads of their own, or with 0 on the
    event loop.

    Requests beyond the budget wait in the event loop, which costs nothing; a thread more than the budget
    would only take the GIL away from the thread that holds the database's write lock (issue 8)."""

    def __init__(self, app: ASGIApp, threads: int, read_threads: int) -> None:
        self.app = app
        self.threads = threads
        self.read_threads = read_threads
        self.applied = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.applied:
            anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
            _READS.set(anyio.CapacityLimiter(self.read_threads) if self.read_threads else None)
            self.applied = True
        await self.app(scope, receive, send)


async def run_read(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, a read of the database, where :class:`ThreadBudget` says reads run: on the event loop
    (SQLite: a read neither takes nor waits for a lock), or on a worker thread of the reads' budget (the
    whole budget before :class:`ThreadBudget` has run in this event loop). Reads only: a job that waits for
    the write lock would hold up every read of the process behind it, or the event loop itself."""
    try:
        limiter = _READS.get()
    except LookupError:
        return await anyio.to_thread.run_sync(fn, *args)
    if limiter is None:
        return fn(*args)
    return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)
