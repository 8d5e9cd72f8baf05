"""The memoised keccak (app/chain/speedups.py) gives the same bytes as eth-hash for every input, remembered or
not, and eth-utils' checksummed addresses and selectors through it are the known ones; the fast call data
is web3's, byte for byte, and what web3 refuses it refuses."""

from __future__ import annotations

import eth_utils.abi
import eth_utils.address
import pytest
from eth_hash.auto import keccak as keccak_256
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from hypothesis import given
from hypothesis import strategies as st
from web3 import Web3

from app.chain import compiler, speedups
from app.errors import ContractRevert
from tests.chain.conftest import Stack


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


# ------------------------------------------------------------------------------------------ call data

_ESCROW = Web3().eth.contract(address="0x" + "11" * 20, abi=compiler.load_artifact("TradeGuardEscrow")["abi"])
_addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
_words = st.binary(min_size=32, max_size=32)
_auths = st.tuples(
    _words, _addresses, _addresses, _addresses, st.integers(0, 2**128), st.integers(0, 10_000),
    st.integers(0, 10_000), _addresses, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), _addresses, _words,
)  # fmt: skip
_uint256 = st.integers(0, 2**256 - 1)
_permits = st.tuples(_uint256, _uint256, st.integers(0, 255), _words, _words)
_signatures = st.lists(st.binary(max_size=70), min_size=1, max_size=4)


@given(st.lists(_auths, min_size=1, max_size=4), _signatures, _permits)
def test_fund_call_data_is_web3s(
    auths: list[tuple[object, ...]], sigs: list[bytes], permit: tuple[object, ...]
) -> None:
    fn = _ESCROW.functions.fund(auths, sigs, permit)
    assert speedups.calldata(fn) == fn._encode_transaction_data()


def test_every_escrow_call_the_relayer_sends_encodes_as_web3_does() -> None:
    from app.chain.escrow import Escrow, Order, Terms
    from app.chain.messages import Attestation, OrderAuthorization

    escrow = Escrow(None, _ESCROW)  # type: ignore[arg-type]  # builds calls only: no chain
    a, b, z = "0x" + "ab" * 20, "0x" + "cd" * 20, "0x" + "00" * 20
    auth = OrderAuthorization(b"\x01" * 32, a, b, a, 5, 300, 0, z, 10, 20, 3600, 30)
    terms = Terms(
        buyer=a, seller=b, token=a, amount=5, commission_bps=300, tax_bps=0, tax_recipient=z, ship_by=10,
        deliver_by=20, hold_seconds=3600, threshold=1, response_seconds=60, arbitration_seconds=120,
        funded_at=7,
    )  # fmt: skip
    order = Order(b"\x01" * 32, terms, 2**200 + 1)
    signed = Attestation(2, 9, b"\x03" * 32, b"\x04" * 32, b"\x05" * 65)
    calls = [
        escrow.fund_call([auth, auth], [b"\x02" * 65, b""]),
        escrow.attest_call([(order, [signed, Attestation(2, 9, b"\x03" * 32, b"\x04" * 32)])], strict=False),
        escrow.release_call([order, order]),
    ]
    for fn in calls:
        assert speedups.calldata(fn) == fn._encode_transaction_data()


def test_values_only_web3_normalises_take_web3s_way() -> None:
    # a hex string for `bytes32` is web3's to turn into an ABI value
    fn = _ESCROW.functions.orderKey("0x" + "aa" * 32, to_checksum_address("0x" + "ab" * 20))
    assert speedups.calldata(fn) == fn._encode_transaction_data()


@pytest.mark.parametrize(
    "address",
    [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    ],
    ids=["bad-checksum", "lower-case"],
)
def test_an_address_web3_refuses_is_refused_the_same_way(address: str) -> None:
    fn = _ESCROW.functions.withdraw(address, address, 1)
    with pytest.raises(Exception) as ours:
        speedups.calldata(fn)
    with pytest.raises(Exception) as theirs:
        fn._encode_transaction_data()
    assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)


