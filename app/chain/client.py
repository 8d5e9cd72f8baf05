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
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    BlockNotFound,
    ContractCustomError,
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
)
from web3.types import TxReceipt

from app.chain import compiler
from app.errors import ChainError, ChainUnavailable, ContractRevert, NonceTooLow, TransactionFailed

PROJECT_ROOT = compiler.PROJECT_ROOT
Backend = Literal["embedded", "rpc", "anvil"]

#: Chain ids of development chains (anvil/hardhat, geth --dev, eth-tester).
DEV_CHAIN_IDS = frozenset({31337, 1337, 131277322940537})
#: Pre-funded dev accounts on the embedded chain and on anvils we start.
EMBEDDED_ACCOUNTS = 20
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"

_ERROR_STRING = bytes.fromhex("08c379a0")
_PANIC = bytes.fromhex("4e487b71")
_BYTES_LITERAL = re.compile(r"(b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\")")
_HEX_DATA = re.compile(r"0x[0-9a-fA-F]{8,}(?![0-9a-zA-Z])")
#: web3's eth-tester provider message: ``execution reverted: <b'raw data' | decoded Error(string) reason>``.
_REVERTED = re.compile(r"execution reverted(?:: (.*))?", re.DOTALL)
#: py-evm's messages for VM errors that are not a REVERT (they reach the same message slot as a reason).
_VM_ERROR = re.compile(
    r"(Out of gas|Invalid opcode|Invalid Jump Destination|Jump resulted in invalid|Insufficient (stack|funds)"
    r"|Wanted \d+ stack item|Stack (depth )?limit|Cannot modify state|Return data length|Contract code"
    r"|Net-metered SSTORE)"
)


@dataclass(frozen=True)
class Event:
    """One decoded log of a contract we know."""

    name: str
    address: str
    args: dict[str, Any]
    tx_hash: str
    block_number: int
    log_index: int
    #: hash of the block the log was read from ("" when the node did not say)
    block_hash: str = ""


