"""Memoised Keccak-256 for the short inputs eth-utils hashes over and over.

Under load, a third of the API's CPU went to Keccak-256 (py-spy, issue 8): ``to_checksum_address`` hashes the
address on every call, and web3 re-derives every function selector of the escrow's ABI (``validate_abi``)
each time a contract call is built. Both hash the same few hundred short strings again and again. Keccak is a
pure function, so :func:`install` points those two eth-utils modules at a copy that remembers the hashes of
inputs up to :data:`SHORT` bytes (an LRU of :data:`ENTRIES`); longer inputs (EIP-712 structs, transactions)
are hashed as before. Nothing else changes: same bytes in, same hash out (tests/chain/test_speedups.py).
"""

from __future__ import annotations

from functools import lru_cache

import eth_utils.abi
import eth_utils.address
from eth_hash.auto import keccak as keccak_256
from eth_utils.conversions import to_bytes

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


def install() -> None:
    """Use :func:`keccak` where eth-utils derives checksummed addresses and ABI selectors (idempotent)."""
    eth_utils.address.keccak = keccak
    eth_utils.abi.keccak = keccak


__all__ = ["install", "keccak"]
