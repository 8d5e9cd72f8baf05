"""Memoised Keccak-256 for the short inputs eth-utils hashes over and over.

Under load, a third of the API's CPU went to Keccak-256 (py-spy, issue 8): ``to_checksum_address`` hashes the
address on every call, and web3 re-derives every function selector of the escrow's ABI (``validate_abi``)
each time a contract call is built. Both hash the same few hundred short strings again and again. Keccak is a
pure function, so :func:`install` points those two eth-utils modules at a copy that remembers the hashes of
inputs up to :data:`SHORT` bytes (an LRU of :data:`ENTRIES`); longer inputs (EIP-712 structs, transactions)
are hashed as before. Nothing else changes: same bytes in, same hash out (tests/chain/test_speedups.py).

:func:`calldata` encodes a contract call without web3's per-call machinery. web3 maps every argument through
its normalisers (ENS names, checksums, hex strings to bytes) and looks the function's ABI up again before it
hands the values to eth-abi: 2.1 ms for a one-order ``fund``, against 0.16 ms for eth-abi on the same
tuples; the relayer and the funding preflight encode each call at least once. Arguments eth-abi takes as
they are (our bindings pass tuples, bytes, numbers and checksummed addresses) are encoded by it directly
under the selector and input types remembered per ABI entry; anything else (a hex string for ``bytes``, a
dict for a struct, an address web3 would refuse) goes the web3 way, so the bytes and the refusals are
always web3's (tests/chain/test_speedups.py).

:func:`view_call` reads a view with one plain return value (a number, a flag, a string) straight
from the JSON-RPC provider: web3's ``ContractFunction.call`` maps the arguments, the request and the answer
through its normalisers and formatters, and was half the CPU of an order's creation (py-spy, issue 8), for
the buyer's permit nonce. A call that does not answer a plain result (an error, a revert, another output
type) is not decoded here: the caller goes web3's way, so errors and their translation are web3's.
:func:`estimate_gas` does the same for ``eth_estimateGas`` (web3's request and result formatters were a
third of a funding request's CPU).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import eth_utils.abi
import eth_utils.address
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import EncodingError
from eth_hash.auto import keccak as keccak_256
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types, get_abi_output_types
from eth_utils.conversions import to_bytes
from web3.contract.contract import ContractFunction

#: Longest input remembered (a checksummed address is 40 bytes of text, an ABI signature rarely 128).
SHORT = 128
ENTRIES = 16_384


@lru_cache(maxsize=ENTRIES)
def _short(data: bytes) -> bytes:
    return bytes(keccak_256(data))


def keccak(
    primitive: bytes | int | bool | None = None, hexstr: str | None = None, text: str | None = None
) -> bytes:
    """``eth_utils.keccak``, remembering the hashes of short inputs."""
    data = bytes(to_bytes(primitive, hexstr, text))
    if len(data) <= SHORT:
        return _short(data)
    return bytes(keccak_256(data))


@lru_cache(maxsize=1024)
def _signature(abi_json: str) -> tuple[bytes, tuple[str, ...]]:
    abi = json.loads(abi_json)
    return function_abi_to_4byte_selector(abi), tuple(get_abi_input_types(abi))


@lru_cache(maxsize=ENTRIES)
def _checksummed(value: str) -> bool:
    try:
        return len(value) == 42 and eth_utils.address.to_checksum_address(value) == value
    except ValueError:  # not hex at all: web3 names it
        return False


def _plain(value: Any) -> bool:
    """Whether eth-abi takes ``value`` exactly as web3 would after its normalisers: numbers, booleans, bytes,
    checksummed addresses, and tuples and lists of them. Any other string (a lower-case or mis-checksummed
    address, which web3 refuses; hex for bytes) goes web3's way."""
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    if isinstance(value, str):
        return _checksummed(value)
    return isinstance(value, (int, bytes))


def calldata(fn: ContractFunction) -> str:
    """The call data of ``fn`` as ``0x``-hex: what ``fn._encode_transaction_data()`` returns, faster."""
    args: Any = fn.args or ()
    if fn.kwargs or not _plain(args):
        return str(fn._encode_transaction_data())
    selector, types = _signature(json.dumps(fn.abi, sort_keys=True))
    try:
        return "0x" + (selector + abi_encode(types, args)).hex()
    except (EncodingError, TypeError, ValueError):  # values only web3's normalisers turn into ABI values
        return str(fn._encode_transaction_data())


#: Return types :func:`view_call` decodes: eth-abi gives for them what web3 gives (no normaliser applies).
_PLAIN_OUTPUT = re.compile(r"(u?int\d*|bool|string)")


@lru_cache(maxsize=1024)
def _plain_output(abi_json: str) -> str | None:
    types = get_abi_output_types(json.loads(abi_json))
    return types[0] if len(types) == 1 and _PLAIN_OUTPUT.fullmatch(types[0]) else None


#: ``view_call``'s answer when it did not decode one (the caller asks web3).
NOT_DONE: Any = object()


def view_call(provider: Any, fn: ContractFunction) -> Any:
    """``fn.call()`` at the latest block for a view of one plain return value, through ``provider`` alone;
    :data:`NOT_DONE` for anything else (the caller then asks web3, which gives the errors)."""
    output = _plain_output(json.dumps(fn.abi, sort_keys=True))
    if output is None or fn.kwargs or not _plain(fn.args or ()):
        return NOT_DONE
    try:
        data = calldata(fn)
    except Exception:  # web3's own refusal: web3's way gives it
        return NOT_DONE
    answer = provider.make_request("eth_call", [{"to": fn.address, "data": data}, "latest"])
    result = answer.get("result") if isinstance(answer, dict) and "error" not in answer else None
    if not isinstance(result, str) or not result.startswith("0x"):
        return NOT_DONE
    try:
        return abi_decode([output], bytes.fromhex(result[2:]))[0]
    except Exception:  # an answer that is not the declared type (no contract there, a proxy): web3's way
        return NOT_DONE


#: Transaction fields :func:`estimate_gas` sends as they are named (JSON-RPC's names are web3's).
_TX_FIELDS = frozenset(
    {
        "from",
        "to",
        "value",
        "data",
        "gas",
        "gasPrice",
        "maxFeePerGas",
        "maxPriorityFeePerGas",
        "nonce",
        "chainId",
        "type",
    }
)


def estimate_gas(provider: Any, tx: dict[str, Any], block: str) -> Any:
    """``eth_estimateGas`` of ``tx`` at ``block`` through ``provider`` alone, as an int; :data:`NOT_DONE`
    for a field it does not know or any answer but a quantity (an error: the caller asks web3, which raises
    it)."""
    if not tx.keys() <= _TX_FIELDS:
        return NOT_DONE
    params: dict[str, Any] = {}
    for name, value in tx.items():
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return NOT_DONE
        params[name] = hex(value) if isinstance(value, int) else value
    answer = provider.make_request("eth_estimateGas", [params, block])
    result = answer.get("result") if isinstance(answer, dict) and "error" not in answer else None
    if not isinstance(result, str) or not result.startswith("0x"):
        return NOT_DONE
    try:
        return int(result, 16)
    except ValueError:
        return NOT_DONE


def install() -> None:
    """Use :func:`keccak` where eth-utils derives checksummed addresses and ABI selectors (idempotent)."""
    eth_utils.address.keccak = keccak
    eth_utils.abi.keccak = keccak


__all__ = ["NOT_DONE", "calldata", "estimate_gas", "install", "keccak", "view_call"]
