"""Identifiers and content hashes of SPEC §4."""

from __future__ import annotations

import hashlib

from eth_abi import encode
from eth_utils import keccak, to_canonical_address


def order_id(seller: str, order_ref: str) -> bytes:
    """``keccak256(abi.encode(seller, keccak256(bytes(order_ref))))``."""
    if not order_ref:
        raise ValueError("order_ref must not be empty")
    return keccak(encode(["address", "bytes32"], [to_canonical_address(seller), keccak(order_ref.encode())]))


def tracking_hash(carrier: str, tracking_number: str) -> bytes:
    """``keccak256(bytes(carrier + ":" + tracking_number))``."""
    return keccak(f"{carrier}:{tracking_number}".encode())


def content_hash(data: bytes) -> bytes:
    """SHA-256 of the exact bytes kept off-chain (evidence files, canonical event JSON)."""
    return hashlib.sha256(data).digest()
