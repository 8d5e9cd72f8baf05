"""API fixtures: the app over the test runtime, through FastAPI's TestClient (HTTP semantics, in process)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.client.demo import Wallets
from app.main import create_app
from app.services.bootstrap import prepare
from app.services.runtime import Runtime, set_runtime
from workers.celery_app import celery_app, configure


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    set_runtime(runtime)
    configure(celery_app, runtime.settings)
    prepare(runtime)
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as c:
            yield c
    finally:
        set_runtime(None)


@pytest.fixture
def admin_key(runtime: Runtime) -> str:
    assert runtime.settings.admin_api_key is not None
    return runtime.settings.admin_api_key.get_secret_value()


@pytest.fixture
def wallets(runtime: Runtime) -> Wallets:
    dev = runtime.dev_accounts
    return Wallets(dev["merchant"], dev["buyer"], dev["arbitrator"], dev["oracle"].address)


def auth(key: str, idempotency_key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
    return headers


def assert_problem(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status`` (and ``code``)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert (
        body["status"] == status and body["type"].startswith("https://") and body["title"] and body["detail"]
    )
    if code is not None:
        assert body["code"] == code, body
    return body


@dataclass
class Keys:
    admin: str
    merchant: str
    buyer: str
    oracle: str
    arbitrator: str
    other_merchant: str
    other_buyer: str


@pytest.fixture
def keys(client: TestClient, admin_key: str, runtime: Runtime) -> Keys:
    """One principal per role (and a second merchant and buyer, to test object-level access)."""
    dev = runtime.dev_accounts

    def make(role: str, address: str | None) -> str:
        resp = client.post("/v1/principals", json={"role": role, "address": address}, headers=auth(admin_key))
        assert resp.status_code == 201, resp.text
        return str(resp.json()["api_key"])

    return Keys(
        admin=admin_key,
        merchant=make("merchant", dev["merchant"].address),
        buyer=make("buyer", dev["buyer"].address),
        oracle=make("oracle", dev["oracle"].address),
        arbitrator=make("arbitrator", dev["arbitrator"].address),
        other_merchant=make("merchant", dev["treasury"].address),
        other_buyer=make("buyer", dev["buyer2"].address),
    )
