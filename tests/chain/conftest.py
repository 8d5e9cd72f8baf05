"""Fixtures for the chain client tests: an anvil node per session beside the embedded chain.

``stack`` runs a test once on each backend (the anvil run is marked ``anvil``), each from the freshly deployed
stack: a snapshot before, a revert after (anvil snapshots are one-shot, so one is taken per test).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from app.chain.anvil import AnvilProcess
from app.chain.client import ChainClient
from app.chain.escrow import Deployment, Escrow, deploy_stack
from app.errors import ChainUnavailable
from tests.factories import Actors, OrderFactory

#: Init code of a contract whose every call reverts with its own calldata, so that a test can make the chain
#: revert with exactly the bytes it wants (Error(string), Panic(uint256), an unknown selector...):
#: runtime ``CALLDATASIZE 0 0 CALLDATACOPY CALLDATASIZE 0 REVERT``, returned by ``CODECOPY``/``RETURN``.
ECHO_REVERTER_INITCODE = "0x600a600c600039600a6000f3" + "366000600037366000fd"


def anvil_binary() -> str:
    """The anvil binary, or skip the test with the reason."""
    try:
        return AnvilProcess.binary()
    except ChainUnavailable as exc:
        pytest.skip(f"anvil binary missing: {exc}")


def deploy_test_stack(chain: ChainClient, actors: Actors) -> Deployment:
    """The stack the root conftest deploys, on any chain."""
    return deploy_stack(
        chain,
        admin=actors.admin,
        treasury=actors.treasury.address,
        oracles=[actors.oracle1.address, actors.oracle2.address, actors.oracle3.address],
        arbitrators=[actors.arbitrator.address],
        regulators=[actors.regulator.address],
        tax_recipients={actors.tax.address: 5000},
    )


def deploy_echo_reverter(chain: ChainClient, sender: LocalAccount, abi: list[dict[str, Any]]) -> Contract:
    """Deploy the echo reverter and return it under ``abi`` (functions named like the errors to raise)."""
    tx = {
        "from": sender.address,
        "chainId": chain.chain_id,
        "gasPrice": chain.w3.eth.gas_price,
        "gas": 100_000,
        "data": ECHO_REVERTER_INITCODE,
        "nonce": chain.w3.eth.get_transaction_count(sender.address, "pending"),
    }
    tx_hash = chain.w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.05)
    assert receipt["status"] == 1 and receipt["contractAddress"]
    chain.reset_nonce(sender.address)  # sent around the client: let it re-read
    return chain.w3.eth.contract(address=receipt["contractAddress"], abi=abi)


@dataclass
class Stack:
    """One backend with the stack deployed."""

    backend: str
    chain: ChainClient
    deployment: Deployment
    actors: Actors

    @property
    def escrow(self) -> Escrow:
        return self.deployment.escrow

    @property
    def factory(self) -> OrderFactory:
        return OrderFactory(self.chain, self.deployment.escrow, self.deployment.token, self.actors)


@pytest.fixture(scope="session")
def anvil_chain() -> Iterator[ChainClient]:
    anvil_binary()
    client = ChainClient.start_anvil()
    yield client
    client.close()


@pytest.fixture(scope="session")
def anvil_actors(anvil_chain: ChainClient) -> Actors:
    return Actors.from_accounts(anvil_chain.dev_accounts(len(Actors.__dataclass_fields__)))


@pytest.fixture(scope="session")
def anvil_deployment(anvil_chain: ChainClient, anvil_actors: Actors) -> Deployment:
    return deploy_test_stack(anvil_chain, anvil_actors)


@pytest.fixture
def anvil_stack(
    anvil_chain: ChainClient, anvil_deployment: Deployment, anvil_actors: Actors
) -> Iterator[Stack]:
    yield from _isolated(Stack("anvil", anvil_chain, anvil_deployment, anvil_actors))


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The deployed stack on each backend in turn."""
    if request.param == "embedded":
        st = Stack(
            "embedded",
            request.getfixturevalue("chain"),
            request.getfixturevalue("deployment"),
            request.getfixturevalue("actors"),
        )
    else:
        st = request.getfixturevalue("anvil_stack")
        yield st
        return
    yield from _isolated(st)


def _isolated(st: Stack) -> Iterator[Stack]:
    snap = st.chain.snapshot()
    tracked = dict(st.escrow.orders)
    try:
        yield st
    finally:
        st.chain.revert(snap)
        st.escrow.orders.clear()
        st.escrow.orders.update(tracked)
