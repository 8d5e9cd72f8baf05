"""No statement the service runs reads a whole growing table (SQLite's query plans): the cost of an action
must not grow with the chain's age or the service's history (issue 8's non-negotiable).

The demo's three scenarios run through HTTP, with every sweep; each distinct statement is then planned again
with the parameters it ran with, and a full ``SCAN`` of a table that grows with orders, events or requests is
a failure."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.client import demo
from app.client.demo import Wallets
from app.services.runtime import Runtime

#: Tables whose rows grow with every order, event or request.
GROWING = {
    "orders",
    "intents",
    "chain_events",
    "timeline_entries",
    "webhook_events",
    "webhook_deliveries",
    "webhook_attempts",
    "inbox_items",
    "idempotency_records",
    "permit_claims",
    "shipments",
    "evidence",
    "indexed_blocks",
}
SCAN = re.compile(r"^SCAN (\w+)")


def test_no_statement_of_the_demo_scans_a_growing_table(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    engine = runtime.db.kw["bind"]
    if engine.dialect.name != "sqlite":
        pytest.skip("the plans checked are SQLite's")
    ran: dict[str, Any] = {}

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("SELECT", "UPDATE", "DELETE", "WITH") and not many:
            ran.setdefault(statement, parameters)

    event.listen(engine, "before_cursor_execute", note)
    try:
        demo.run(client, admin_key, wallets, say=lambda _line: None)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert len(ran) > 30  # the demo ran the service's statements (fewer when caches are warm)

    scans: list[str] = []
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        for statement, parameters in ran.items():
            plan = driver.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            for step in plan:
                found = SCAN.match(step[-1])
                if found and found.group(1) in GROWING:
                    scans.append(f"{step[-1]}\n    in: {' '.join(statement.split())[:400]}")
    assert not scans, "\n".join(scans)
