"""A failing dependency (503) or an unexpected error (500) is an ordinary answer: the server does not log an
ASGI crash and the client's keep-alive connection stays usable for the next request."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import create_engine

from app.db.session import make_session_factory
from app.main import create_app
from app.services.bootstrap import prepare
from app.services.runtime import Runtime, set_runtime

pytestmark = [pytest.mark.sqlite_only]  # the failing database is a dead PostgreSQL port whatever the backend


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(runtime: Runtime) -> Iterator[tuple[int, FastAPI]]:
    set_runtime(runtime)
    prepare(runtime)
    app = create_app()

    @app.get("/test-only/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("a bug nobody mapped")

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port, app
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        set_runtime(None)


def _get(conn: http.client.HTTPConnection, path: str, key: str) -> tuple[int, dict[str, object]]:
    conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.getheader("connection", "").lower() != "close"
    return resp.status, body


def test_503_and_500_keep_the_connection(
    server: tuple[int, FastAPI], runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    port, _app = server
    key = runtime.settings.admin_api_key.get_secret_value()  # type: ignore[union-attr]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        assert _get(conn, "/v1/orders", key)[0] == 200
        sock = conn.sock
        healthy_db = runtime.db
        # the database goes away: a dead port (connection refused, an OperationalError)
        runtime.db = make_session_factory(create_engine("postgresql+psycopg://postgres@127.0.0.1:1/test"))
        with caplog.at_level(logging.ERROR):
            status, body = _get(conn, "/v1/orders", key)
            assert (status, body["code"]) == (503, "database_unavailable")
            assert conn.sock is sock, "the 503 dropped the keep-alive connection"
            conn.request(
                "POST",
                "/v1/corridors",
                body=b"{}",
                headers={
                    "Authorization": f"Bearer {key}",
                    "Idempotency-Key": "k-1",
                    "Content-Type": "application/json",
                },
            )
            resp = conn.getresponse()
            assert (resp.status, json.loads(resp.read())["code"]) == (503, "database_unavailable")
            assert conn.sock is sock, "a failure inside the idempotency middleware dropped the connection"
            status, body = _get(conn, "/test-only/boom", key)
            assert (status, body["code"]) == (500, "internal_error")
            assert conn.sock is sock, "the 500 dropped the keep-alive connection"
            runtime.db = healthy_db
            assert _get(conn, "/v1/orders", key)[0] == 200
            assert conn.sock is sock
        assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]
    finally:
        conn.close()
