"""``tradeguard demo --url``: the demo drives a running service as the principals its console shows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app import cli
from app.client.remote_demo import write_keys
from tests.web.conftest import Live, Session


def test_demo_url_fills_the_console_of_a_running_service(
    live: Live, sign_in: Callable[..., Session], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "demo-keys.json"
    write_keys(keys, list(live.keys.values()))
    assert keys.stat().st_mode & 0o777 == 0o600

    assert cli.main(["demo", "--url", live.url, "--keys", str(keys)]) == 0
    out = capsys.readouterr().out
    assert "settlement table" in out and f"{live.url}/console/" in out

    merchant = sign_in("merchant")
    page = merchant.goto("/console/orders")
    rows = page.locator("tr[data-order]")
    statuses = sorted(rows.locator(".status").all_text_contents())
    assert statuses == ["refunded", "released", "resolved"], statuses
    buyer = sign_in("buyer")
    assert buyer.goto("/console/orders").locator("tr[data-order]").count() == 3


def test_demo_url_without_keys_says_how_to_get_them(live: Live, tmp_path: Path) -> None:
    assert cli.main(["demo", "--url", live.url, "--keys", str(tmp_path / "missing.json")]) == 1
