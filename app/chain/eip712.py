"""EIP-712 typed data of SPEC §4, built exactly as the escrow checks it, for every signing client.

Buyers, oracles and arbitrators sign with :func:`sign_typed_data`; anyone can rebuild a message from
:data:`TYPES` and the domain (``GET /v1/chain`` publishes both). Signatures are 65 bytes ``r || s || v``
with a low ``s`` (eth-account never produces a high one; the contract refuses them).
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_utils import to_checksum_address

DOMAIN_NAME = "TradeGuard"
DOMAIN_VERSION = "2"

EIP712_DOMAIN = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def _fields(spec: str) -> list[dict[str, str]]:
    out = []
    for part in spec.split(","):
        typ, name = part.split(" ")
        out.append({"name": name, "type": typ})
    return out


#: The five message types, field by field, exactly as in SPEC §4 with the version 2 OrderAuthorization (§4.1).
TYPES: dict[str, list[dict[str, str]]] = {
    "OrderAuthorization": _fields(
        "bytes32 orderId,address buyer,address seller,address token,uint256 amount,"
        "uint16 commissionBps,uint16 taxBps,address taxRecipient,uint64 shipBy,uint64 deliverBy,"
        "uint32 holdSeconds,uint64 validUntil,address arbitrator,bytes32 arbitratorExtraDataHash"
    ),
    "DeliveryAttestation": _fields(
        "bytes32 orderId,uint8 milestone,uint64 eventTime,bytes32 trackingHash,bytes32 evidenceHash"
    ),
    "BuyerDecision": _fields("bytes32 orderId,uint8 decision,bytes32 evidenceHash,uint64 validUntil"),
    "EvidenceSubmission": _fields("bytes32 orderId,address party,bytes32 evidenceHash,uint64 validUntil"),
    "Ruling": _fields("bytes32 orderId,uint16 buyerShareBps,bytes32 rationaleHash,uint64 validUntil"),
}

PERMIT_TYPES = {
    "Permit": _fields("address owner,address spender,uint256 value,uint256 nonce,uint256 deadline")
}


def domain(chain_id: int, escrow: str) -> dict[str, Any]:
    """The escrow's EIP-712 domain."""
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(escrow),
    }


def typed_data(primary_type: str, message: dict[str, Any], chain_id: int, escrow: str) -> dict[str, Any]:
    """A complete EIP-712 document (as ``eth_signTypedData_v4`` takes it) for one of :data:`TYPES`.

    Refuses an unknown type, a message with missing or unknown fields, and ``bytesN`` values of another
    length (``ValueError``); eth-account checks the ranges of integers and addresses when signing.
    """
    if primary_type not in TYPES:
        raise ValueError(f"unknown message type {primary_type!r}")
    expected = {f["name"] for f in TYPES[primary_type]}
    if set(message) != expected:
        raise ValueError(f"{primary_type} needs exactly the fields {sorted(expected)}")
    for f in TYPES[primary_type]:
        _check_fixed_bytes(primary_type, f, message[f["name"]])
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN, primary_type: TYPES[primary_type]},
        "primaryType": primary_type,
        "domain": domain(chain_id, escrow),
        "message": message,
    }


def _check_fixed_bytes(primary_type: str, field: dict[str, str], value: Any) -> None:
    """A ``bytesN`` value must be exactly N bytes: eth-account would silently pad a short one."""
    typ = field["type"]
    if not (typ.startswith("bytes") and typ[5:].isdigit()):
        return
    size = int(typ[5:])
    if isinstance(value, str):
        if not value.startswith("0x"):
            raise ValueError(f"{primary_type}.{field['name']} must be {typ} as bytes or 0x-hex")
        length = (len(value) - 2) / 2
    elif isinstance(value, bytes | bytearray):
        length = len(value)
    else:
        raise ValueError(f"{primary_type}.{field['name']} must be {typ} as bytes or 0x-hex")
    if length != size:
        raise ValueError(f"{primary_type}.{field['name']} must be exactly {size} bytes, got {length:g}")


def permit_typed_data(
    *,
    token_name: str,
    chain_id: int,
    token: str,
    owner: str,
    spender: str,
    value: int,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    """EIP-2612 permit typed data for an OpenZeppelin ERC20Permit token (domain version "1")."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN, **PERMIT_TYPES},
        "primaryType": "Permit",
        "domain": {
            "name": token_name,
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(token),
        },
        "message": {
            "owner": to_checksum_address(owner),
            "spender": to_checksum_address(spender),
            "value": value,
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def digest(document: dict[str, Any]) -> bytes:
    """The 32-byte EIP-712 digest a signer signs."""
    return bytes(_hash_eip191_message(encode_typed_data(full_message=document)))


def sign_typed_data(private_key: bytes | str, document: dict[str, Any]) -> bytes:
    """Sign a typed-data document; returns the 65-byte signature ``r || s || v``."""
    signed = Account.sign_message(encode_typed_data(full_message=document), private_key)
    return bytes(signed.signature)


def recover_signer(document: dict[str, Any], signature: bytes) -> str:
    """The address that signed ``document`` (checksummed)."""
    return str(Account.recover_message(encode_typed_data(full_message=document), signature=signature))


def jsonable(document: dict[str, Any]) -> dict[str, Any]:
    """A typed-data document as JSON for wallets: bytes as 0x-hex, integers ≥ 2**53 as decimal strings."""

    def conv(value: Any) -> Any:
        if isinstance(value, bytes):
            return "0x" + value.hex()
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and abs(value) >= 2**53:
            return str(value)
        if isinstance(value, dict):
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, list):
            return [conv(v) for v in value]
        return value

    result: dict[str, Any] = conv(document)
    return result
