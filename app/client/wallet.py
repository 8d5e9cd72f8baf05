"""A party's own wallet, for the transactions the API hands out where SPEC §4 has no signed message (a
seller's refund, a withdrawal, a regulator's freeze): sign what the API answered, unchanged but for nonce
and fees, and send it to the chain's node."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from eth_account.signers.local import LocalAccount

from app.chain.client import ChainClient


class NodeWallet:
    """Signs with the given account and sends through ``chain`` (any node the party trusts)."""

    def __init__(self, chain: ChainClient, lock: AbstractContextManager[Any] | None = None) -> None:
        self.chain = chain
        #: the in-process chain's turn (eth-tester is single-threaded; the service's sweeps share it)
        self.lock = lock if lock is not None else nullcontext()

    def send(self, account: LocalAccount, answer: dict[str, Any]) -> str:
        """Sign and send the API's ``transaction``; wait for it to be mined; its hash."""
        with self.lock:
            return self._send(account, answer)

    def _send(self, account: LocalAccount, answer: dict[str, Any]) -> str:
        tx = answer["transaction"]
        if tx["from"].lower() != account.address.lower() or int(tx["chainId"]) != self.chain.chain_id:
            raise ValueError(f"the transaction is for {tx['from']} on chain {tx['chainId']}, not this wallet")
        signed = account.sign_transaction(
            {
                "to": tx["to"],
                "data": tx["data"],
                "value": int(tx["value"], 16),
                "gas": int(tx["gas"], 16),
                "chainId": int(tx["chainId"]),
                "nonce": self.chain.nonce(account.address),
                **self.chain.fees().fields(),
            }
        )
        tx_hash = self.chain.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.1)
        if int(receipt["status"]) != 1:
            raise ValueError(f"transaction 0x{bytes(tx_hash).hex()} reverted")
        return "0x" + bytes(tx_hash).hex()


__all__ = ["NodeWallet"]
