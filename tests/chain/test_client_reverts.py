"""The revert translation table of ChainClient, on both revert shapes.

eth-tester raises ``TransactionFailed("execution reverted: b'…'")``; anvil (a real node) answers with web3's
``ContractCustomError`` / ``ContractLogicError`` carrying ``.data``. Both must come out as a
:class:`ContractRevert` with the error's name and decoded arguments, whether the revert shows up at gas
estimation, in an ``eth_call``, or as a mined status-0 receipt (explicit gas) replayed to find its reason.
Unknown selectors and empty reverts come out as :class:`TransactionFailed`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_tester import exceptions as tester_exceptions
from eth_utils import keccak
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError

from app.chain.abi import AbiRegistry
from app.chain.client import ChainClient
from app.chain.escrow import NO_PERMIT
from app.chain.reverts import revert_data_from_exception
from app.domain.order_state import Status
from app.errors import ContractRevert, TransactionFailed
from tests.chain.conftest import Stack, deploy_echo_reverter

ZERO_ROLE = b"\x00" * 32

#: Functions of the echo reverter, named like the errors their calldata spells.
ECHO_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": name,
        "stateMutability": "nonpayable",
        "inputs": [{"name": f"a{i}", "type": t} for i, t in enumerate(types)],
        "outputs": [],
    }
    for name, types in [
        ("Error", ["string"]),
        ("Panic", ["uint256"]),
        ("NotOneOfOurs", ["uint256"]),
        ("DeadlineNotReached", ["bytes32", "uint256"]),
        ("InvalidStatus", ["bytes32", "uint8"]),
    ]
]
BOGUS_ABI: list[dict[str, Any]] = [
    {"type": "function", "name": "notAFunction", "stateMutability": "nonpayable", "inputs": [], "outputs": []}
]


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


# ---------------------------------------------------------------------------------------------- three paths

Path = Callable[[ChainClient, ContractFunction, Any], Any]


def via_estimate(chain: ChainClient, fn: ContractFunction, sender: Any) -> Any:
    return chain.send(fn, sender)


def via_status_zero(chain: ChainClient, fn: ContractFunction, sender: Any) -> Any:
    """Explicit gas: nothing is estimated, the transaction is mined with status 0 and replayed."""
    return chain.send(fn, sender, gas=300_000)


def via_call(chain: ChainClient, fn: ContractFunction, sender: Any) -> Any:
    return chain.call(fn, sender.address)


PATHS = [
    pytest.param(via_estimate, id="estimate"),
    pytest.param(via_status_zero, id="status0"),
    pytest.param(via_call, id="call"),
]


def assert_mined_failed(chain: ChainClient, tx_hash: str | None) -> None:
    """A status-0 revert names the mined transaction, and it really is on chain with status 0."""
    assert tx_hash is not None and tx_hash.startswith("0x") and len(tx_hash) == 66
    assert chain.w3.eth.get_transaction_receipt(tx_hash)["status"] == 0


# ---------------------------------------------------------------------------------------------- raw shapes


def test_raw_revert_shape_differs_by_backend_and_carries_the_data(stack: Stack) -> None:
    a, fns = stack.actors, stack.escrow.contract.functions
    tx = {
        "from": a.stranger.address,
        "to": stack.escrow.address,
        "data": fns.pause()._encode_transaction_data(),
    }
    expected = selector("AccessControlUnauthorizedAccount(address,bytes32)") + abi_encode(
        ["address", "bytes32"], [a.stranger.address, ZERO_ROLE]
    )
    shape = tester_exceptions.TransactionFailed if stack.backend == "embedded" else ContractCustomError
    for attempt in (stack.chain.w3.eth.estimate_gas, stack.chain.w3.eth.call):
        with pytest.raises(shape) as info:
            attempt(tx)  # type: ignore[operator]
        if stack.backend == "embedded":
            assert str(info.value).startswith("execution reverted: b'")
        else:
            assert info.value.data == "0x" + expected.hex()  # type: ignore[union-attr]
        assert revert_data_from_exception(info.value) == expected


# ---------------------------------------------------------------------------------------------- our contracts


@pytest.mark.parametrize("path", PATHS)
def test_access_control_error_is_decoded(stack: Stack, path: Path) -> None:
    a = stack.actors
    with pytest.raises(ContractRevert) as info:
        path(stack.chain, stack.escrow.contract.functions.pause(), a.stranger)
    assert info.value.name == "AccessControlUnauthorizedAccount"
    assert info.value.args_by_name == {"account": a.stranger.address, "neededRole": ZERO_ROLE}
    if path is via_status_zero:
        assert_mined_failed(stack.chain, info.value.tx_hash)
    else:
        assert info.value.tx_hash is None


@pytest.mark.parametrize("path", PATHS)
def test_enforced_pause_is_decoded(stack: Stack, path: Path) -> None:
    f, a = stack.factory, stack.actors
    stack.chain.send(stack.escrow.contract.functions.pause(), a.admin)
    auth = f.auth()
    f.prepare([auth])
    sig = stack.escrow.sign_authorization(a.buyer.key, auth)
    fn = stack.escrow.contract.functions.fund([auth.as_tuple()], [sig], NO_PERMIT)
    with pytest.raises(ContractRevert) as info:
        path(stack.chain, fn, a.relayer)
    assert (info.value.name, info.value.args_by_name) == ("EnforcedPause", {})
    assert info.value.data == selector("EnforcedPause()")


@pytest.mark.parametrize("path", PATHS)
def test_custom_error_arguments_are_decoded(stack: Stack, path: Path) -> None:
    f, a = stack.factory, stack.actors
    order = f.deliver(f.fund())
    fn = stack.escrow.contract.functions.release([order.ref()], True)
    with pytest.raises(ContractRevert) as info:
        path(stack.chain, fn, a.relayer)
    assert info.value.name == "DeadlineNotReached"
    assert info.value.args_by_name == {"orderId": order.order_id, "deadline": order.decoded.release_at}
    assert str(info.value).startswith(f"DeadlineNotReached(orderId=0x{order.order_id.hex()}, deadline=")


@pytest.mark.parametrize("path", PATHS)
def test_enum_argument_comes_back_as_its_number(stack: Stack, path: Path) -> None:
    f, a = stack.factory, stack.actors
    order = f.fund()
    fn = stack.escrow.ruling_call(order, 5_000, b"\x01" * 32, 0, b"")
    with pytest.raises(ContractRevert) as info:
        path(stack.chain, fn, a.arbitrator)
    assert info.value.name == "InvalidStatus"
    assert info.value.args_by_name == {"orderId": order.order_id, "status": Status.FUNDED}


@pytest.mark.parametrize("path", PATHS)
def test_error_of_another_contract_bubbling_through_the_escrow_is_decoded(stack: Stack, path: Path) -> None:
    """tUSD's ERC20InsufficientAllowance, raised inside the escrow's token pull (no approval given)."""
    f, a = stack.factory, stack.actors
    auth = f.auth()
    f.mint(a.buyer, auth.amount)
    sig = stack.escrow.sign_authorization(a.buyer.key, auth)
    fn = stack.escrow.contract.functions.fund([auth.as_tuple()], [sig], NO_PERMIT)
    with pytest.raises(ContractRevert) as info:
        path(stack.chain, fn, a.relayer)
    assert info.value.name == "ERC20InsufficientAllowance"
    assert info.value.args_by_name == {"spender": stack.escrow.address, "allowance": 0, "needed": auth.amount}


def test_status_zero_revert_is_decoded_at_the_time_the_transaction_was_mined(stack: Stack) -> None:
    """A signature that expired exactly when the transaction was mined: one block earlier it was still valid,
    so a replay at the parent block alone would not find the reason."""
    f, a = stack.factory, stack.actors
    auth = f.auth()
    f.prepare([auth])
    sig = stack.escrow.sign_authorization(a.buyer.key, auth)
    stack.chain.set_next_block_time(auth.valid_until + 1)
    with pytest.raises(ContractRevert) as info:
        stack.escrow.fund([auth], [sig], a.relayer, gas=1_000_000)
    assert info.value.name == "SignatureExpired"
    assert info.value.args_by_name == {"validUntil": auth.valid_until, "nowTime": auth.valid_until + 1}
    assert_mined_failed(stack.chain, info.value.tx_hash)


@pytest.mark.anvil
def test_status_zero_replay_works_without_tracing(
    anvil_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node without ``debug_traceTransaction`` still gets the reason, by replaying the call."""
    st = anvil_stack
    f, a = st.factory, st.actors
    monkeypatch.setattr(st.chain, "_traced_output", lambda tx_hash: None)
    auth = f.auth()
    f.prepare([auth])
    sig = st.escrow.sign_authorization(a.buyer.key, auth)
    st.chain.set_next_block_time(auth.valid_until + 1)
    with pytest.raises(ContractRevert) as info:
        st.escrow.fund([auth], [sig], a.relayer, gas=1_000_000)
    assert info.value.args_by_name == {"validUntil": auth.valid_until, "nowTime": auth.valid_until + 1}
    order = f.deliver(f.fund())
    with pytest.raises(ContractRevert) as info:
        st.escrow.release([order], a.relayer, gas=500_000)
    assert info.value.args_by_name == {"orderId": order.order_id, "deadline": order.decoded.release_at}


