"""Fixtures for the fault-injection tests (``-m faults``): the service's stack on PostgreSQL, and a Redis the
test may kill.

The worker stack (:class:`~tests.workers.conftest.Stack`) is the worker tests' own; here it runs on a fresh
PostgreSQL schema (127.0.0.1:5432/test), whatever ``TRADEGUARD_TEST_DB`` says, and on Redis database 12
(13 for xdist's second worker) of the machine's Redis, or on a throwaway ``redis-server`` of its own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from app.client import demo
from app.db.models import Intent
from app.services.runtime import Runtime
from tests.service_fixtures import pg_schema
from tests.workers.conftest import Stack, admin_key, open_stack, wallets


def _fault_redis_url(worker_id: str) -> str:
    index = 12 + (int(worker_id[2:]) if worker_id.startswith("gw") else 0)
    return f"redis://127.0.0.1:6379/{index}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in the PostgreSQL test database (dropped afterwards) as a database URL."""
    with pg_schema("f") as url:
        yield url


@pytest.fixture
def fault_stack(tmp_path: Path, worker_id: str, pg_url: str) -> Iterator[Stack]:
    """The worker stack on PostgreSQL and the machine's Redis (its own database number, flushed)."""
    with open_stack(tmp_path, pg_url, _fault_redis_url(worker_id)) as stack:
        yield stack


class ThrowawayRedis:
    """A ``redis-server`` with no persistence on a free port, that a test may SIGKILL and start again."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.starts += 1
        log = open(self.tmp / f"redis-{self.starts}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: everything it held (queued messages, locks) is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def killable_stack(tmp_path: Path, pg_url: str, throwaway_redis: ThrowawayRedis) -> Iterator[Stack]:
    """The worker stack on PostgreSQL whose broker is a throwaway Redis (``throwaway_redis``)."""
    with open_stack(tmp_path, pg_url, throwaway_redis.url, flush=False) as stack:
        yield stack


# ------------------------------------------------------------------------------------------ helpers


def service_demo(stack: Stack) -> tuple[demo.Demo, Runtime]:
    client = stack.start_service()
    rt = stack.runtime
    assert rt is not None
    d = demo.Demo(client, admin_key(stack), wallets(stack), say=lambda _l: None)
    # The buyer approves the escrow once, so that the fundings carry no permits: permits signed for one
    # buyer before any is used share a permit nonce, and all but the first would fail on chain.
    token = rt.chain.contract("TestUSD", next(iter(rt.tokens)))
    rt.chain.send(token.functions.approve(rt.escrow.address, 2**256 - 1), d.wallets.buyer)
    return d, rt


def statuses(rt: Runtime, model: Any, ids: list[str]) -> Counter[str]:
    with rt.db() as s:
        return Counter(s.scalars(select(model.status).where(model.id.in_(ids))))


def relayer_checks(rt: Runtime, orders: int) -> None:
    """Nothing relayed twice: one ``OrderFunded`` per order; one distinct recorded transaction per relayer
    nonce; every intent confirmed by a successful receipt."""
    with rt.db() as s:
        intents = list(s.scalars(select(Intent)))
    assert {i.status for i in intents} == {"confirmed"}, [(i.kind, i.status, i.error_name) for i in intents]
    tx_hashes = {i.tx_hash for i in intents}
    assert None not in tx_hashes
    for h in tx_hashes:
        receipt = rt.chain.receipt(str(h))
        assert receipt is not None and receipt["status"] == 1
    assert rt.chain.nonce(rt.relayer.address, "latest") == len(tx_hashes)
    events = rt.chain.get_events(rt.escrow.address, 0, rt.chain.block_number())
    funded = Counter(e.args["orderId"] for e in events if e.name == "OrderFunded")
    assert len(funded) == orders and set(funded.values()) == {1}, funded
