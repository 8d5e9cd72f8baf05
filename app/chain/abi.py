"""Our contracts' ABIs, gathered from every build artifact: custom errors by selector, events by topic.

:class:`AbiRegistry` decodes revert data into a :class:`~app.errors.ContractRevert` carrying the error's name
and arguments (Solidity's built-in ``Error(string)`` and ``Panic(uint256)`` included) and raw logs into
:class:`Event` values. Tuples come back as dicts by component name, addresses checksummed. Getting the revert
data out of an exception is :mod:`app.chain.reverts`' part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak, to_checksum_address

from app.errors import ContractRevert

#: Selector of Solidity's built-in ``Error(string)``.
ERROR_SELECTOR = bytes.fromhex("08c379a0")
#: Selector of Solidity's built-in ``Panic(uint256)``.
PANIC_SELECTOR = bytes.fromhex("4e487b71")


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
            if selector == ERROR_SELECTOR:
                (reason,) = abi_decode(["string"], body)
                return ContractRevert("Error", {"reason": reason}, data, tx_hash)
            if selector == PANIC_SELECTOR:
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


__all__ = ["ERROR_SELECTOR", "PANIC_SELECTOR", "AbiRegistry", "Event"]