def test_out_of_gas_is_a_failed_transaction_not_a_revert(stack: Stack) -> None:
    f, a = stack.factory, stack.actors
    auth = f.auth()
    f.prepare([auth])
    sig = stack.escrow.sign_authorization(a.buyer.key, auth)
    with pytest.raises(TransactionFailed) as info:
        stack.escrow.fund([auth], [sig], a.relayer, gas=60_000)
    assert not isinstance(info.value, ContractRevert)
    assert_mined_failed(stack.chain, info.value.tx_hash)
    assert stack.escrow.commitment(auth.order_id, auth.buyer) == b"\x00" * 32


# ------------------------------------------------------------------------------------------ crafted reverts


@pytest.mark.parametrize("path", PATHS)
def test_error_string_is_decoded(stack: Stack, path: Path) -> None:
    echo = deploy_echo_reverter(stack.chain, stack.actors.admin, ECHO_ABI)
    with pytest.raises(ContractRevert) as info:
        path(stack.chain, echo.functions.Error('it\'s "quoted" ü'), stack.actors.stranger)
    assert (info.value.name, info.value.args_by_name) == ("Error", {"reason": 'it\'s "quoted" ü'})


@pytest.mark.parametrize("path", PATHS)
def test_panic_is_decoded(stack: Stack, path: Path) -> None:
    echo = deploy_echo_reverter(stack.chain, stack.actors.admin, ECHO_ABI)
    with pytest.raises(ContractRevert) as info:
        path(stack.chain, echo.functions.Panic(0x11), stack.actors.stranger)
    assert (info.value.name, info.value.args_by_name) == ("Panic", {"code": 0x11})


