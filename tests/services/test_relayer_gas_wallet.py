"""An empty gas wallet: the relayer's intents wait without using up their attempts, and everything goes out
once the wallet is topped up (``GET /readyz`` meanwhile: tests/api/test_probes.py)."""

from __future__ import annotations

from datetime import timedelta

from eth_account import Account

from app.db.models import utcnow
from app.services.outbox.relayer import CONFIRMED, GAS_WAIT_SECONDS, PENDING, relay
from app.services.runtime import Runtime
from tests.services.test_relayer import put
from tests.services.test_relayer_support import Svc


def _top_up(rt: Runtime, address: str, wei: int) -> None:
    donor = rt.dev_accounts["deployer"]
    tx = {
        "to": address,
        "value": wei,
        "gas": 21_000,
        "gasPrice": rt.chain.gas_price(),
        "nonce": rt.chain.nonce(donor.address),
        "chainId": rt.chain.chain_id,
    }
    tx_hash = rt.chain.w3.eth.send_raw_transaction(donor.sign_transaction(tx).raw_transaction)
    assert rt.chain.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1


def test_intents_wait_for_an_empty_gas_wallet_without_using_attempts(runtime: Runtime) -> None:
    runtime.relayer = Account.create()  # a fresh hot wallet: not a wei to pay gas with
    svc = Svc(runtime)
    auth = svc.auth()
    svc.mint(svc["buyer"].address, auth.amount)
    iid = put(runtime, "fund", svc.fund_payload(auth))

    report = relay(runtime)

    intent = svc.intent(iid)
    assert report.gas_wallet_empty and report.transactions == 0
    assert (intent.status, intent.attempts, intent.tx_hash) == (PENDING, 0, None)
    assert intent.error is not None and "gas wallet" in intent.error
    # tried again after the wait, not before; still no attempt used while the wallet is empty
    relay(runtime, now=utcnow() + timedelta(seconds=GAS_WAIT_SECONDS + 1))
    assert (svc.intent(iid).status, svc.intent(iid).attempts) == (PENDING, 0)

    _top_up(runtime, runtime.relayer.address, 10**18)
    report = relay(runtime, now=utcnow() + timedelta(seconds=3 * GAS_WAIT_SECONDS))

    intent = svc.intent(iid)
    assert not report.gas_wallet_empty
    assert (intent.status, intent.error, intent.sender) == (CONFIRMED, None, runtime.relayer.address)
