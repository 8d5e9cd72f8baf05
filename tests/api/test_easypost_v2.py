"""EasyPost's X-Hmac-Signature-v2 through HTTP (issue 10, item 6): a fresh signed request is stored once; a
stale or forged one is a 401 and stores nothing."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import time

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db.models import InboxItem
from app.services.runtime import Runtime
from tests.api.conftest import assert_problem

SECRET = b"easypost-test-secret"  # tests/service_fixtures.py
PATH = "/v1/carriers/easypost/webhooks"
BODY = json.dumps(
    {
        "id": "evt_v2_0001",
        "object": "Event",
        "mode": "test",
        "description": "tracker.updated",
        "created_at": "2026-03-01T12:00:00Z",
        "result": {
            "id": "trk_v2",
            "object": "Tracker",
            "mode": "test",
            "tracking_code": "EZ1000000001",
            "carrier": "USPS",
            "status": "in_transit",
            "updated_at": "2026-03-01T11:59:00Z",
            "tracking_details": [{"status": "in_transit", "datetime": "2026-03-01T11:00:00Z"}],
        },
    }
).encode()


def signed(at: float, body: bytes = BODY) -> dict[str, str]:
    stamp = email.utils.formatdate(at)  # RFC 2822, "-0000"
    digest = hmac.new(SECRET, stamp.encode() + b"POST" + PATH.encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Timestamp": stamp,
        "X-Path": PATH,
        "X-Hmac-Signature-V2": "hmac-sha256-hex=" + digest,
    }


def stored(rt: Runtime) -> int:
    with rt.db() as s:
        return int(
            s.scalar(select(func.count()).select_from(InboxItem).where(InboxItem.source == "easypost")) or 0
        )


def test_a_fresh_v2_signed_webhook_is_stored_once(client: TestClient, runtime: Runtime) -> None:
    first = client.post(PATH, content=BODY, headers=signed(time.time()))
    assert first.status_code == 202, first.text
    again = client.post(PATH, content=BODY, headers=signed(time.time()))  # EasyPost's retry, signed anew
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["capture_id"] == first.json()["capture_id"] and stored(runtime) == 1


def test_a_stale_or_forged_v2_webhook_is_refused_and_not_stored(client: TestClient, runtime: Runtime) -> None:
    stale = client.post(PATH, content=BODY, headers=signed(time.time() - 3600))
    assert "from our clock" in assert_problem(stale, 401, "bad_signature")["detail"]
    forged = signed(time.time())
    tampered = BODY.replace(b"in_transit", b"delivered_x")
    assert_problem(client.post(PATH, content=tampered, headers=forged), 401, "bad_signature")
    assert stored(runtime) == 0