@pytest.mark.parametrize("path", PATHS)
def test_our_error_from_any_contract_is_decoded_by_selector(stack: Stack, path: Path) -> None:
    echo = deploy_echo_reverter(stack.chain, stack.actors.admin, ECHO_ABI)
    with pytest.raises(ContractRevert) as info:
        path(stack.chain, echo.functions.InvalidStatus(b"\x07" * 32, 4), stack.actors.stranger)
    assert info.value.args_by_name == {"orderId": b"\x07" * 32, "status": 4}


@pytest.mark.parametrize("path", PATHS)
def test_unknown_selector_is_a_failed_transaction(stack: Stack, path: Path) -> None:
    echo = deploy_echo_reverter(stack.chain, stack.actors.admin, ECHO_ABI)
    with pytest.raises(TransactionFailed) as info:
        path(stack.chain, echo.functions.NotOneOfOurs(7), stack.actors.stranger)
    assert not isinstance(info.value, ContractRevert)
    if path is via_status_zero:
        assert_mined_failed(stack.chain, info.value.tx_hash)


@pytest.mark.parametrize("path", PATHS)
def test_empty_revert_is_a_failed_transaction(stack: Stack, path: Path) -> None:
    bogus = stack.chain.w3.eth.contract(address=stack.escrow.contract.address, abi=BOGUS_ABI)
    with pytest.raises(TransactionFailed) as info:
        path(stack.chain, bogus.functions.notAFunction(), stack.actors.stranger)
    assert not isinstance(info.value, ContractRevert)


# ---------------------------------------------------------------------------------------------- unit: data