@dataclass(frozen=True)
class BlockHeader:
    """What the indexer needs of a block: its number, hash, parent hash and timestamp."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int


def _abi_type(item: dict[str, Any]) -> str:
    typ = str(item["type"])
    if typ.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){typ[5:]}"
    return typ


def _signature(item: dict[str, Any]) -> str:
    return f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"


def _named_value(item: dict[str, Any], value: Any) -> Any:
    """A decoded value made readable: tuples as dicts by component name, addresses checksummed."""
    typ = str(item["type"])
    if typ.endswith("]") and isinstance(value, list | tuple):
        inner = {**item, "type": typ[: typ.rindex("[")]}
        return [_named_value(inner, v) for v in value]
    if typ == "tuple":
        return _named(item["components"], value)
    if typ == "address" and isinstance(value, str):
        return to_checksum_address(value)
    return value


def _named(items: Sequence[dict[str, Any]], values: Sequence[Any]) -> dict[str, Any]:
    return {
        item.get("name") or f"arg{i}": _named_value(item, value)
        for i, (item, value) in enumerate(zip(items, values, strict=True))
    }


class AbiRegistry:
    """Custom errors by selector and events by topic, gathered from every artifact we build."""

    def __init__(self, abis: Sequence[Sequence[dict[str, Any]]]) -> None:
        self.errors: dict[bytes, dict[str, Any]] = {}
        self.events: dict[bytes, dict[str, Any]] = {}
        for abi in abis:
            for item in abi:
                if item["type"] == "error":
                    self.errors[keccak(text=_signature(item))[:4]] = item
                elif item["type"] == "event" and not item.get("anonymous"):
                    self.events[keccak(text=_signature(item))] = item

    def decode_error(self, data: bytes, tx_hash: str | None = None) -> ContractRevert | None:
        """Decode revert data into a :class:`ContractRevert`; None if the selector is unknown."""
        if len(data) < 4:
            return None
        selector, body = data[:4], data[4:]
        # A body that does not decode (truncated data, or a foreign error sharing a selector) is not ours.
        try:
            if selector == _ERROR_STRING:
                (reason,) = abi_decode(["string"], body)
                return ContractRevert("Error", {"reason": reason}, data, tx_hash)
            if selector == _PANIC:
                (code,) = abi_decode(["uint256"], body)
                return ContractRevert("Panic", {"code": code}, data, tx_hash)
            item = self.errors.get(selector)
            if item is None:
                return None
            values = abi_decode([_abi_type(i) for i in item["inputs"]], body)
        except (DecodingError, ValueError, TypeError):
            return None
        return ContractRevert(item["name"], _named(item["inputs"], values), data, tx_hash)

    def decode_log(self, log: Any) -> Event | None:
        """Decode one raw log; None if its event is not one of ours.

        A log whose topic count does not match our declaration of its event (another contract's event with
        the same signature but other ``indexed`` flags, like ERC-721's ``Transfer``) is not ours either.
        Indexed arguments of dynamic types are only stored as their keccak hash: they come back as that hash.
        """
        topics = [bytes(t) for t in log["topics"]]
        if not topics:
            return None
        item = self.events.get(topics[0])
        if item is None:
            return None
        inputs: list[dict[str, Any]] = item["inputs"]
        indexed = [n for n, i in enumerate(inputs) if i["indexed"]]
        plain = [n for n, i in enumerate(inputs) if not i["indexed"]]
        if len(indexed) != len(topics) - 1:
            return None
        raw: dict[int, Any] = {}
        try:
            for n, topic in zip(indexed, topics[1:], strict=True):
                raw[n] = topic if _is_dynamic(inputs[n]) else abi_decode([_abi_type(inputs[n])], topic)[0]
            raw.update(
                zip(plain, abi_decode([_abi_type(inputs[n]) for n in plain], bytes(log["data"])), strict=True)
            )
        except (DecodingError, ValueError, TypeError):
            return None
        # keep the ABI's argument order
        args = {inp.get("name") or f"arg{n}": _named_value(inp, raw[n]) for n, inp in enumerate(inputs)}
        block_hash = log.get("blockHash")
        return Event(
            name=item["name"],
            address=to_checksum_address(log["address"]),
            args=args,
            tx_hash="0x" + bytes(log["transactionHash"]).hex(),
            block_number=int(log["blockNumber"]),
            log_index=int(log["logIndex"]),
            block_hash="0x" + bytes(block_hash).hex() if block_hash else "",
        )


def _is_dynamic(item: dict[str, Any]) -> bool:
    """Whether an ABI type is stored hashed when indexed (strings, bytes, arrays, tuples)."""
    typ = str(item["type"])
    return typ in ("string", "bytes") or typ.endswith("]") or typ.startswith("tuple")


def _hex_bytes(text: str) -> bytes | None:
    """``0x``-prefixed hex to bytes; None if it is not well-formed hex of whole bytes."""
    if not text.startswith(("0x", "0X")) or len(text) % 2:
        return None
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        return None


def revert_data_from_exception(exc: BaseException) -> bytes | None:
    """Pull raw revert data out of whatever exception web3 or eth-tester raised.

    Looks, in order, at ``exc.data`` (bytes, a ``0x`` hex string, or a JSON-RPC error object with a
    ``data`` member), then at an ``execution reverted: …`` message as web3's eth-tester provider words it
    (a ``b'…'`` bytes literal, or the reason of an ``Error(string)`` it already decoded: re-encoded here),
    then at any ``b'…'`` literal or ``0x`` hex run of at least four bytes in the message. Returns None when
    there is no revert data (``0x``, ``b''``, a bare ``execution reverted``, a VM error such as out of gas).
    """
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, bytes | bytearray) and data:
        return bytes(data)
    if isinstance(data, str):
        decoded = _hex_bytes(data.strip())
        if decoded:
            return decoded
    args = getattr(exc, "args", ())
    first = args[0] if args and isinstance(args[0], str) else str(exc)
    reverted = _REVERTED.fullmatch(first)
    if reverted is not None:
        return _tester_reason_data(reverted.group(1) or "")
    text = " ".join(str(a) for a in args) or str(exc)
    for match in _BYTES_LITERAL.finditer(text):
        try:
            value = ast.literal_eval(match.group(1))
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, bytes) and value:
            return value
    for match in _HEX_DATA.finditer(text):
        decoded = _hex_bytes(match.group(0))
        if decoded:
            return decoded
    return None


def _tester_reason_data(reason: str) -> bytes | None:
    """Revert data behind the reason of an ``execution reverted: <reason>`` message."""
    if not reason or _VM_ERROR.match(reason):
        return None
    if _BYTES_LITERAL.fullmatch(reason):
        try:
            value = ast.literal_eval(reason)
        except (ValueError, SyntaxError):
            value = None
        return value if isinstance(value, bytes) and value else None
    # eth-tester decodes Error(string) itself and hands over only the text: encode it back
    return _ERROR_STRING + abi_encode(["string"], [reason])


def _eth_tester_failure() -> tuple[type[BaseException], ...]:
    try:
        from eth_tester.exceptions import TransactionFailed as TesterTransactionFailed
    except ImportError:  # a production install without eth-tester never sees its exceptions
        return ()
    return (cast(type[BaseException], TesterTransactionFailed),)


#: Phrases of node errors that mean "this nonce is taken or out of order" (anvil, geth, besu, eth-tester).
_NONCE_ERRORS = (
    "nonce too low",
    "nonce too high",
    "invalid transaction nonce",
    "replacement transaction underpriced",
    "nonce is too low",
    "invalid nonce",
)
#: Node answers meaning "this very transaction is already in the pool": it was sent, wait for it.
_ALREADY_KNOWN = ("already known", "known transaction", "already imported")
#: How often a send is retried with a nonce re-read from the chain after a nonce error.
NONCE_RETRIES = 3


def _is_nonce_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(phrase in text for phrase in _NONCE_ERRORS)


def _is_already_known(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(phrase in text for phrase in _ALREADY_KNOWN)


#: Node answers meaning "this nonce is already used" (geth/anvil, besu, nethermind); eth-tester words it as
#: ``Invalid transaction nonce: Expected 5, but got 3``.
_NONCE_TOO_LOW = ("nonce too low", "nonce is too low", "nonce_too_low", "oldnonce")
_TESTER_NONCE = re.compile(r"invalid transaction nonce: expected (\d+), but got (\d+)")


def _is_nonce_too_low(exc: BaseException) -> bool:
    text = str(exc).lower()
    if any(phrase in text for phrase in _NONCE_TOO_LOW):
        return True
    found = _TESTER_NONCE.search(text)
    return found is not None and int(found.group(2)) < int(found.group(1))


@dataclass(frozen=True)
class PreparedTx:
    """A signed transaction not yet broadcast: what a relayer records before it lets go of it."""

    raw: bytes
    tx_hash: str
    sender: str
    nonce: int
    gas: int


class AnvilProcess:
    """An anvil node owned by this process: started on a free port, stopped on :meth:`stop`."""

    def __init__(
        self,
        *,
        port: int | None = None,
        state_file: Path | None = None,
        chain_id: int = 31337,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.extra_args = list(extra_args)
        self.port = port or _free_port()
        self.state_file = state_file
        self.chain_id = chain_id
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """JSON-RPC URL of the node."""
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        """Path of the anvil binary (npm package first, then PATH)."""
        local = PROJECT_ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
        if local.exists():
            return str(local)
        found = shutil.which("anvil")
        if not found:
            raise ChainUnavailable("anvil not found: run `make setup` (npm package @foundry-rs/anvil)")
        return found

    def start(self, timeout: float = 30.0) -> None:
        """Start anvil and wait until it answers JSON-RPC."""
        cmd = [
            self.binary(),
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--silent",
            "--accounts",
            str(EMBEDDED_ACCOUNTS),
            "--gas-limit",
            "60000000",
        ]
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            cmd += ["--state", str(self.state_file)]
        cmd += self.extra_args
        # stderr goes to a file, not a pipe nobody drains (a full pipe would block the node)
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._stderr)
        w3 = Web3(HTTPProvider(self.url, request_kwargs={"timeout": 2}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace")
                self.stop()
                raise ChainUnavailable(f"anvil exited with {code}: {err.strip()}")
            with suppress(Exception):
                if w3.eth.chain_id == self.chain_id:
                    return
            time.sleep(0.05)
        self.stop()
        raise ChainUnavailable(f"anvil did not answer on {self.url} within {timeout}s")

    def stop(self) -> None:
        """Stop anvil (it writes its state file on a clean exit)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChainClient:
    """Provider, deployments, sending, receipts, events and typed reverts for one chain."""

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
        self._artifacts: dict[str, dict[str, Any]] = {}
        self.abis = AbiRegistry(self._all_abis())
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
        return cls(Web3(HTTPProvider(url, request_kwargs={"timeout": timeout})), "rpc")

    @classmethod
    def start_anvil(
        cls, state_file: Path | None = None, port: int | None = None, extra_args: Sequence[str] = ()
    ) -> ChainClient:
        """Start an anvil node owned by the returned client (stopped by :meth:`close`)."""
        node = AnvilProcess(port=port, state_file=state_file, extra_args=extra_args)
        node.start()
        try:
            return cls(Web3(HTTPProvider(node.url, request_kwargs={"timeout": 60})), "anvil", anvil=node)
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
        """A contract object for a deployed instance."""
        return self.w3.eth.contract(address=to_checksum_address(address), abi=self.artifact(name)["abi"])

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
        return {"from": sender.address, "chainId": self.chain_id, "gasPrice": self._gas_price()}

    def _gas_price(self) -> int:
        return int(self.w3.eth.gas_price)

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
        tx["data"] = fn._encode_transaction_data()
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
                if _is_already_known(exc):
                    tx_hash = HexBytes(signed.hash)
                    break
                # Whatever went wrong, the local nonce may now be wrong: re-read it on the next send. Another
                # sender of this account (a second process, a reverted snapshot) makes nonce errors: retry.
                self.reset_nonce(sender.address)
                attempt += 1
                if attempt > NONCE_RETRIES or not _is_nonce_error(exc):
                    raise self._translate(exc) from exc
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
        return _hex_bytes(result["output"])

    def call(self, fn: ContractFunction, sender: str | None = None) -> Any:
        """``eth_call`` a view or a would-be transaction; reverts raise :class:`ContractRevert`."""
        try:
            return fn.call({"from": sender} if sender else {})
        except Exception as exc:
            raise self._translate(exc) from exc

    # ------------------------------------------------------------------ relaying: sign, record, broadcast

    def simulate(self, fn: ContractFunction, sender: LocalAccount | str) -> Any:
        """``eth_call`` ``fn`` as a transaction from ``sender`` would run it; writes nothing.

        A revert raises :class:`ContractRevert`, an unreachable node :class:`ChainUnavailable`.
        """
        return self.call(fn, sender if isinstance(sender, str) else sender.address)

    def estimate(self, fn: ContractFunction, sender: LocalAccount, *, value: int = 0) -> int:
        """Gas for ``fn`` sent by ``sender``, estimated against the pending block with :meth:`send`'s margin.

        A revert raises :class:`ContractRevert`, an unreachable node :class:`ChainUnavailable`.
        """
        try:
            tx = {**self._base_tx(sender), "to": fn.address, "value": value}
            tx["data"] = fn._encode_transaction_data()
            return self._estimate(tx)
        except Exception as exc:
            raise self._translate(exc) from exc

    def prepare(
        self,
        fn: ContractFunction,
        sender: LocalAccount,
        nonce: int,
        gas: int | None = None,
        *,
        value: int = 0,
    ) -> PreparedTx:
        """Sign ``fn`` from ``sender`` with ``nonce`` without sending it (estimating gas when not given).

        The caller records the raw bytes before :meth:`broadcast`, so that a crash in between loses nothing.
        """
        try:
            tx = {**self._base_tx(sender), "to": fn.address, "value": value}
            tx["data"] = fn._encode_transaction_data()
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

    def broadcast(self, raw: bytes) -> str:
        """Hand a signed transaction to the node; returns its hash. Safe to repeat with the same bytes.

        "Already known" counts as success; a used nonce raises :class:`~app.errors.NonceTooLow`; an
        unreachable node :class:`ChainUnavailable`; any other refusal a :class:`ChainError`.
        """
        tx_hash = "0x" + keccak(raw).hex()
        try:
            self.w3.eth.send_raw_transaction(raw)
        except Exception as exc:
            if _is_already_known(exc):
                return tx_hash
            if _is_nonce_too_low(exc):
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

    def nonce(self, address: str, block: Literal["pending", "latest"] = "pending") -> int:
        """The next nonce of ``address``: counting transactions in the node's pool (pending) or mined only."""
        try:
            return int(self.w3.eth.get_transaction_count(to_checksum_address(address), block))
        except Exception as exc:
            raise self._translate(exc) from exc

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

    def _translate(self, exc: BaseException, tx_hash: str | None = None) -> Exception:
        if isinstance(exc, ContractRevert | ChainUnavailable):
            return exc
        if isinstance(exc, (ContractCustomError, ContractLogicError, *_eth_tester_failure())):
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

    def now(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def block_number(self) -> int:
        """Number of the latest block."""
        return int(self.w3.eth.block_number)

    def get_block(self, number: int) -> BlockHeader | None:
        """Hash, parent hash and timestamp of block ``number``; None if the chain has no such block (yet)."""
        try:
            block = self.w3.eth.get_block(number)
        except BlockNotFound:
            return None
        return BlockHeader(
            number=int(block["number"]),
            hash="0x" + bytes(block["hash"]).hex(),
            parent_hash="0x" + bytes(block["parentHash"]).hex(),
            timestamp=int(block["timestamp"]),
        )

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


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


__all__ = [
    "AbiRegistry",
    "AnvilProcess",
    "BlockHeader",
    "ChainClient",
    "Event",
    "PreparedTx",
    "revert_data_from_exception",
    "wait_until",
]
