"""Local nonce handling of ChainClient: sends in a row, and recovery whenever the local count is wrong."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3.contract import Contract
from web3.exceptions import Web3RPCError

from app.chain import client as client_module
from app.chain.client import ChainClient
from app.chain.escrow import Deployment
from app.errors import ChainError, ContractRevert, NonceContention
from tests.chain.conftest import Stack
from tests.factories import Actors
from tests.threads import run_threads

FAUCET = 1_000


def faucet(chain: ChainClient, token: Contract, sender: LocalAccount, to: str | None = None) -> int:
    """Send one tUSD faucet call from ``sender`` through ``chain``; return the nonce it was mined with."""
    fn = chain.contract("TestUSD", str(token.address)).functions.faucet(to or sender.address, FAUCET)
    receipt = chain.send(fn, sender)
    assert receipt["status"] == 1
    return int(chain.w3.eth.get_transaction(receipt["transactionHash"])["nonce"])


def count(chain: ChainClient, account: LocalAccount) -> int:
    return int(chain.w3.eth.get_transaction_count(account.address))


def send_around(chain: ChainClient, sender: LocalAccount, to: str, value: int = 1) -> None:
    """A transaction from ``sender`` that this client does not know about (another process's)."""
    tx = {
        "from": sender.address,
        "to": to,
        "value": value,
        "gas": 21_000,
        "gasPrice": chain.w3.eth.gas_price,
        "chainId": chain.chain_id,
        "nonce": chain.w3.eth.get_transaction_count(sender.address, "pending"),
    }
    tx_hash = chain.w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    assert chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.05)["status"] == 1


def count_raw_sends(chain: ChainClient, monkeypatch: pytest.MonkeyPatch) -> list[HexBytes]:
    """Record every raw transaction the client hands to the node."""
    sent: list[HexBytes] = []
    original: Callable[[Any], HexBytes] = chain.w3.eth.send_raw_transaction

    def spy(raw: Any) -> HexBytes:
        sent.append(HexBytes(raw))
        return original(raw)

    monkeypatch.setattr(chain.w3.eth, "send_raw_transaction", spy)
    return sent


def test_many_sends_in_a_row_use_consecutive_nonces(stack: Stack) -> None:
    chain, admin, token = stack.chain, stack.actors.admin, stack.deployment.token
    start = count(chain, admin)
    nonces = [faucet(chain, token, admin) for _ in range(25)]
    assert nonces == list(range(start, start + 25))
    assert count(chain, admin) == start + 25


@pytest.mark.anvil
def test_concurrent_sends_from_one_account_get_distinct_nonces(anvil_stack: Stack) -> None:
    chain, admin, token = anvil_stack.chain, anvil_stack.actors.admin, anvil_stack.deployment.token
    start = count(chain, admin)
    nonces: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(8):
            n = faucet(chain, token, admin)
            with lock:
                nonces.append(n)

    assert run_threads([worker] * 4, timeout=120) == []
    assert sorted(nonces) == list(range(start, start + 32))
    assert count(chain, admin) == start + 32


def test_a_revert_at_estimation_consumes_no_nonce(stack: Stack) -> None:
    chain, a = stack.chain, stack.actors
    before = count(chain, a.stranger)
    with pytest.raises(ContractRevert):
        chain.send(stack.escrow.contract.functions.pause(), a.stranger)
    assert count(chain, a.stranger) == before
    assert faucet(chain, stack.deployment.token, a.stranger) == before


def test_a_mined_status_zero_transaction_consumes_its_nonce(stack: Stack) -> None:
    chain, a = stack.chain, stack.actors
    before = count(chain, a.stranger)
    with pytest.raises(ContractRevert) as info:
        chain.send(stack.escrow.contract.functions.pause(), a.stranger, gas=100_000)
    assert info.value.tx_hash is not None
    assert chain.w3.eth.get_transaction(info.value.tx_hash)["nonce"] == before
    assert faucet(chain, stack.deployment.token, a.stranger) == before + 1