PANIC_11 = selector("Panic(uint256)") + abi_encode(["uint256"], [0x11])
DEADLINE = selector("DeadlineNotReached(bytes32,uint256)") + abi_encode(
    ["bytes32", "uint256"], [b"\x01" * 32, 9]
)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(
            tester_exceptions.TransactionFailed(f"execution reverted: {DEADLINE!r}"), DEADLINE, id="tester"
        ),
        pytest.param(tester_exceptions.TransactionFailed("execution reverted: b''"), None, id="tester-empty"),
        pytest.param(tester_exceptions.TransactionFailed("execution reverted"), None, id="tester-bare"),
        pytest.param(
            tester_exceptions.TransactionFailed("execution reverted: not enough 0xdeadbeef00 b'x'"),
            selector("Error(string)") + abi_encode(["string"], ["not enough 0xdeadbeef00 b'x'"]),
            id="tester-error-string-is-reencoded",
        ),
        pytest.param(
            tester_exceptions.TransactionFailed(
                "execution reverted: Out of gas: Needed 20000 - Remaining 1 - Reason: SSTORE"
            ),
            None,
            id="tester-vm-error",
        ),
        pytest.param(
            tester_exceptions.TransactionFailed(f"execution reverted: {b'it' + bytes([39]) + b's'!r}"),
            b"it's",
            id="tester-double-quoted-literal",
        ),
        pytest.param(
            tester_exceptions.TransactionFailed(f"execution reverted: {bytes([39, 34, 92, 0])!r}"),
            bytes([39, 34, 92, 0]),
            id="tester-both-quotes-and-backslash",
        ),
        pytest.param(
            ContractCustomError("0x" + DEADLINE.hex(), data="0x" + DEADLINE.hex()), DEADLINE, id="custom"
        ),
        pytest.param(ContractLogicError("execution reverted", data="0x"), None, id="logic-empty"),
        pytest.param(ContractPanicError("Panic", data="0x" + PANIC_11.hex()), PANIC_11, id="panic"),
        pytest.param(
            ContractLogicError("execution reverted", data={"data": "0x" + DEADLINE.hex()}),
            DEADLINE,
            id="rpc-obj",
        ),
        pytest.param(ContractLogicError("execution reverted", data="0xabc"), None, id="odd-hex"),
        pytest.param(ContractLogicError("execution reverted", data="0xzzzzzzzzzz"), None, id="bad-hex"),
        pytest.param(
            ValueError(f"reverted with data 0x{DEADLINE.hex()} at block 7"), DEADLINE, id="hex-in-message"
        ),
        pytest.param(ValueError("node said 0x123456789 which is odd"), None, id="odd-hex-in-message"),
        pytest.param(ValueError("boom"), None, id="nothing"),
    ],
)
def test_revert_data_from_exception(exc: BaseException, expected: bytes | None) -> None:
    assert revert_data_from_exception(exc) == expected


def test_revert_data_from_exception_takes_bytes_data_as_is() -> None:
    exc = ContractLogicError("execution reverted")
    exc.data = DEADLINE  # type: ignore[assignment]
    assert revert_data_from_exception(exc) == DEADLINE


# ---------------------------------------------------------------------------------------------- unit: decode


@pytest.fixture
def registry(chain: ChainClient) -> AbiRegistry:
    return chain.abis


def test_decode_error_table(registry: AbiRegistry) -> None:
    reason = selector("Error(string)") + abi_encode(["string"], ["nope"])
    panic = selector("Panic(uint256)") + abi_encode(["uint256"], [0x12])
    assert registry.decode_error(reason).args_by_name == {"reason": "nope"}  # type: ignore[union-attr]
    assert registry.decode_error(panic).args_by_name == {"code": 0x12}  # type: ignore[union-attr]
    decoded = registry.decode_error(DEADLINE, tx_hash="0xab")
    assert decoded is not None
    assert (decoded.name, decoded.args_by_name, decoded.data, decoded.tx_hash) == (
        "DeadlineNotReached",
        {"orderId": b"\x01" * 32, "deadline": 9},
        DEADLINE,
        "0xab",
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x01\x02\x03", id="short"),
        pytest.param(selector("NotOneOfOurs(uint256)") + b"\x00" * 32, id="unknown"),
        pytest.param(DEADLINE[:40], id="truncated-custom"),
        pytest.param(selector("Error(string)") + b"\x00" * 5, id="truncated-string"),
        pytest.param(selector("Panic(uint256)"), id="truncated-panic"),
    ],
)
def test_decode_error_refuses_what_it_cannot_read(registry: AbiRegistry, data: bytes) -> None:
    assert registry.decode_error(data) is None