@pytest.mark.anvil
def test_a_plain_view_read_from_the_provider_is_what_web3_reads(anvil_stack: Stack) -> None:
    chain, token = anvil_stack.chain, anvil_stack.deployment.token
    escrow = anvil_stack.deployment.escrow.contract
    buyer = anvil_stack.actors.buyer.address
    for fn in (
        token.functions.nonces(buyer),
        token.functions.balanceOf(buyer),
        token.functions.name(),
        token.functions.decimals(),
        escrow.functions.paused(),
        escrow.functions.isTokenAllowed(token.address),
    ):
        value = speedups.view_call(chain.w3.provider, fn)
        assert value is not speedups.NOT_DONE, fn.fn_name
        assert value == fn.call() and type(value) is type(fn.call()), fn.fn_name
        assert chain.call(fn) == value


@pytest.mark.anvil
def test_anything_else_goes_web3s_way(anvil_stack: Stack) -> None:
    """An address or a struct returned (web3 normalises them), an argument web3 would refuse: not decoded
    here, and :meth:`ChainClient.call` gives web3's answer."""
    chain, escrow = anvil_stack.chain, anvil_stack.deployment.escrow.contract
    provider = chain.w3.provider
    assert speedups.view_call(provider, escrow.functions.treasury()) is speedups.NOT_DONE
    assert chain.call(escrow.functions.treasury()) == escrow.functions.treasury().call()
    assert speedups.view_call(provider, escrow.functions.config()) is speedups.NOT_DONE
    lower = anvil_stack.actors.buyer.address.lower()
    nonces = anvil_stack.deployment.token.functions.nonces(lower)
    assert speedups.view_call(provider, nonces) is speedups.NOT_DONE


@pytest.mark.anvil
def test_an_estimate_from_the_provider_is_web3s(anvil_stack: Stack) -> None:
    chain, token = anvil_stack.chain, anvil_stack.deployment.token
    buyer, seller = anvil_stack.actors.buyer.address, anvil_stack.actors.seller.address
    data = speedups.calldata(token.functions.approve(seller, 1))
    plain = {"from": buyer, "to": token.address, "value": 0, "data": data}
    priced = {**plain, "chainId": chain.chain_id, **chain.fees().fields()}
    for tx in (plain, priced):
        fast = speedups.estimate_gas(chain.w3.provider, tx, "pending")
        assert fast == chain.w3.eth.estimate_gas(tx, "pending") and isinstance(fast, int)
    # a field it does not know, a value it does not send as it is: web3's way
    for odd in ({**plain, "accessList": []}, {**plain, "data": b"\x01"}):
        assert speedups.estimate_gas(chain.w3.provider, odd, "pending") is speedups.NOT_DONE
    # more than the holder has: a revert, which the client's estimate raises as web3 does (translated)
    too_much = {**plain, "data": speedups.calldata(token.functions.transfer(seller, 10**40))}
    assert speedups.estimate_gas(chain.w3.provider, too_much, "pending") is speedups.NOT_DONE
    with pytest.raises(ContractRevert):
        chain.estimate_from(token.functions.transfer(seller, 10**40), buyer)


class _Answering:
    """A provider that answers every request with ``answer``."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def make_request(self, method: str, params: object) -> object:
        assert method in ("eth_call", "eth_estimateGas")
        return self.answer


@pytest.mark.parametrize(
    "answer",
    [
        {"jsonrpc": "2.0", "id": 1, "error": {"code": 3, "message": "execution reverted", "data": "0x4e48"}},
        {"jsonrpc": "2.0", "id": 1, "result": "0x"},  # no contract at the address
        {"jsonrpc": "2.0", "id": 1, "result": None},
        {"jsonrpc": "2.0", "id": 1, "result": "0x" + "00" * 31},  # shorter than a word
    ],
)
def test_an_error_or_an_answer_that_is_not_the_type_is_not_decoded(answer: object) -> None:
    address = to_checksum_address("0x" + "22" * 20)
    token = Web3().eth.contract(address=address, abi=compiler.load_artifact("TestUSD")["abi"])
    assert speedups.view_call(_Answering(answer), token.functions.nonces(address)) is speedups.NOT_DONE
    if answer["result" if "result" in answer else "error"] != "0x" + "00" * 31:
        tx = {"from": address, "to": address, "data": "0x"}
        assert speedups.estimate_gas(_Answering(answer), tx, "pending") is speedups.NOT_DONE
