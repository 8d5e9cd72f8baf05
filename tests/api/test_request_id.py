"""X-Request-Id (issue 10, item 5): honoured when sane, generated otherwise, answered on every response, and
on every JSON log line the request causes, in the route's worker thread too."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import logs
from app.services import readiness
from app.services.runtime import Runtime
from tests.api.conftest import Keys, assert_problem, auth


@pytest.fixture
def json_lines(runtime: Runtime) -> Iterator[io.StringIO]:
    """The root logger writes JSON lines to a buffer (as TRADEGUARD_LOG_FORMAT=json sets it up)."""
    root = logging.getLogger()
    saved = root.handlers[:], {n: logging.getLogger(n).level for n in ("app", "workers")}
    buffer = io.StringIO()
    root.handlers = [logging.StreamHandler(buffer)]
    try:
        logs.configure(runtime.settings.model_copy(update={"log_format": "json"}))
        yield buffer
    finally:
        root.handlers = saved[0]
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


def records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_sane_request_id_is_honoured_and_returned(client: TestClient, keys: Keys) -> None:
    resp = client.get("/healthz", headers={"X-Request-Id": "trace-7f3a:01.b"})
    assert resp.headers["x-request-id"] == "trace-7f3a:01.b"
    # problems carry it too
    missing = client.get(
        "/v1/orders/0x" + "00" * 32, headers={**auth(keys.merchant), "X-Request-Id": "r-404"}
    )
    assert_problem(missing, 404)
    assert missing.headers["x-request-id"] == "r-404"


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 129, "line\nbreak", "<script>"])
def test_a_missing_or_odd_request_id_is_replaced_by_a_fresh_one(client: TestClient, sent: str | None) -> None:
    headers = {} if sent is None else {"X-Request-Id": sent}
    first = client.get("/healthz", headers=headers).headers["x-request-id"]
    second = client.get("/healthz", headers=headers).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


def test_every_log_line_of_a_request_carries_its_id(
    client: TestClient, json_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = readiness.check

    def check(rt: Runtime) -> readiness.Readiness:
        logging.getLogger("app.services.readiness").warning("probing", extra={"probe": "readyz"})
        return original(rt)

    monkeypatch.setattr(readiness, "check", check)
    assert client.get("/readyz", headers={"X-Request-Id": "req-A"}).status_code == 200
    assert client.get("/healthz", headers={"X-Request-Id": "req-B"}).status_code == 200
    lines = records(json_lines)
    [probe] = [r for r in lines if r["message"] == "probing"]  # logged in the sync route's worker thread
    assert probe["request_id"] == "req-A" and probe["level"] == "WARNING" and probe["probe"] == "readyz"
    access = {r["request_id"]: r for r in lines if r["logger"] == "app.access"}
    assert access["req-A"]["route"] == "/readyz" and access["req-A"]["status"] == 200
    assert access["req-B"]["route"] == "/healthz" and isinstance(access["req-B"]["duration_ms"], float)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", r["time"]) for r in lines)
    # outside a request the field is there, empty
    logging.getLogger("app.test").warning("no request")
    assert records(json_lines)[-1]["request_id"] is None


def test_the_text_format_leaves_logging_as_the_command_line_set_it(runtime: Runtime) -> None:
    handler = logging.StreamHandler(io.StringIO())
    formatter = handler.formatter
    root = logging.Logger("isolated-root")
    root.addHandler(handler)
    logs.configure(runtime.settings.model_copy(update={"log_format": "text"}), root=root)
    assert handler.formatter is formatter and not handler.filters