def test_a_nonce_used_behind_the_clients_back_is_re_read(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local nonce is too low: the node refuses it, the client re-reads the nonce and sends again."""
    chain, a, token = stack.chain, stack.actors, stack.deployment.token
    faucet(chain, token, a.seller)  # the client now counts this account locally
    send_around(chain, a.seller, a.buyer.address)
    sent = count_raw_sends(chain, monkeypatch)
    expected = count(chain, a.seller)
    assert faucet(chain, token, a.seller) == expected
    assert len(sent) == 2  # the refused one and the retry


def test_a_local_nonce_ahead_of_the_chain_is_re_read(
    chain: ChainClient, deployment: Deployment, actors: Actors
) -> None:
    """eth-tester refuses a nonce from the future outright; the client re-reads and sends again."""
    faucet(chain, deployment.token, actors.seller)
    chain._nonces[actors.seller.address] += 5  # as if transactions the client believes sent were dropped
    expected = count(chain, actors.seller)
    assert faucet(chain, deployment.token, actors.seller) == expected


def test_a_failed_send_forgets_the_local_nonce(stack: Stack) -> None:
    """A send the node refuses for another reason is not retried, and the nonce is re-read next time."""
    chain, a, token = stack.chain, stack.actors, stack.deployment.token
    poor = Account.create()
    fn = chain.contract("TestUSD", str(token.address)).functions.faucet(poor.address, FAUCET)
    with pytest.raises(Exception) as info:
        chain.send(fn, poor, gas=100_000)  # no ether for gas
    assert not isinstance(info.value, ContractRevert)
    assert poor.address not in chain._nonces
    send_around(chain, a.admin, poor.address, value=10**18)
    assert faucet(chain, token, poor) == 0


def test_snapshot_revert_resets_the_local_nonces(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a revert the chain's count went back: the next send uses it at once, with no refused attempt
    (on anvil a nonce from the future would not even be refused, it would wait in the pool forever)."""
    chain, admin, token = stack.chain, stack.actors.admin, stack.deployment.token
    faucet(chain, token, admin)
    before = count(chain, admin)
    snap = chain.snapshot()
    for _ in range(3):
        faucet(chain, token, admin)
    assert count(chain, admin) == before + 3
    chain.revert(snap)
    assert count(chain, admin) == before
    sent = count_raw_sends(chain, monkeypatch)
    assert faucet(chain, token, admin) == before
    assert len(sent) == 1


@pytest.mark.anvil
def test_second_client_on_the_same_node_sending_from_the_same_account(anvil_stack: Stack) -> None:
    first, a, token = anvil_stack.chain, anvil_stack.actors, anvil_stack.deployment.token
    second = ChainClient.rpc(str(first.w3.provider.endpoint_uri))
    start = count(first, a.seller)
    nonces = []
    for _ in range(4):  # each client's local nonce is stale every time the other one sent
        nonces.append(faucet(first, token, a.seller))
        nonces.append(faucet(second, token, a.seller))
    assert nonces == list(range(start, start + 8))
    assert count(first, a.seller) == start + 8


@pytest.mark.anvil
def test_reverting_to_a_used_anvil_snapshot_raises(anvil_stack: Stack) -> None:
    """anvil snapshots are one-shot; silently staying on the current state would corrupt the next test."""
    chain, admin, token = anvil_stack.chain, anvil_stack.actors.admin, anvil_stack.deployment.token
    snap = chain.snapshot()
    faucet(chain, token, admin)
    chain.revert(snap)
    faucet(chain, token, admin)
    with pytest.raises(ChainError, match="one-shot"):
        chain.revert(snap)
    assert admin.address not in chain._nonces  # re-read after any revert attempt


@pytest.mark.anvil
def test_dev_node_errors_are_not_swallowed(anvil_stack: Stack) -> None:
    chain = anvil_stack.chain
    with pytest.raises(ChainError, match="evm_setNextBlockTimestamp"):
        chain.set_next_block_time(1)  # before the latest block
    now = chain.now()
    assert chain.advance_time(3_600) == now + 3_600


def test_a_nonce_lost_every_time_ends_in_nonce_contention_not_a_raw_node_error(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, admin, token = stack.chain, stack.actors.admin, stack.deployment.token
    tries: list[object] = []

    def always_taken(raw: object) -> HexBytes:
        tries.append(raw)
        raise Web3RPCError("{'code': -32003, 'message': 'nonce too low'}")

    monkeypatch.setattr(client_module, "NONCE_BACKOFF_S", 0.0)
    monkeypatch.setattr(chain.w3.eth, "send_raw_transaction", always_taken)
    with pytest.raises(NonceContention) as info:
        faucet(chain, token, admin)
    assert info.value.attempts == client_module.NONCE_RETRIES + 1 == len(tries)
    assert info.value.sender == admin.address
    assert admin.address not in chain._nonces  # re-read on the next send
