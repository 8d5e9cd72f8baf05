"""A failed intent, as answers show it, names its error by the stable code of the README's table."""

from __future__ import annotations

import pytest

from app.db.models import Intent
from app.domain.contract_errors import code_of
from app.services.trade.orders import intent_public


@pytest.mark.parametrize(
    "name, code",
    [("InvalidStatus", "invalid_status"), ("Error", "revert_reason"), ("Retracted", "retracted")],
)
def test_a_failed_intent_shows_its_error_as_a_code(name: str, code: str) -> None:
    assert code_of(name) == code
    shown = intent_public(Intent(id="int_1", kind="attest", status="failed", error_name=name))
    assert (shown["error"], shown["error_code"]) == (name, code)
    assert intent_public(Intent(id="int_2", kind="fund", status="confirmed"))["error_code"] is None
