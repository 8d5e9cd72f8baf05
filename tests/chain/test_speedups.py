"""The memoised keccak (app/chain/speedups.py) gives the same bytes as eth-hash for every input, remembered or
not, and eth-utils' checksummed addresses and selectors through it are the known ones."""

from __future__ import annotations

import eth_utils.abi
import eth_utils.address
from eth_hash.auto import keccak as keccak_256
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from app.chain import speedups


@given(st.binary(max_size=300))
def test_same_hash_as_eth_hash_for_short_and_long_inputs(data: bytes) -> None:
    assert speedups.keccak(data) == bytes(keccak_256(data))
    assert speedups.keccak(data) == bytes(keccak_256(data))  # the remembered answer is the same
    assert speedups.keccak(text=data.hex()) == bytes(keccak_256(data.hex().encode()))
    assert speedups.keccak(hexstr="0x" + data.hex()) == bytes(keccak_256(data))


def test_installed_and_the_known_answers_hold() -> None:
    speedups.install()
    assert eth_utils.address.keccak is speedups.keccak and eth_utils.abi.keccak is speedups.keccak
    # EIP-55's own examples, and the ERC-20 selectors
    for address in (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    ):
        assert to_checksum_address(address.lower()) == address
    assert function_signature_to_4byte_selector("transfer(address,uint256)").hex() == "a9059cbb"
    assert function_signature_to_4byte_selector("balanceOf(address)").hex() == "70a08231"
