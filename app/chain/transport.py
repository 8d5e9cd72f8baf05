"""JSON-RPC over HTTP for web3 without ``requests``' per-call cost.

web3's :class:`~web3.HTTPProvider` posts every call through ``requests``: on this machine 1.6–1.9 ms a call
against a local anvil, where a kept-alive :mod:`http.client` connection takes 0.47 ms for the same answer
(measured while a benchmark ran). A funded order costs about seven calls and a relayer or indexer pass several
more, all of it CPU the API and the workers share on two cores. :class:`KeepAliveHTTPProvider` keeps web3's
provider (JSON encoding and decoding, request caching, middleware, error handling, retries) and replaces only
the POST: one persistent connection per thread, checked for a peer that closed it before it is reused, and a
call that finds it closed under it (no answer at all) is made once more on a new connection.

It behaves as ``requests`` did where callers can tell: a refused or dropped connection raises an ``OSError``
(the chain client's "node unavailable"), an HTTP error status raises :class:`NodeHTTPError` (an ``OSError``,
as ``requests.HTTPError`` is), and web3's retry of idempotent methods applies to HTTP errors and timeouts, as
it did to ``requests.HTTPError`` and ``requests.Timeout``. URLs it does not serve the same way (credentials in
the URL, a proxy configured for the host) keep web3's provider: :func:`provider_for` decides.
"""

from __future__ import annotations

import http.client
import os
import select
import ssl
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import certifi
from web3 import HTTPProvider
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import RPCEndpoint


class NodeHTTPError(OSError):
    """The node answered with an HTTP error status (4xx/5xx)."""


#: How a kept-alive connection that the node closed meanwhile fails when it is used: before any answer.
_CLOSED_UNDER_US = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


def serves(url: str) -> bool:
    """Whether :class:`KeepAliveHTTPProvider` reaches ``url`` as ``requests`` would: plain http(s), no
    credentials in the URL, no proxy configured for its host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return False
    proxies = urllib.request.getproxies()
    return parts.scheme not in proxies or bool(urllib.request.proxy_bypass(parts.hostname))


def provider_for(url: str, timeout: float) -> HTTPProvider:
    """The provider for a node at ``url``: :class:`KeepAliveHTTPProvider` where it :func:`serves` the URL,
    else web3's own."""
    if serves(url):
        return KeepAliveHTTPProvider(url, timeout)
    return HTTPProvider(url, request_kwargs={"timeout": timeout})


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by the peer (readable while idle: EOF or junk)."""
    sock = conn.sock
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


class KeepAliveHTTPProvider(HTTPProvider):
    """web3's HTTP provider posting over one kept-alive :mod:`http.client` connection per thread."""

    def __init__(self, endpoint_uri: str, timeout: float) -> None:
        super().__init__(
            endpoint_uri,
            request_kwargs={"timeout": timeout},
            exception_retry_configuration=ExceptionRetryConfiguration(errors=(NodeHTTPError, TimeoutError)),
        )
        parts = urlsplit(endpoint_uri)
        self._https = parts.scheme == "https"
        self._netloc = (parts.hostname or "", parts.port)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout
        self._headers = dict(self.get_request_headers())
        self._local = threading.local()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection and whether it served a call before (a new one if the peer closed it)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and _dropped(conn):
            conn.close()
            conn = None
        if conn is not None:
            return conn, True
        host, port = self._netloc
        if self._https:
            # the CA bundle requests verifies against: the one its environment variables name, else certifi's
            bundle = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
            )
            context = ssl.create_default_context(cafile=bundle)
            conn = http.client.HTTPSConnection(host, port, timeout=self._timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self._timeout)
        self._local.conn = conn
        return conn, False

    def _forget(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None

    def _post(self, data: bytes) -> bytes:
        conn, reused = self._connection()
        try:
            status, reason, body = self._exchange(conn, data)
        except _CLOSED_UNDER_US:
            if not reused:
                raise
            # The node closed the kept-alive connection as the call went out (an idle timeout, a restart:
            # the close had not arrived when it was checked). It answered nothing: once more, on a new one.
            conn, _ = self._connection()
            status, reason, body = self._exchange(conn, data)
        if status >= 400:
            raise NodeHTTPError(f"HTTP {status} {reason} from {self.endpoint_uri}")
        return body

    def _exchange(self, conn: http.client.HTTPConnection, data: bytes) -> tuple[int, str, bytes]:
        try:
            conn.request("POST", self._path, body=data, headers=self._headers)
            response = conn.getresponse()
            body = response.read()
        except OSError:  # refused, reset, timed out; RemoteDisconnected too (a ConnectionResetError)
            self._forget(conn)
            raise
        except http.client.HTTPException as exc:  # a malformed or cut-off answer: the connection is unusable
            self._forget(conn)
            raise ConnectionError(f"{self.endpoint_uri}: {type(exc).__name__}: {exc}") from exc
        if response.will_close:
            self._forget(conn)
        return response.status, response.reason, body

    def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        """As web3's, with :meth:`_post` for ``requests``: the methods on web3's retry list (and its backoff)
        are retried on the errors :attr:`exception_retry_configuration` names."""
        retry: Any = self.exception_retry_configuration
        allowed = retry is not None and (
            method in retry.method_allowlist or method.split("_")[0] in retry.method_allowlist
        )
        if not allowed or retry.retries < 1:
            return self._post(request_data)
        for attempt in range(retry.retries):
            try:
                return self._post(request_data)
            except tuple(retry.errors):
                if attempt == retry.retries - 1:
                    raise
                time.sleep(retry.backoff_factor * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")


__all__ = ["KeepAliveHTTPProvider", "NodeHTTPError", "provider_for", "serves"]
