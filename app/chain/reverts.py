"""Reading node and eth-tester exceptions: revert data, and the refusals that are about nonces.

A revert reaches us in one of two shapes: eth-tester's ``TransactionFailed("execution reverted: b'…'")``
(or with the reason of an ``Error(string)`` it already decoded), and a node's ``ContractCustomError`` /
``ContractLogicError`` with ``.data``. :func:`revert_data_from_exception` gets the raw revert data out of
either, for :class:`~app.chain.abi.AbiRegistry` to decode. A node's refusal of a transaction is told apart
by its wording: a nonce taken or out of order, or the very transaction already in the pool.
:class:`~app.chain.client.ChainClient` maps all of these to the project's typed errors.
"""

from __future__ import annotations

import ast
import re
from typing import cast

from eth_abi import encode as abi_encode

from app.chain.abi import ERROR_SELECTOR

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


def hex_data(text: str) -> bytes | None:
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
        decoded = hex_data(data.strip())
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
        decoded = hex_data(match.group(0))
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
    return ERROR_SELECTOR + abi_encode(["string"], [reason])


def eth_tester_failure() -> tuple[type[BaseException], ...]:
    """eth-tester's ``TransactionFailed`` (to catch with web3's reverts); empty without eth-tester."""
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


def is_nonce_error(exc: BaseException) -> bool:
    """Whether a node refused a transaction because its nonce is taken or out of order."""
    text = str(exc).lower()
    return any(phrase in text for phrase in _NONCE_ERRORS)


def is_already_known(exc: BaseException) -> bool:
    """Whether a node refused a transaction because it already has that very transaction."""
    text = str(exc).lower()
    return any(phrase in text for phrase in _ALREADY_KNOWN)


#: Node answers meaning "this nonce is already used" (geth/anvil, besu, nethermind); eth-tester words it as
#: ``Invalid transaction nonce: Expected 5, but got 3``.
_NONCE_TOO_LOW = ("nonce too low", "nonce is too low", "nonce_too_low", "oldnonce")
_TESTER_NONCE = re.compile(r"invalid transaction nonce: expected (\d+), but got (\d+)")


def is_nonce_too_low(exc: BaseException) -> bool:
    """Whether a node refused a transaction because its nonce is already used (not merely out of order)."""
    text = str(exc).lower()
    if any(phrase in text for phrase in _NONCE_TOO_LOW):
        return True
    found = _TESTER_NONCE.search(text)
    return found is not None and int(found.group(2)) < int(found.group(1))


#: Node answers meaning "the sender cannot pay for the gas" (geth/anvil, besu, nethermind, eth-tester).
_INSUFFICIENT_FUNDS = ("insufficient funds", "cannot afford txn gas", "insufficient balance for transfer")


def is_insufficient_funds(exc: BaseException) -> bool:
    """Whether a node refused a transaction because its sender's balance does not cover gas and value."""
    text = str(exc).lower()
    return any(phrase in text for phrase in _INSUFFICIENT_FUNDS)


__all__ = [
    "eth_tester_failure",
    "hex_data",
    "is_already_known",
    "is_insufficient_funds",
    "is_nonce_error",
    "is_nonce_too_low",
    "revert_data_from_exception",
]
