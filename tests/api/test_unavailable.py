"""A chain node that stops answering gives 503 problems (and readiness says so), never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.chain.client import ChainClient
from app.main import create_app
from app.services.bootstrap import prepare
from app.services.runtime import build_runtime, set_runtime
from tests.api.conftest import assert_problem, auth
from tests.service_fixtures import make_settings

pytestmark = [pytest.mark.anvil]


def test_chain_down_is_503(tmp_path: Path, db_url: str) -> None:
    node = ChainClient.start_anvil()
    rt = build_runtime(make_settings(db_url, tmp_path, chain=node.w3.provider.endpoint_uri), chain=node)  # type: ignore[attr-defined]
    set_runtime(rt)
    prepare(rt)
    admin = rt.settings.admin_api_key.get_secret_value()  # type: ignore[union-attr]
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            assert client.get("/readyz").status_code == 200
            node.close()  # the node goes away
            assert_problem(client.get("/readyz"), 503, "not_ready")
            assert_problem(client.get("/v1/chain"), 503)
            body = {"address": rt.dev_accounts["buyer"].address, "amount": "5"}
            assert_problem(client.post("/v1/dev/faucet", json=body, headers=auth(admin)), 503)
    finally:
        set_runtime(None)
        rt.engine.dispose()
        node.close()


def test_nonce_contention_is_a_503_to_retry() -> None:
    from app.api.problems import from_exception
    from app.errors import NonceContention

    response = from_exception(NonceContention("0xabc", 9, "nonce too low"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert b'"code":"nonce_contention"' in response.body
