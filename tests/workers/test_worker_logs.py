"""A real ``tradeguard worker`` with ``TRADEGUARD_LOG_FORMAT=json`` writes the API's JSON log lines (one
object per line, no banner, Python warnings included), and the lines about an intent's transaction carry the
X-Request-Id of the request that submitted it, beside the transaction hash the database records."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import select

from app.chain.eip712 import sign_typed_data
from app.client import demo
from app.db.models import Intent
from tests.workers.conftest import ROOT, Stack, admin_key, create_order, wait_for, wallets

pytestmark = [pytest.mark.anvil, pytest.mark.redis, pytest.mark.slow, pytest.mark.sqlite_only]

UNIT = 10**6
FIELDS = {"time", "level", "logger", "message", "request_id"}


def _lines(stack: Stack) -> list[dict[str, Any]]:
    text = (stack.tmp / "worker-json.log").read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_worker_logs_json_lines_and_the_funding_request_id_reaches_its_transaction(stack: Stack) -> None:
    client = stack.start_service()
    with (stack.tmp / "worker-json.log").open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            cwd=ROOT,
            env={**stack.env(), "TRADEGUARD_LOG_FORMAT": "json"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.children.append(worker)
    d = demo.Demo(client, admin_key(stack), wallets(stack), say=lambda _l: None)
    created = create_order(d, "LOG-1", 25 * UNIT)
    buyer = d.wallets.buyer
    permit = created["sign"]["permit"]
    rid = "trace-" + secrets.token_hex(8)
    answer = client.post(
        f"/v1/orders/{created['order']['id']}/funding",
        json={
            "signature": "0x" + sign_typed_data(buyer.key, created["sign"]["authorization"]).hex(),
            "permit": {
                "deadline": int(permit["message"]["deadline"]),
                "signature": "0x" + sign_typed_data(buyer.key, permit).hex(),
            },
        },
        headers={"Authorization": f"Bearer {d.parties.buyer}", "X-Request-Id": rid},
    )
    assert answer.status_code == 202, answer.text
    intent_id = answer.json()["intent"]["id"]
    rt = stack.runtime
    assert rt is not None

    def confirmed() -> bool:
        with rt.db() as s:
            return s.scalar(select(Intent.status).where(Intent.id == intent_id)) == "confirmed"

    wait_for(confirmed, 90, stack, "the worker to relay the funding")
    with rt.db() as s:
        intent = s.get(Intent, intent_id)
        assert intent is not None and intent.tx_hash and intent.request_id == rid

    def logged(what: str) -> list[dict[str, Any]]:
        return [
            line
            for line in _lines(stack)
            if line.get("intent_id") == intent_id and f" {what} in " in line["message"]
        ]

    wait_for(lambda: bool(logged("mined")), 30, stack, "the worker's line about the mined funding")
    signed, mined = logged("signed"), logged("mined")
    assert len(signed) == 1 and len(mined) == 1
    for line in (*signed, *mined):
        assert line["request_id"] == rid  # the API request's id, in another process
        assert line["tx_hash"] == intent.tx_hash
        assert line["logger"] == "app.services.outbox.relayer" and line["level"] == "INFO"
        assert line["task_name"] == "workers.tasks.relay_intents" and line["task_id"]
        assert line["order_id"] == created["order"]["id"] and line["intent_kind"] == "fund"
    assert mined[0]["status"] == "confirmed" and mined[0]["block_number"] == intent.block_number

    # every line the worker wrote is one JSON object with the API's fields; Celery's own lines included
    lines = _lines(stack)
    assert all(FIELDS <= set(line) for line in lines), [ln for ln in lines if not FIELDS <= set(ln)]
    assert any(line["logger"].startswith("celery") for line in lines)
