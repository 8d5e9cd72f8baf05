"""Fixtures for service, API and worker tests: a migrated database per test, a runtime on the session chain.

The database is SQLite in ``tmp_path`` by default; with ``TRADEGUARD_TEST_DB=postgresql`` each test gets its
own schema in the PostgreSQL database at ``TRADEGUARD_TEST_PG_URL`` (default 127.0.0.1:5432/test), dropped
afterwards.

Every test under tests/services, tests/api, tests/workers and tests/web runs with the network tripwire armed
(:func:`_network_tripwire`): a JSON-RPC request, an outbound HTTP request or a DNS lookup made while the
calling thread has a database write transaction open fails the test.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests.adapters
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient
from web3 import EthereumTesterProvider, HTTPProvider
from web3.manager import RequestManager

from app.chain.client import ChainClient
from app.config import Settings
from app.db import tripwire
from app.services.runtime import Runtime, build_runtime

PG_URL = os.environ.get("TRADEGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


#: Test folders whose tests run with the network tripwire armed.
TRIPWIRE_DIRS = ("services", "api", "workers", "web")
_TESTS = Path(__file__).resolve().parent


def test_db_backend() -> str:
    return os.environ.get("TRADEGUARD_TEST_DB", "sqlite")


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test."""
    if test_db_backend() != "postgresql":
        yield f"sqlite:///{tmp_path / 'tradeguard.db'}"
        return
    with pg_schema("t") as url:
        yield url


@contextmanager
def pg_schema(prefix: str) -> Iterator[str]:
    """A fresh schema in the PostgreSQL test database, as a database URL; dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def make_settings(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "chain": "embedded",
        "database_url": db_url,
        "state_dir": tmp_path,
        "dev": True,
        "admin_api_key": "tg_admin_test_key_0123456789abcdef",
        "aftership_secret": "aftership-test-secret",
        "easypost_secret": "easypost-test-secret",
        # tests change the escrow's settings on chain and expect the next request to see it at once
        # (the cache itself: tests/services/test_platform_cache.py)
        "platform_cache_seconds": 0,
        # the same for the chain's clock and fees, and the relayer's nonce (the cache itself:
        # tests/chain/test_client_rpc.py, tests/services/test_rpc_budget.py)
        "head_cache_seconds": 0,
        # the periodic audit runs in its own tests (tests/services/test_audit.py), not in every keeper pass
        "audit_seconds": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def service_deployment(chain: ChainClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Deploy the service's stack once on the session chain; each test seeds its database with the record."""
    tmp = tmp_path_factory.mktemp("deploy")
    settings = make_settings(f"sqlite:///{tmp / 'seed.db'}", tmp)
    rt = build_runtime(settings, chain=chain)
    with rt.db() as s:
        from app.db.models import KeyValue

        row = s.get(KeyValue, "deployment")
        assert row is not None
        record = dict(row.value)
    rt.engine.dispose()
    return record


@pytest.fixture
def runtime(
    chain: ChainClient, service_deployment: dict[str, Any], db_url: str, tmp_path: Path
) -> Iterator[Runtime]:
    """A runtime on a fresh database and the session chain, reverted to the deployed stack afterwards."""
    snap = chain.snapshot()
    rt = build_runtime(make_settings(db_url, tmp_path), chain=chain, deployment=service_deployment)
    try:
        yield rt
    finally:
        rt.engine.dispose()
        chain.revert(snap)


def _wrap_network_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way out to the network ask the tripwire first (see :mod:`app.db.tripwire`)."""

    def rpc(cls: Any, name: str) -> None:
        original = getattr(cls, name)

        def checked(self: Any, method: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
            tripwire.check(f"JSON-RPC {tripwire.describe(method, params)}")
            return original(self, method, params, *args, **kwargs)

        monkeypatch.setattr(cls, name, checked)

    # through web3's request manager (providers cache their bound make_request) and direct provider calls;
    # the in-process eth-tester chain stands for a node and counts as one
    rpc(RequestManager, "_make_request")
    rpc(EthereumTesterProvider, "make_request")
    rpc(HTTPProvider, "make_request")

    batch = RequestManager._make_batch_request

    def checked_batch(self: Any, *args: Any, **kwargs: Any) -> Any:
        tripwire.check("JSON-RPC batch request")
        return batch(self, *args, **kwargs)

    monkeypatch.setattr(RequestManager, "_make_batch_request", checked_batch)

    send = httpx.Client.send

    def checked_send(self: httpx.Client, request: httpx.Request, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, TestClient):  # the API under test, in process: not a network call
            tripwire.check(f"HTTP {request.method} {request.url}")
        return send(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", checked_send)

    adapter_send = requests.adapters.HTTPAdapter.send

    def checked_adapter(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        tripwire.check(f"HTTP {request.method} {request.url}")
        return adapter_send(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", checked_adapter)

    getaddrinfo = socket.getaddrinfo

    def checked_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        tripwire.check(f"DNS getaddrinfo({host!r})")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", checked_getaddrinfo)


@pytest.fixture(autouse=True)
def _network_tripwire(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No network call inside an open database write transaction (tests under :data:`TRIPWIRE_DIRS`).

    The offending call raises at once; and since production code may swallow that in a broad ``except``, every
    violation seen during the test (on any thread) also fails it at teardown.
    """
    path = Path(str(request.node.path)).resolve()
    if not any(path.is_relative_to(_TESTS / d) for d in TRIPWIRE_DIRS):
        yield
        return
    tripwire.take_violations()
    tripwire.arm()
    _wrap_network_exits(monkeypatch)
    try:
        yield
    finally:
        tripwire.disarm()
        seen = tripwire.take_violations()
        if seen:
            pytest.fail(
                f"{len(seen)} network call(s) inside an open write transaction:\n\n" + "\n\n".join(seen[:5]),
                pytrace=False,
            )
