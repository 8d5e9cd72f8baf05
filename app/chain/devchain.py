"""Development chains: which chains they are, their pre-funded accounts, and moving their time and history.

:class:`DevChainControls` is mixed into :class:`~app.chain.client.ChainClient`: on the embedded eth-tester
chain it drives the tester directly, on anvil (or any dev node) it uses the ``evm_*`` / ``anvil_*`` JSON-RPC
methods. Everything here refuses to run on a chain whose id is not a development chain's.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from app.errors import ChainError, ChainUnavailable, TransactionFailed

#: Chain ids of development chains (anvil/hardhat, geth --dev, eth-tester).
DEV_CHAIN_IDS = frozenset({31337, 1337, 131277322940537})
#: Pre-funded dev accounts on the embedded chain and on anvils we start.
EMBEDDED_ACCOUNTS = 20
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


class DevChainControls:
    """Dev accounts, time travel, mining, snapshots and reorgs; the host class provides the attributes."""

    w3: Web3
    backend: str
    chain_id: int
    _tester: Any
    _nonces: dict[str, int]
    _nonce_lock: threading.Lock

    if TYPE_CHECKING:  # provided by ChainClient

        def now(self) -> int: ...

        def _translate(
            self, exc: BaseException, tx_hash: str | None = None, sender: str | None = None
        ) -> Exception: ...

    @property
    def is_dev_chain(self) -> bool:
        """Whether this is a development chain (faucet and time travel allowed)."""
        return self.chain_id in DEV_CHAIN_IDS

    def dev_accounts(self, count: int = 10) -> list[LocalAccount]:
        """The pre-funded accounts of a development chain, with their (public, well-known) keys."""
        if not self.is_dev_chain:
            raise ChainUnavailable("dev accounts exist only on development chains")
        if self.backend == "embedded":
            from eth_tester.backends.pyevm.main import get_default_account_keys

            keys = get_default_account_keys(quantity=count)
            return [Account.from_key(k.to_bytes()) for k in keys]
        Account.enable_unaudited_hdwallet_features()
        return [
            Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)
        ]

    def advance_time(self, seconds: int) -> int:
        """Dev chains only: mine a block ``seconds`` after the latest one; returns its timestamp."""
        self._require_dev()
        target = self.now() + seconds
        if self.backend == "embedded":
            pending = int(self._tester.get_block_by_number("pending")["timestamp"])
            self._tester.time_travel(max(target, pending))
            self._tester.mine_blocks(1)
        else:
            self._dev_rpc("evm_setNextBlockTimestamp", target)
            self._dev_rpc("evm_mine")
        return self.now()

    def set_next_block_time(self, timestamp: int) -> None:
        """Dev chains only: the next mined block gets exactly ``timestamp``."""
        self._require_dev()
        if self.backend == "embedded":
            self._tester.time_travel(timestamp)
        else:
            self._dev_rpc("evm_setNextBlockTimestamp", timestamp)

    def mine(self, blocks: int = 1) -> None:
        """Dev chains only: mine empty blocks."""
        self._require_dev()
        if self.backend == "embedded":
            self._tester.mine_blocks(blocks)
        else:
            for _ in range(blocks):
                self._dev_rpc("evm_mine")

    def snapshot(self) -> Any:
        """Dev chains only: snapshot the chain (anvil snapshots are one-shot)."""
        self._require_dev()
        if self.backend == "embedded":
            return self._tester.take_snapshot()
        return self._dev_rpc("evm_snapshot")

    def revert(self, snapshot_id: Any) -> None:
        """Dev chains only: go back to a snapshot; local nonces are re-read afterwards."""
        self._require_dev()
        if self.backend == "embedded":
            self._tester.revert_to_snapshot(snapshot_id)
        else:
            try:
                reverted = self._dev_rpc("evm_revert", snapshot_id)
            finally:
                with self._nonce_lock:
                    self._nonces.clear()
            if reverted is not True:
                # anvil snapshots are one-shot: reverting to one twice (or to an unknown id) does nothing
                raise ChainError(f"no snapshot {snapshot_id!r} to revert to (anvil snapshots are one-shot)")
            return
        with self._nonce_lock:
            self._nonces.clear()

    def reorg(self, depth: int) -> None:
        """anvil only: replace the latest ``depth`` blocks with as many empty ones (``anvil_reorg``).

        The transactions of the dropped blocks are gone (not back in the pool); local nonces are re-read.
        """
        self._require_dev()
        if self.backend == "embedded":
            raise ChainError("reorg needs anvil (eth-tester can only revert to a snapshot)")
        try:
            self._dev_rpc("anvil_reorg", depth, [])
        finally:
            with self._nonce_lock:
                self._nonces.clear()

    def sign_typed_data_v4(self, address: str, document: dict[str, Any]) -> str:
        """The dev node's own ``eth_signTypedData_v4`` for one of its unlocked accounts (anvil answers it for
        its dev accounts); 0x-hex signature. eth-tester has no such method: the in-process chain refuses."""
        if self.backend == "embedded":
            raise ChainError("eth_signTypedData_v4 needs a node (the in-process chain has no wallet)")
        return str(self._dev_rpc("eth_signTypedData_v4", address, json.dumps(document)))

    def send_from_dev_account(self, tx: dict[str, Any]) -> str:
        """Dev chains only: the node's own ``eth_sendTransaction`` from one of its unlocked dev accounts
        (anvil unlocks them; eth-tester holds the same keys); the transaction's hash, without waiting for it
        to be mined. A call the node refuses raises the decoded contract error (or
        :class:`TransactionFailed`)."""
        self._require_dev()
        fields = {
            **tx,
            "from": Web3.to_checksum_address(tx["from"]),
            "to": Web3.to_checksum_address(tx["to"]),
        }
        try:
            sent = self.w3.eth.send_transaction(cast(Any, fields))
        except Exception as exc:  # a revert in the node's estimate (decoded), an unknown account, no node
            found = self._translate(exc, None, fields["from"])
            if isinstance(found, ChainError):
                raise found from exc
            raise TransactionFailed("-", f"eth_sendTransaction from {fields['from']} refused: {exc}") from exc
        return "0x" + bytes(sent).hex()

    def _dev_rpc(self, method: str, *params: Any) -> Any:
        """Call a dev-node JSON-RPC method; an error answer raises :class:`ChainError`."""
        try:
            response = self.w3.provider.make_request(cast(Any, method), list(params))
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise ChainUnavailable(f"{method}: {exc}") from exc
        if response.get("error"):
            raise ChainError(f"{method}{list(params)} failed: {response['error']}")
        return response.get("result")

    def _require_dev(self) -> None:
        if not self.is_dev_chain:
            raise ChainUnavailable("time travel and snapshots exist only on development chains")


__all__ = ["ANVIL_MNEMONIC", "DEV_CHAIN_IDS", "EMBEDDED_ACCOUNTS", "DevChainControls"]
