"""Local mode's anvil state: saved atomically with a backup and the dev clock, loaded on start with the clock
put back, restarted from it after a SIGKILL, and a corrupt file is a clear startup error (never a fresh
chain)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.chain.anvil import AnvilProcess, check_state_file
from app.chain.client import ChainClient
from app.domain.order_state import Status
from app.errors import ChainError, CorruptChainState
from tests.chain.conftest import anvil_binary, deploy_test_stack
from tests.factories import DAY, Actors, OrderFactory

pytestmark = pytest.mark.anvil

ROOT = Path(__file__).resolve().parents[2]


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # the node is still coming back
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def _node(chain: ChainClient) -> AnvilProcess:
    node = chain._anvil
    assert node is not None
    return node


def _saved(chain: ChainClient) -> bool:
    return _node(chain).saved_block == chain.block_number()


def test_state_is_saved_atomically_with_the_previous_save_beside_it(tmp_path: Path) -> None:
    anvil_binary()
    state = tmp_path / "anvil-state.json"
    chain = ChainClient.start_anvil(state_file=state)
    try:
        assert not state.exists()  # nothing written until there is something to save
        chain.mine(1)
        _until(lambda: _saved(chain), 10, "first save")
        first = state.read_bytes()
        chain.advance_time(3 * DAY)
        _until(lambda: _saved(chain), 10, "second save")
        node = _node(chain)
        assert node.backup_file is not None and node.clock_file is not None
        assert node.backup_file.read_bytes() == first  # the previous good save, kept beside it
        assert check_state_file(state) and check_state_file(node.backup_file)
        saved = json.loads(state.read_bytes())
        assert int(str(saved["best_block_number"]), 0) == chain.block_number() == 2
        clock = json.loads(node.clock_file.read_text())
        assert clock["block"] == 2 and clock["block_time"] == chain.now()
        assert clock["offset"] >= 3 * DAY - 5
        assert not list(tmp_path.glob("*.tmp"))  # temporary files are renamed, never left
        assert node.save_state() is False  # the head did not move: nothing to write
    finally:
        chain.close()


def test_a_restart_from_state_keeps_the_dev_clock_and_funding_works(tmp_path: Path) -> None:
    anvil_binary()
    state = tmp_path / "anvil-state.json"
    chain = ChainClient.start_anvil(state_file=state)
    try:
        actors = Actors.from_accounts(chain.dev_accounts(len(Actors.__dataclass_fields__)))
        deployment = deploy_test_stack(chain, actors)  # moves the clock a role delay ahead of the wall clock
        chain.advance_time(5 * DAY)
        clock, block, port = chain.now(), chain.block_number(), _node(chain).port
        assert clock > time.time() + 5 * DAY
    finally:
        chain.close()  # a clean stop saves the state and the clock

    chain = ChainClient.start_anvil(state_file=state, port=port)
    try:
        assert chain.block_number() == block
        chain.mine(1)
        assert chain.now() >= clock  # not back at the wall clock
        deployment.escrow.chain = chain
        factory = OrderFactory(chain, deployment.escrow, deployment.token, actors)
        order = factory.fund(amount=4_000_000)  # no InvalidSchedule, no InvalidThreshold(activeOracles=0)
        assert factory.current(order).status == Status.FUNDED
    finally:
        chain.close()


def test_a_killed_node_is_started_again_from_its_last_save(tmp_path: Path) -> None:
    anvil_binary()
    chain = ChainClient.start_anvil(state_file=tmp_path / "anvil-state.json")
    try:
        node = _node(chain)
        chain.advance_time(2 * DAY)
        clock, block = chain.now(), chain.block_number()
        _until(lambda: _saved(chain), 10, "save")
        pid = node.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _until(lambda: node.restarts == 1 and chain.block_number() == block, 20, "restarted")
        assert node.pid not in (None, pid)
        chain.mine(1)
        assert chain.now() >= clock and chain.block_number() == block + 1
    finally:
        chain.close()


def test_a_truncated_state_file_is_a_startup_error_naming_it_and_its_backup(tmp_path: Path) -> None:
    anvil_binary()
    state = tmp_path / "anvil-state.json"
    chain = ChainClient.start_anvil(state_file=state)
    try:
        chain.mine(1)
        _until(lambda: _saved(chain), 10, "first save")
        chain.mine(1)
        _until(lambda: _saved(chain), 10, "second save")
    finally:
        chain.close()
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])  # what a kill in the middle of a non-atomic dump leaves

    with pytest.raises(CorruptChainState) as raised:
        ChainClient.start_anvil(state_file=state)
    message = str(raised.value)
    assert str(state) in message and f"{state}.bak" in message
    assert raised.value.backup == f"{state}.bak"
    assert state.read_bytes() == data[: len(data) // 2]  # left as it was, for the operator

    # the backup the message names is a good state: moved into place, the chain starts from it
    os.replace(f"{state}.bak", state)
    chain = ChainClient.start_anvil(state_file=state)
    try:
        assert chain.block_number() == 2  # the save before the last one (the clean stop saved once more)
    finally:
        chain.close()


def test_a_missing_state_file_with_its_backup_beside_it_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "anvil-state.json"
    Path(f"{state}.bak").write_text("{}")
    with pytest.raises(CorruptChainState, match="missing"):
        check_state_file(state)
    state.write_text('{"some": "json"}')
    with pytest.raises(CorruptChainState, match="not an anvil state"):
        check_state_file(state)


def test_tradeguard_run_refuses_a_corrupt_state_file(tmp_path: Path) -> None:
    state = tmp_path / "anvil-state.json"
    state.write_text('{"block": {"number": "0x2"}, "accounts": {')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update(TRADEGUARD_STATE_DIR=str(tmp_path), TRADEGUARD_CHAIN="local", TRADEGUARD_PORT="0")
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "run"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "CorruptChainState" in err and str(state) in err and "no backup" in err
    assert "Traceback" not in err


def test_a_state_file_anvil_refuses_is_a_startup_error_too(tmp_path: Path) -> None:
    anvil_binary()
    state = tmp_path / "anvil-state.json"
    state.write_text('{"block": {}, "accounts": {}}')  # parses, but is no state anvil can load
    with pytest.raises(CorruptChainState, match="anvil refused it") as raised:
        ChainClient.start_anvil(state_file=state)
    assert str(state) in str(raised.value) and raised.value.backup is None


def test_the_dev_nodes_own_wallet_signs_typed_data_as_the_well_known_key_does() -> None:
    """The console's dev wallet on anvil asks the node (``eth_signTypedData_v4``): same signature, and
    the signer recovers to the account."""
    from app.chain import eip712

    anvil_binary()
    chain = ChainClient.start_anvil()
    try:
        account = chain.dev_accounts(1)[0]
        doc = eip712.jsonable(
            eip712.permit_typed_data(
                token_name="TradeGuard USD",
                chain_id=chain.chain_id,
                token=account.address,
                owner=account.address,
                spender=account.address,
                value=5,
                nonce=0,
                deadline=2**40,
            )
        )
        signed = chain.sign_typed_data_v4(account.address, doc)
        assert signed == "0x" + eip712.sign_typed_data(account.key, doc).hex()
        assert eip712.recover_signer(doc, bytes.fromhex(signed[2:])) == account.address
    finally:
        chain.close()
    with pytest.raises(ChainError, match="no wallet"):
        ChainClient.embedded().sign_typed_data_v4(account.address, doc)
