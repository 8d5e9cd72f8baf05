"""``ChainClient``: the one place that talks to an EVM chain.

It owns the web3 provider over one of three backends — the in-process eth-tester chain (``embedded``), any
JSON-RPC URL (``rpc``), or an anvil node it starts and stops itself (``anvil``) — and with it deployment,
sending with local nonce handling, receipts, event decoding and the translation of every contract revert into
a :class:`~app.errors.ContractRevert` carrying the decoded custom error. Both revert shapes are handled:
eth-tester's ``TransactionFailed("execution reverted: b'…'")`` and a node's ``ContractCustomError`` /
``ContractLogicError`` with ``.data``. A mined transaction with status 0 (eth-tester does not raise when an
explicit gas limit is given) is explained by the node's ``debug_traceTransaction`` where it has one, else
replayed with ``eth_call`` at its own block (its timestamp), then at the block before.

Nonces are counted locally per sender; a nonce error from the node (another process sending from the same
account, a reverted snapshot) makes the client re-read the nonce and send again, a few times at most.

Beside it: :mod:`app.chain.abi` (decoding errors and logs), :mod:`app.chain.reverts` (revert data and node
refusals read out of exceptions), :mod:`app.chain.anvil` (the anvil process) and :mod:`app.chain.devchain`
(dev accounts, time travel, snapshots and reorgs, mixed into the client).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    BlockNotFound,
    ContractCustomError,
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import TxReceipt

from app.chain import compiler, speedups, transport
from app.chain.abi import AbiRegistry, Event
from app.chain.anvil import AnvilProcess
from app.chain.devchain import EMBEDDED_ACCOUNTS, DevChainControls
from app.chain.reverts import (
    eth_tester_failure,
    hex_data,
    is_already_known,
    is_insufficient_funds,
    is_nonce_error,
    is_nonce_too_low,
    revert_data_from_exception,
)
from app.errors import (
    ChainError,
    ChainUnavailable,
    ContractRevert,
    GasWalletEmpty,
    NonceContention,
    NonceTooLow,
    TransactionFailed,
)

speedups.install()  # memoised keccak for checksummed addresses and ABI selectors (see the module)

Backend = Literal["embedded", "rpc", "anvil"]


@dataclass(frozen=True)
class BlockHeader:
    """What the indexer needs of a block: its number, hash, parent hash and timestamp."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int


#: How often a send is retried with a nonce re-read from the chain after a nonce error, and the longest pause
#: (seconds, drawn at random up to it, doubling each time) before a retry: two API processes sending from one
#: dev account at once (the faucet under a load test) re-read the same pending nonce and collide again
#: unless they step apart; three immediate retries were not enough there and the last error was a 500.
NONCE_RETRIES = 8
NONCE_BACKOFF_S = 0.01


@dataclass(frozen=True)
class PreparedTx:
    """A signed transaction not yet broadcast: what a relayer records before it lets go of it."""

    raw: bytes
    tx_hash: str
    sender: str
    nonce: int
    gas: int


#: How much a replacement must raise each fee (geth and anvil accept +10 %; a margin above it).
REPLACEMENT_BUMP_PERCENT = 13


