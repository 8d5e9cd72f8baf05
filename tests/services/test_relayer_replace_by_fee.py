"""EIP-1559 fees and replace-by-fee on anvil with mining paused: a transaction stuck in the pool is signed
again at the same nonce with higher fees, the old hash is kept, and whichever of the two is mined settles the
intents."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.chain.anvil import AnvilProcess
from app.chain.client import ChainClient
from app.db.models import utcnow
from app.services.outbox.relayer import CONFIRMED, SENT, relay
from app.services.runtime import Runtime, build_runtime
from tests.service_fixtures import make_settings
from tests.services.test_relayer import put
from tests.services.test_relayer_support import Svc

pytestmark = [pytest.mark.anvil, pytest.mark.sqlite_only]


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    node = AnvilProcess()
    node.start()
    chain = ChainClient.rpc(node.url)
    settings = make_settings(f"sqlite:///{tmp_path / 'rbf.db'}", tmp_path, chain=node.url)
    runtime = build_runtime(settings, chain=chain)
    try:
        yield runtime
    finally:
        runtime.close()
        node.stop()


def _rpc(rt: Runtime, method: str, *params: Any) -> None:
    rt.chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]


def _stuck_funding(rt: Runtime) -> tuple[Svc, str, str]:
    """A fund intent whose transaction sits in anvil's pool (mining paused); its id and first hash."""
    svc = Svc(rt)
    auth = svc.auth()
    svc.mint(svc["buyer"].address, auth.amount)
    iid = put(rt, "fund", svc.fund_payload(auth))
    _rpc(rt, "evm_setAutomine", False)
    report = relay(rt, wait_seconds=0)
    intent = svc.intent(iid)
    assert (report.transactions, intent.status) == (1, SENT)
    assert intent.tx_hash is not None and intent.raw_tx is not None and intent.sent_at is not None
    assert bytes(intent.raw_tx)[0] == 2  # an EIP-1559 transaction
    return svc, iid, intent.tx_hash


def test_a_stuck_transaction_is_replaced_with_higher_fees_and_the_replacement_settles(rt: Runtime) -> None:
    svc, iid, first = _stuck_funding(rt)
    offered = rt.chain.offered_fees(bytes(svc.intent(iid).raw_tx or b""))

    # not stuck long enough yet: left alone
    assert relay(rt, wait_seconds=0).replaced == 0
    later = utcnow() + timedelta(seconds=rt.settings.replace_after_seconds + 1)
    report = relay(rt, now=later, wait_seconds=0)

    intent = svc.intent(iid)
    assert report.replaced == 1 and intent.status == SENT
    assert intent.tx_hash != first and intent.replaced_hashes == [first]
    bumped = rt.chain.offered_fees(bytes(intent.raw_tx or b""))
    assert bumped.max_fee >= offered.max_fee * 113 // 100 and bumped.priority is not None
    assert offered.priority is not None and bumped.priority >= offered.priority * 113 // 100
    assert rt.chain.is_known(intent.tx_hash)

    _rpc(rt, "evm_mine")
    relay(rt, wait_seconds=0)

    settled = svc.intent(iid)
    assert (settled.status, settled.tx_hash) == (CONFIRMED, intent.tx_hash)
    assert rt.chain.receipt(first) is None  # the replaced one was never mined


def test_when_the_replaced_transaction_is_the_one_mined_it_settles_the_intents(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, iid, first = _stuck_funding(rt)
    # the replacement is recorded, but the node never gets it (a crash right after the commit, say)
    monkeypatch.setattr(type(rt.chain), "broadcast", lambda self, raw: (_ for _ in ()).throw(OSError("down")))
    later = utcnow() + timedelta(seconds=rt.settings.replace_after_seconds + 1)
    assert relay(rt, now=later, wait_seconds=0).replaced == 1
    recorded = svc.intent(iid)
    assert recorded.tx_hash != first and recorded.replaced_hashes == [first]
    monkeypatch.undo()

    _rpc(rt, "evm_mine")  # the first transaction is the one in the pool: it is mined
    relay(rt, wait_seconds=0)

    settled = svc.intent(iid)
    assert (settled.status, settled.tx_hash) == (CONFIRMED, first)
