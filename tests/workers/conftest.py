"""A stack for the worker tests: anvil (a real node both processes reach), a SQLite file, the real Redis, and
``tradeguard worker`` / ``tradeguard beat`` subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.chain.client import ChainClient
from app.config import Settings
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
        )
        self.children.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no clean shutdown, whatever it was doing is cut off."""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

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


@pytest.fixture
def stack(tmp_path: Path, worker_id: str) -> Iterator[Stack]:
    url = _redis_url(worker_id)
    broker = redis.Redis.from_url(url)
    broker.ping()
    broker.flushdb()
    anvil = ChainClient.start_anvil()
    settings = make_settings(
        f"sqlite:///{tmp_path / 'tradeguard.db'}",
        tmp_path,
        chain=anvil.w3.provider.endpoint_uri,
        broker_url=url,  # type: ignore[attr-defined]
    )
    stack = Stack(anvil, settings, tmp_path)
    try:
        yield stack
    finally:
        for proc in stack.children:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        stack.stop_service()
        configure(celery_app, make_settings("sqlite://", tmp_path))  # back to eager for the other tests
        anvil.close()
        broker.flushdb()
        broker.close()
