"""A stack for the worker tests: anvil (a real node both processes reach), a database, a Redis, and
``tradeguard worker`` / ``tradeguard beat`` subprocesses (each in its own process group, so that a test can
SIGKILL a whole worker). The fault-injection tests (tests/faults) build the same stack with :func:`open_stack`
on PostgreSQL, and use the helpers below."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.chain.client import ChainClient
from app.chain.eip712 import sign_typed_data
from app.client import demo
from app.config import Settings
from app.main import create_app
from app.services.bootstrap import prepare
from app.services.runtime import Runtime, build_runtime, set_runtime
from tests.service_fixtures import make_settings
from workers.celery_app import celery_app, configure

ROOT = Path(__file__).resolve().parents[2]


def _redis_url(worker_id: str) -> str:
    # one Redis database per xdist worker, away from 0 (the default of a developer's own service)
    index = 10 + (int(worker_id[2:]) if worker_id.startswith("gw") else 0)
    return f"redis://127.0.0.1:6379/{index}"


@dataclass
class Stack:
    """The service's pieces for one test; ``restart_service`` rebuilds the in-process API and runtime."""

    anvil: ChainClient
    settings: Settings
    tmp: Path
    runtime: Runtime | None = None
    client: TestClient | None = None
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
        assert s.admin_api_key and s.aftership_secret and s.easypost_secret and s.broker_url
        env.update(
            TRADEGUARD_CHAIN=s.chain,
            TRADEGUARD_DATABASE_URL=s.db_url,
            TRADEGUARD_BROKER_URL=s.broker_url,
            TRADEGUARD_STATE_DIR=str(self.tmp),
            TRADEGUARD_DEV="true",
            TRADEGUARD_SWEEP_SECONDS="1",
            TRADEGUARD_SWEEP_NICE="5",  # a worker's sweeps below the API's priority (test_celery_worker)
            TRADEGUARD_ADMIN_API_KEY=s.admin_api_key.get_secret_value(),
            TRADEGUARD_AFTERSHIP_SECRET=s.aftership_secret.get_secret_value(),
            TRADEGUARD_EASYPOST_SECRET=s.easypost_secret.get_secret_value(),
            TRADEGUARD_LOG_LEVEL="INFO",
        )
        return env

    def spawn(self, what: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{what}-{len(self.children)}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", what],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes the whole worker down
        )
        self.children.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL to the process and everything it started: no clean shutdown, whatever it was doing is cut
        off (its locks, leases and unacknowledged messages stay behind)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def stop_children(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.kill(proc)

    def start_service(self) -> TestClient:
        chain = ChainClient.rpc(self.anvil.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
        self.runtime = build_runtime(self.settings, chain=chain)
        set_runtime(self.runtime)
        configure(celery_app, self.settings)
        prepare(self.runtime)
        self.client = TestClient(create_app(), raise_server_exceptions=False)
        return self.client

    def stop_service(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.runtime is not None:
            self.runtime.close()
        set_runtime(None)
        self.client = self.runtime = None

    def wait_funded(self, d: Any, *args: Any) -> dict[str, Any]:
        """``Demo.create_and_fund`` with the processes' logs in the failure message."""
        try:
            return dict(d.create_and_fund(*args))
        except Exception as exc:
            raise AssertionError(f"{exc}\n--- process logs ---\n{self.logs()}") from exc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp.glob("*.log")))


@contextmanager
def open_stack(tmp_path: Path, db_url: str, broker_url: str, *, flush: bool = True) -> Iterator[Stack]:
    """A stack on ``db_url`` and ``broker_url`` with its own anvil; children stopped afterwards.

    ``flush`` empties the broker's Redis database before and after (a throwaway Redis needs no flush).
    """
    broker = redis.Redis.from_url(broker_url)
    if flush:
        broker.ping()
        broker.flushdb()
    anvil = ChainClient.start_anvil()
    settings = make_settings(
        db_url,
        tmp_path,
        chain=anvil.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
        broker_url=broker_url,
    )
    stack = Stack(anvil, settings, tmp_path)
    try:
        yield stack
    finally:
        stack.stop_children()
        stack.stop_service()
        configure(celery_app, make_settings("sqlite://", tmp_path))  # back to eager for the other tests
        anvil.close()
        if flush:
            broker.flushdb()
        broker.close()


@pytest.fixture
def stack(tmp_path: Path, worker_id: str) -> Iterator[Stack]:
    with open_stack(tmp_path, f"sqlite:///{tmp_path / 'tradeguard.db'}", _redis_url(worker_id)) as s:
        yield s


# ------------------------------------------------------------------------------------------ helpers


def wallets(stack: Stack) -> demo.Wallets:
    assert stack.runtime is not None
    dev = stack.runtime.dev_accounts
    return demo.Wallets(dev["merchant"], dev["buyer"], dev["arbitrator"], dev["oracle"].address)


def admin_key(stack: Stack) -> str:
    assert stack.settings.admin_api_key is not None
    return stack.settings.admin_api_key.get_secret_value()


def wait_for(predicate: Callable[[], bool], timeout: float, stack: Stack, what: str) -> float:
    """Poll ``predicate`` until true (seconds waited) or fail after ``timeout`` with the processes' logs."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}\n--- process logs ---\n{stack.logs()}")
        time.sleep(0.2)
    return time.monotonic() - start


def create_order(d: demo.Demo, ref: str, amount: int) -> dict[str, Any]:
    """The merchant creates an order for the demo buyer, funds the buyer (faucet): the API's answer."""
    d.post(
        d.parties.admin, "/v1/dev/faucet", {"address": d.wallets.buyer.address, "amount": str(amount)}, 200
    )
    return dict(
        d.post(
            d.parties.merchant,
            "/v1/orders",
            {
                "order_ref": ref,
                "buyer": d.wallets.buyer.address,
                "amount": str(amount),
                "currency": d.currency,
                "destination_country": "DE",
                "goods_category": "apparel",
            },
            201,
        )
    )


def submit_funding(d: demo.Demo, created: dict[str, Any], *, permit: bool = True) -> str:
    """The buyer signs the created order (and its permit, unless the buyer approved the escrow before) and
    submits the funding; returns the intent id without waiting for it."""
    body: dict[str, Any] = {
        "signature": "0x" + sign_typed_data(d.wallets.buyer.key, created["sign"]["authorization"]).hex()
    }
    if permit:
        typed = created["sign"]["permit"]
        body["permit"] = {
            "deadline": int(typed["message"]["deadline"]),
            "signature": "0x" + sign_typed_data(d.wallets.buyer.key, typed).hex(),
        }
    resp = d.post(d.parties.buyer, f"/v1/orders/{created['order']['id']}/funding", body, 202)
    return str(resp["intent"]["id"])


def shipping_capture(d: demo.Demo, sscc: str) -> bytes:
    """An EPCIS document: the SSCC's shipping event, ten seconds ago on the chain's clock."""
    event = demo.object_event(d.chain_time() - 10, "shipping", epcList=[f"https://id.gs1.org/00/{sscc}"])
    return demo.epcis_document(event)