@dataclass(frozen=True)
class Fees:
    """What a transaction offers to pay per gas: EIP-1559 (``priority`` set: ``max_fee`` is
    ``maxFeePerGas``) or, on a chain without a base fee, a legacy ``gasPrice`` of ``max_fee``."""

    max_fee: int
    priority: int | None = None

    def fields(self) -> dict[str, Any]:
        if self.priority is None:
            return {"gasPrice": self.max_fee}
        return {"type": 2, "maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": self.priority}

    def bumped(self, floor: Fees, percent: int = REPLACEMENT_BUMP_PERCENT) -> Fees:
        """Fees that replace a transaction sent with these (every field up by ``percent``, rounded up, as
        nodes require) and that pay at least ``floor`` (what the chain asks now)."""

        def up(value: int) -> int:
            return -(-value * (100 + percent) // 100)

        if self.priority is None or floor.priority is None:
            return Fees(max(up(self.max_fee), floor.max_fee))
        priority = max(up(self.priority), floor.priority)
        return Fees(max(up(self.max_fee), floor.max_fee, priority), priority)


class ChainClient(DevChainControls):
    """Provider, deployments, sending, receipts, events and typed reverts for one chain.

    On development chains also dev accounts, time travel, snapshots and reorgs
    (:class:`~app.chain.devchain.DevChainControls`).
    """

    backend: Backend

    def __init__(
        self,
        w3: Web3,
        backend: Backend,
        *,
        tester: Any = None,
        anvil: AnvilProcess | None = None,
        receipt_timeout: float = 120.0,
    ) -> None:
        self.w3 = w3
        self.backend = backend
        self._tester = tester
        self._anvil = anvil
        self._receipt_timeout = receipt_timeout
        self._nonces: dict[str, int] = {}
        self._nonce_lock = threading.Lock()
        # the latest block (header, base fee) and the suggested tip, with the monotonic time each was read:
        # callers that can use a reading a moment old say how old (``max_age``) and share one round trip
        self._head: tuple[float, BlockHeader, int | None] | None = None
        self._tip: tuple[float, int] | None = None
        self._pending: dict[str, tuple[float, int]] = {}
        self._head_lock = threading.Lock()
        self._artifacts: dict[str, dict[str, Any]] = {}
        self._contracts: dict[tuple[str, str], Contract] = {}
        self.abis = AbiRegistry(self._all_abis())
        # web3's validation middleware asks a node for eth_chainId before every call and estimate (21 of
        # ~48 JSON-RPC calls per funded order, measured): transactions carry the chain id read here once,
        # and the node itself refuses a signed transaction for another chain (EIP-155). eth-tester is in
        # process (no round trip) and needs the middleware's normalising of call objects: it keeps it.
        if backend != "embedded" and "validation" in {name for _mw, name in w3.middleware_onion.middleware}:
            w3.middleware_onion.remove("validation")
        try:
            self.chain_id = int(w3.eth.chain_id)
        except Exception as exc:  # any transport error means the node is not there
            raise ChainUnavailable(f"chain not reachable: {exc}") from exc

    # ------------------------------------------------------------------ construction

    @classmethod
    def embedded(cls) -> ChainClient:
        """An in-process eth-tester chain (py-evm), fresh from genesis."""
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider

        genesis = PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000})
        state = PyEVMBackend.generate_genesis_state(num_accounts=EMBEDDED_ACCOUNTS)
        tester = EthereumTester(PyEVMBackend(genesis_parameters=genesis, genesis_state=state))
        return cls(Web3(EthereumTesterProvider(tester)), "embedded", tester=tester)

    @classmethod
    def rpc(cls, url: str, timeout: float = 30.0) -> ChainClient:
        """Any JSON-RPC node."""
        return cls(Web3(transport.provider_for(url, timeout)), "rpc")

    @classmethod
    def start_anvil(
        cls, state_file: Path | None = None, port: int | None = None, extra_args: Sequence[str] = ()
    ) -> ChainClient:
        """Start an anvil node owned by the returned client (stopped by :meth:`close`)."""
        node = AnvilProcess(port=port, state_file=state_file, extra_args=extra_args)
        node.start()
        try:
            return cls(Web3(transport.provider_for(node.url, 60)), "anvil", anvil=node)
        except Exception:
            node.stop()
            raise

    def close(self) -> None:
        """Stop the node this client owns, if any."""
        if self._anvil is not None:
            self._anvil.stop()
            self._anvil = None

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ artifacts and deployment

    def _all_abis(self) -> list[list[dict[str, Any]]]:
        build = compiler.artifacts_dir()
        abis = []
        for path in sorted(build.glob("*.json")):
            abis.append(json.loads(path.read_text())["abi"])
        return abis

    def artifact(self, name: str) -> dict[str, Any]:
        """A build artifact (checked for staleness once per client)."""
        if name not in self._artifacts:
            self._artifacts[name] = compiler.load_artifact(name)
        return self._artifacts[name]

    def contract(self, name: str, address: str) -> Contract:
        """A contract object for a deployed instance (one per name and address: building one parses its ABI,
        1.8 ms for the token, which the API did for every order it created and funded)."""
        key = (name, to_checksum_address(address))
        found = self._contracts.get(key)
        if found is None:
            found = self.w3.eth.contract(address=key[1], abi=self.artifact(name)["abi"])
            self._contracts[key] = found
        return found

    def deploy(
        self,
        name: str,
        *args: Any,
        sender: LocalAccount,
        libraries: dict[str, str] | None = None,
    ) -> Contract:
        """Deploy a contract from its artifact, linking the given libraries by name."""
        art = self.artifact(name)
        bytecode = str(art["bytecode"]).removeprefix("0x")
        for lib_name, lib_address in (libraries or {}).items():
            lib = self.artifact(lib_name)
            placeholder = "__$" + keccak(text=f"{lib['sourceName']}:{lib_name}").hex()[:34] + "$__"
            bytecode = bytecode.replace(placeholder, lib_address.lower().removeprefix("0x"))
        if "__$" in bytecode:
            raise ValueError(f"{name} needs libraries linked: pass libraries={{...}}")
        factory = self.w3.eth.contract(abi=art["abi"], bytecode="0x" + bytecode)
        tx = factory.constructor(*args).build_transaction(self._base_tx(sender))
        receipt = self._send_tx(tx, sender)
        address = receipt["contractAddress"]
        if address is None:
            raise TransactionFailed(receipt["transactionHash"].hex(), f"deploying {name} failed")
        return self.contract(name, address)

    # ------------------------------------------------------------------ sending

    def _base_tx(self, sender: LocalAccount) -> dict[str, Any]:
        return self._fixed_price_tx(sender, self._gas_price())

    def _fixed_price_tx(self, sender: LocalAccount, gas_price: int | Fees) -> dict[str, Any]:
        fees = gas_price if isinstance(gas_price, Fees) else Fees(gas_price)
        return {"from": sender.address, "chainId": self.chain_id, **fees.fields()}

    def _gas_price(self) -> int:
        return int(self.w3.eth.gas_price)

    def fees(self, max_age: float = 0.0) -> Fees:
        """EIP-1559 fees for a transaction now: twice the latest base fee plus the node's suggested tip
        (``eth_maxPriorityFeePerGas``), so that it stays includable through several full blocks; a chain
        without a base fee gets its legacy gas price. ``max_age``: seconds a base fee and tip already read
        may be reused (a relayer sending many transactions a second asks once). Raises
        :class:`ChainUnavailable` if the node does not answer."""
        try:
            _header, base = self._latest(max_age)
            if base is None:
                return Fees(self._gas_price())
            priority = self._priority_fee(max_age)
            return Fees(2 * base + priority, priority)
        except ChainError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    def _priority_fee(self, max_age: float) -> int:
        with self._head_lock:
            if self._tip is not None and max_age > 0 and time.monotonic() - self._tip[0] <= max_age:
                return self._tip[1]
        at = time.monotonic()
        try:
            priority = int(self.w3.eth.max_priority_fee)
        except (ValueError, NotImplementedError, Web3RPCError) as exc:
            if isinstance(exc, Web3RPCError) and not _method_missing(exc):
                raise
            priority = 10**9  # a node without the method: the usual tip
        with self._head_lock:
            self._tip = (at, priority)
        return priority

    def _latest(self, max_age: float) -> tuple[BlockHeader, int | None]:
        """The latest block's header and base fee, read at most ``max_age`` seconds ago (0: now)."""
        with self._head_lock:
            if self._head is not None and max_age > 0 and time.monotonic() - self._head[0] <= max_age:
                return self._head[1], self._head[2]
        at = time.monotonic()
        found = self._block("latest")
        if found is None:
            raise ChainError("the node has no latest block")
        header, base = found
        with self._head_lock:
            if self._head is None or self._head[0] <= at:
                self._head = (at, header, None if base is None else int(base))
        return header, None if base is None else int(base)

    def forget_head(self) -> None:
        """Drop the cached latest block and tip (after moving a dev chain's clock, say)."""
        with self._head_lock:
            self._head = self._tip = None

    def gas_price(self) -> int:
        """The node's gas price (``eth_gasPrice``); raises :class:`ChainUnavailable` if it does not answer."""
        try:
            return self._gas_price()
        except Exception as exc:
            raise self._translate(exc) from exc

    def _next_nonce(self, address: str) -> int:
        with self._nonce_lock:
            if address not in self._nonces:
                self._nonces[address] = int(
                    self.w3.eth.get_transaction_count(to_checksum_address(address), "pending")
                )
            nonce = self._nonces[address]
            self._nonces[address] = nonce + 1
            return nonce

    def reset_nonce(self, address: str) -> None:
        """Forget the local nonce of ``address`` (re-read from the chain on next send)."""
        with self._nonce_lock:
            self._nonces.pop(address, None)

    def send(
        self, fn: ContractFunction, sender: LocalAccount, *, gas: int | None = None, value: int = 0
    ) -> TxReceipt:
        """Send a contract call as a signed transaction and wait for its receipt.

        Without ``gas`` the call is estimated first, so a revert surfaces as :class:`ContractRevert` before
        anything is sent. With ``gas`` it is sent as is; a status-0 receipt is replayed to decode the reason.
        """
        tx: dict[str, Any] = {**self._base_tx(sender), "to": fn.address, "value": value}
        tx["data"] = speedups.calldata(fn)
        if gas is None:
            try:
                gas = self._estimate(tx)
            except Exception as exc:
                raise self._translate(exc) from exc
        tx["gas"] = gas
        return self._send_tx(tx, sender)

    def _estimate(self, tx: dict[str, Any]) -> int:
        """Gas for ``tx`` with a margin, estimated against the pending block: the block it will be mined in
        (its timestamp included, which a dev node's ``evm_setNextBlockTimestamp`` may have set ahead).
        eth-tester takes no block argument here and estimates against its pending block anyway."""
        if self.backend == "embedded":
            gas = self.w3.eth.estimate_gas(cast(Any, tx))
        else:
            # asked of the provider alone; an error (a revert) is asked again of web3, which raises it
            gas = speedups.estimate_gas(self.w3.provider, tx, "pending")
            if gas is speedups.NOT_DONE:
                gas = self.w3.eth.estimate_gas(cast(Any, tx), "pending")
        return int(gas) * 5 // 4 + 20_000

    def _send_tx(self, tx: dict[str, Any], sender: LocalAccount) -> TxReceipt:
        tx = dict(tx)
        if "gas" not in tx:
            try:
                tx["gas"] = self._estimate(tx)
            except Exception as exc:
                raise self._translate(exc) from exc
        attempt = 0
        while True:
            tx["nonce"] = self._next_nonce(sender.address)
            signed = sender.sign_transaction(tx)
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
                break
            except Exception as exc:
                if is_already_known(exc):
                    tx_hash = HexBytes(signed.hash)
                    break
                # Whatever went wrong, the local nonce may now be wrong: re-read it on the next send. Another
                # sender of this account (a second process, a reverted snapshot) makes nonce errors: retry.
                self.reset_nonce(sender.address)
                attempt += 1
                if not is_nonce_error(exc):
                    raise self._translate(exc) from exc
                if attempt > NONCE_RETRIES:
                    raise NonceContention(sender.address, attempt, str(exc)) from exc
                time.sleep(random.uniform(0, NONCE_BACKOFF_S * 2**attempt))
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self._receipt_timeout, poll_latency=0.05
            )
        except TimeExhausted as exc:
            # The transaction may sit in the pool behind a nonce gap: let the next send re-read the nonce.
            self.reset_nonce(sender.address)
            raise ChainUnavailable(f"no receipt for {tx_hash.to_0x_hex()} in time") from exc
        if receipt["status"] != 1:
            raise self._explain_failure(tx, receipt)
        return receipt

    def _explain_failure(self, tx: dict[str, Any], receipt: TxReceipt) -> Exception:
        """Why a mined transaction failed: its exact revert output from a node that traces, else a replay.

        The replay runs at the transaction's own block first, so that it sees that block's timestamp (a
        deadline or ``validUntil`` that had just passed when the transaction was mined would not revert
        one block earlier), then at the block before, whose state precedes the transaction.
        """
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        if self.backend != "embedded":
            output = self._traced_output(tx_hash)
            if output:
                decoded = self.abis.decode_error(output, tx_hash)
                if decoded is not None:
                    return decoded
        call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
        block = int(receipt["blockNumber"])
        for at in (block, block - 1):
            try:
                self.w3.eth.call(cast(Any, call), block_identifier=at)
            except Exception as exc:
                translated = self._translate(exc, tx_hash)
                if isinstance(translated, ContractRevert):
                    return translated
        return TransactionFailed(tx_hash)

    def _traced_output(self, tx_hash: str) -> bytes | None:
        """The top call's output of a mined transaction (its revert data), if the node traces."""
        try:
            response = self.w3.provider.make_request(
                cast(Any, "debug_traceTransaction"), [tx_hash, {"tracer": "callTracer"}]
            )
        except Exception:  # tracing is optional: a node without it still gets the replay
            return None
        result = response.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("output"), str):
            return None
        return hex_data(result["output"])

    def call(self, fn: ContractFunction, sender: str | None = None) -> Any:
        """``eth_call`` a view or a would-be transaction; reverts raise :class:`ContractRevert`.

        On a node, a view with one plain return value is read without web3's call machinery
        (:func:`~app.chain.speedups.view_call`); anything it does not answer goes web3's way."""
        try:
            if sender is None and self.backend != "embedded":
                value = speedups.view_call(self.w3.provider, fn)
                if value is not speedups.NOT_DONE:
                    return value
            return fn.call({"from": sender} if sender else {})
        except Exception as exc:
            raise self._translate(exc) from exc

    # ------------------------------------------------------------------ relaying: sign, record, broadcast

    def simulate(self, fn: ContractFunction, sender: LocalAccount | str) -> Any:
        """``eth_call`` ``fn`` as a transaction from ``sender`` would run it; writes nothing.

        A revert raises :class:`ContractRevert`, an unreachable node :class:`ChainUnavailable`.
        """
        return self.call(fn, sender if isinstance(sender, str) else sender.address)

    def estimate(
        self,
        fn: ContractFunction,
        sender: LocalAccount,
        *,
        value: int = 0,
        gas_price: int | Fees | None = None,
    ) -> int:
        """Gas for ``fn`` sent by ``sender``, estimated against the pending block with :meth:`send`'s margin
        (at ``gas_price``, asked of the node when not given: the sender must be able to pay for it).

        A revert raises :class:`ContractRevert`, an unreachable node :class:`ChainUnavailable`.
        """
        try:
            base = self._base_tx(sender) if gas_price is None else self._fixed_price_tx(sender, gas_price)
            tx = {**base, "to": fn.address, "value": value}
            tx["data"] = speedups.calldata(fn)
            return self._estimate(tx)
        except Exception as exc:
            raise self._translate(exc, sender=sender.address) from exc

    def estimate_from(self, fn: ContractFunction, sender: str, *, value: int = 0) -> int:
        """Gas (with :meth:`send`'s margin) for ``fn`` sent by the wallet at ``sender``, whose key we do not
        hold: the check behind a transaction the API hands to a party. A revert raises
        :class:`ContractRevert`, an unreachable node :class:`ChainUnavailable`."""
        try:
            tx = {
                "from": to_checksum_address(sender),
                "to": fn.address,
                "value": value,
                "chainId": self.chain_id,
                "data": speedups.calldata(fn),
            }
            return self._estimate(tx)
        except Exception as exc:
            raise self._translate(exc, sender=sender) from exc

    def prepare(
        self,
        fn: ContractFunction,
        sender: LocalAccount,
        nonce: int,
        gas: int | None = None,
        *,
        value: int = 0,
        gas_price: int | Fees | None = None,
    ) -> PreparedTx:
        """Sign ``fn`` from ``sender`` with ``nonce`` without sending it (estimating gas when not given).

        The caller records the raw bytes before :meth:`broadcast`, so that a crash in between loses nothing.
        With both ``gas`` and ``gas_price`` given it makes no call to the node (safe inside a database
        transaction).
        """
        try:
            base = self._base_tx(sender) if gas_price is None else self._fixed_price_tx(sender, gas_price)
            tx = {**base, "to": fn.address, "value": value}
            tx["data"] = speedups.calldata(fn)
            tx["gas"] = self._estimate(tx) if gas is None else gas
        except Exception as exc:
            raise self._translate(exc) from exc
        tx["nonce"] = nonce
        signed = sender.sign_transaction(tx)
        return PreparedTx(
            raw=bytes(signed.raw_transaction),
            tx_hash="0x" + bytes(signed.hash).hex(),
            sender=sender.address,
            nonce=nonce,
            gas=int(tx["gas"]),
        )

    def replacement(self, raw: bytes, sender: LocalAccount, fees: Fees) -> PreparedTx:
        """The signed transaction ``raw`` signed again by ``sender`` with ``fees`` (same nonce, call and gas
        limit): a replacement for one that is stuck. No call to the node."""
        first = raw[0] if raw else 0
        if first != 2:
            raise ChainError(f"only EIP-1559 transactions are replaced (type {first})")
        tx = dict(TypedTransaction.from_bytes(HexBytes(raw)).as_dict())
        tx.pop("v", None), tx.pop("r", None), tx.pop("s", None), tx.pop("yParity", None)
        tx.update(fees.fields())
        tx["to"] = to_checksum_address(tx["to"])
        signed = sender.sign_transaction(tx)
        return PreparedTx(
            raw=bytes(signed.raw_transaction),
            tx_hash="0x" + bytes(signed.hash).hex(),
            sender=sender.address,
            nonce=int(tx["nonce"]),
            gas=int(tx["gas"]),
        )

    @staticmethod
    def offered_fees(raw: bytes) -> Fees:
        """The fees a signed transaction offers."""
        if raw and raw[0] == 2:
            tx = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
            return Fees(int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"]))
        raise ChainError("only EIP-1559 transactions carry fees that can be bumped")

    def broadcast(self, raw: bytes) -> str:
        """Hand a signed transaction to the node; returns its hash. Safe to repeat with the same bytes.

        "Already known" counts as success; a used nonce raises :class:`~app.errors.NonceTooLow`; an
        unreachable node :class:`ChainUnavailable`; any other refusal a :class:`ChainError`.
        """
        tx_hash = "0x" + keccak(raw).hex()
        try:
            self.w3.eth.send_raw_transaction(raw)
        except Exception as exc:
            if is_already_known(exc):
                return tx_hash
            if is_nonce_too_low(exc):
                raise NonceTooLow(tx_hash, str(exc)) from exc
            translated = self._translate(exc, tx_hash)
            if isinstance(translated, ChainError):
                raise translated from exc
            raise ChainError(f"the node refused {tx_hash}: {exc}") from exc
        return tx_hash

    def receipt(self, tx_hash: str) -> TxReceipt | None:
        """The receipt of a mined transaction; None while it is not mined (or unknown)."""
        try:
            return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None
        except Exception as exc:
            raise self._translate(exc, tx_hash) from exc

    def is_known(self, tx_hash: str) -> bool:
        """Whether the node knows the transaction at all (in its pool or mined)."""
        try:
            self.w3.eth.get_transaction(HexBytes(tx_hash))
        except TransactionNotFound:
            return False
        except Exception as exc:
            raise self._translate(exc, tx_hash) from exc
        return True

    def balance(self, address: str) -> int:
        """The native balance of ``address`` in wei (``eth_getBalance``, latest block)."""
        try:
            return int(self.w3.eth.get_balance(to_checksum_address(address)))
        except Exception as exc:
            raise self._translate(exc) from exc

    def nonce(
        self, address: str, block: Literal["pending", "latest"] = "pending", *, max_age: float = 0.0
    ) -> int:
        """The next nonce of ``address``: counting transactions in the node's pool (pending) or mined only.
        ``max_age``: seconds a pending count already read may be reused (one that old is at most lower
        than the node's: our own later transactions are not in it); :meth:`forget_nonce` drops it."""
        key = to_checksum_address(address)
        if block == "pending" and max_age > 0:
            with self._head_lock:
                seen = self._pending.get(key)
            if seen is not None and time.monotonic() - seen[0] <= max_age:
                return seen[1]
        at = time.monotonic()
        try:
            value = int(self.w3.eth.get_transaction_count(key, block))
        except Exception as exc:
            raise self._translate(exc) from exc
        if block == "pending":
            with self._head_lock:
                self._pending[key] = (at, value)
        return value

    def forget_nonce(self, address: str) -> None:
        """Drop the pending count read for ``address`` (after the node refused a nonce, say)."""
        with self._head_lock:
            self._pending.pop(to_checksum_address(address), None)

    def explain_failure(self, receipt: TxReceipt, tx: dict[str, Any] | None = None) -> Exception:
        """Why a mined transaction has status 0: a :class:`ContractRevert` when the reason decodes, else a
        :class:`TransactionFailed`. ``tx`` (from, to, data, value, gas) is read from the node if not given."""
        if tx is None:
            try:
                mined = self.w3.eth.get_transaction(receipt["transactionHash"])
            except Exception as exc:
                raise self._translate(exc) from exc
            tx = {
                "from": mined["from"],
                "to": mined["to"],
                "data": mined["input"],
                "value": mined["value"],
                "gas": mined["gas"],
            }
        return self._explain_failure(tx, receipt)

    def _translate(
        self, exc: BaseException, tx_hash: str | None = None, sender: str | None = None
    ) -> Exception:
        if isinstance(exc, ContractRevert | ChainUnavailable | GasWalletEmpty):
            return exc
        if is_insufficient_funds(exc):
            return GasWalletEmpty(sender or "of the transaction", str(exc))
        if isinstance(exc, (ContractCustomError, ContractLogicError, *eth_tester_failure())):
            data = revert_data_from_exception(exc)
            if data is not None:
                decoded = self.abis.decode_error(data, tx_hash)
                if decoded is not None:
                    return decoded
            return TransactionFailed(tx_hash or "-", f"reverted: {exc}")
        if isinstance(exc, ConnectionError | OSError | TimeoutError):
            return ChainUnavailable(str(exc))
        data = revert_data_from_exception(exc)
        if data is not None:
            decoded = self.abis.decode_error(data, tx_hash)
            if decoded is not None:
                return decoded
        if isinstance(exc, Exception):
            return exc
        return RuntimeError(str(exc))

    # ------------------------------------------------------------------ events

    def events(self, receipt: TxReceipt) -> list[Event]:
        """Decoded events of a receipt, in log order (unknown logs are left out)."""
        out = []
        for log in receipt["logs"]:
            ev = self.abis.decode_log(log)
            if ev is not None:
                out.append(ev)
        return out

    def get_events(
        self, address: str, from_block: int, to_block: int, *, chunk_size: int = 5_000
    ) -> list[Event]:
        """Decoded events emitted by ``address`` in a block range (both ends included), in chain order.

        The range is queried ``chunk_size`` blocks at a time: public nodes cap the range of ``eth_getLogs``.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        out: list[Event] = []
        start = from_block
        while start <= to_block:
            end = min(to_block, start + chunk_size - 1)
            logs = self.w3.eth.get_logs(
                {"address": to_checksum_address(address), "fromBlock": start, "toBlock": end}
            )
            out.extend(ev for log in logs if (ev := self.abis.decode_log(log)) is not None)
            start = end + 1
        return out

    def find_events(
        self,
        address: str,
        topics: Sequence[bytes | Sequence[bytes] | None],
        from_block: int,
        to_block: int | None = None,
        *,
        chunk_size: int = 50_000,
    ) -> list[Event]:
        """Decoded events of ``address`` whose topics match (the node filters), in chain order.

        ``topics[i]`` is one topic, a list of alternatives, or None for any; ``to_block`` defaults to the
        latest block. Queried ``chunk_size`` blocks at a time; an unreachable node raises
        :class:`ChainUnavailable`.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")

        def hex_topic(t: bytes | Sequence[bytes] | None) -> Any:
            if t is None:
                return None
            if isinstance(t, bytes | bytearray):
                return "0x" + bytes(t).hex()
            return ["0x" + bytes(x).hex() for x in t]

        wanted = [hex_topic(t) for t in topics]
        out: list[Event] = []
        try:
            last = self.block_number() if to_block is None else to_block
            start = from_block
            while start <= last:
                end = min(last, start + chunk_size - 1)
                logs = self.w3.eth.get_logs(
                    cast(
                        Any,
                        {
                            "address": to_checksum_address(address),
                            "fromBlock": start,
                            "toBlock": end,
                            "topics": wanted,
                        },
                    )
                )
                out.extend(ev for log in logs if (ev := self.abis.decode_log(log)) is not None)
                start = end + 1
        except Exception as exc:
            raise self._translate(exc) from exc
        return out

    # ------------------------------------------------------------------ time and snapshots

    def now(self, max_age: float = 0.0) -> int:
        """Timestamp of the latest block; ``max_age``: seconds a reading already made may be reused."""
        try:
            return self._latest(max_age)[0].timestamp
        except ChainError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    def latest(self, max_age: float = 0.0) -> BlockHeader:
        """The latest block's header (``max_age`` as for :meth:`now`)."""
        try:
            return self._latest(max_age)[0]
        except ChainError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    def block_number(self) -> int:
        """Number of the latest block."""
        return int(self.w3.eth.block_number)

    def get_block(self, number: int) -> BlockHeader | None:
        """Hash, parent hash and timestamp of block ``number``; None if the chain has no such block (yet)."""
        found = self._block(number)
        return None if found is None else found[0]

    def _block(self, tag: int | Literal["latest"]) -> tuple[BlockHeader, int | None] | None:
        """The header and base fee of block ``tag``; None if the chain has no such block (yet).

        From a JSON-RPC node the block is read as plain JSON: web3's result formatters convert every field of
        the answer (under load ``Eth.get_block`` was 12 % of a Celery worker's CPU, py-spy: the indexer reads
        one header per block) and five fields are used."""
        if self.backend == "embedded":
            try:
                block = self.w3.eth.get_block(tag)
            except BlockNotFound:
                return None
            base = block.get("baseFeePerGas")
            return _header(block), None if base is None else int(base)
        param = tag if isinstance(tag, str) else hex(tag)
        # through the request manager (its middleware and error handling), past web3's result formatters
        raw = self.w3.manager.request_blocking(cast(Any, "eth_getBlockByNumber"), [param, False])
        if raw is None:
            return None
        header = BlockHeader(
            number=int(raw["number"], 16),
            hash=str(raw["hash"]).lower(),
            parent_hash=str(raw["parentHash"]).lower(),
            timestamp=int(raw["timestamp"], 16),
        )
        base = raw.get("baseFeePerGas")
        return header, None if base is None else int(base, 16)


def _method_missing(exc: Web3RPCError) -> bool:
    """Whether a node's error says it has no such method (JSON-RPC -32601, or words to that effect)."""
    error = (exc.rpc_response or {}).get("error") if isinstance(exc.rpc_response, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    text = str(exc).lower()
    return code == -32601 or "not found" in text or "not supported" in text or "unsupported" in text


def _header(block: Any) -> BlockHeader:
    return BlockHeader(
        number=int(block["number"]),
        hash="0x" + bytes(block["hash"]).hex(),
        parent_hash="0x" + bytes(block["parentHash"]).hex(),
        timestamp=int(block["timestamp"]),
    )


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


#: web3's types under the names the rest of the project uses (only ``app.chain`` imports web3).
ContractCall = ContractFunction
Receipt = TxReceipt

__all__ = [
    "BlockHeader",
    "ChainClient",
    "ContractCall",
    "PreparedTx",
    "Receipt",
    "wait_until",
]
