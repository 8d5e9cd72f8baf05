"""Plumbing for the stateful model test: the environment, exact block times, fast state reads, comparisons.

The escrow's storage is read straight from eth-tester's state (about 0.03 ms a slot, where an ``eth_call``
costs several ms) so that every step can compare every order, every credit and the token balance. The slot
numbers follow the contract's storage layout; :func:`cross_check_views` compares them with the public views.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_canonical_address
from web3.contract import Contract

from app.chain.client import ChainClient
from app.chain.escrow import Deployment, Escrow, Order, TxResult, order_key
from app.domain.order_rules import ZERO_ADDRESS
from app.domain.order_state import Milestone, Status
from app.errors import ContractRevert, DomainError
from tests.factories import Actors
from tests.model.escrow_model import Court, EscrowModel
from tests.model.lifecycle import Ledger, OrderModel
from tests.model.registry import OracleInfo, Registry

T = TypeVar("T")

# TradeGuardEscrow declares `_reg` (EscrowRegistry.Registry: config, oracles, oracleList, arbitrators,
# allowedTokens, taxCaps) followed by `_orders`, `_credits`, `_partial`: their slots are found from the slot
# of `oracleList` (see find_escrow_slots). TestUSD (OpenZeppelin ERC20): `_balances` at slot 0.
ORACLE_LIST_TO_ORDERS = 4
SLOT_TOKEN_BALANCES = 0
TAX2_CAP_BPS = 1
COURT_FEE = 10**15
BIG_BALANCE = 2**250
TERMS_ABI = (
    "(address,address,address,uint256,uint16,uint16,address,uint64,uint64,uint32,uint8,uint32,uint32,uint64,"
    "address,bytes32,uint64)"
)


def _key(value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return value.to_bytes(32, "big")
    if isinstance(value, str):
        return bytes(12) + to_canonical_address(value)
    return value.rjust(32, b"\0")


def mapping_slot(slot: int, *keys: bytes | str | int) -> int:
    """Storage slot of ``m[k1][k2]...`` for a mapping declared at ``slot``."""
    where = slot
    for k in keys:
        where = int.from_bytes(keccak(_key(k) + where.to_bytes(32, "big")), "big")
    return where


@dataclass
class Env:
    """What the machine needs, set up once per test on top of the session deployment."""

    chain: ChainClient
    dep: Deployment
    actors: Actors
    tax2: LocalAccount
    initial_model: EscrowModel
    slot_orders: int = -1
    #: two appointed ERC-792 arbitrators (``CentralizedArbitrator``, owned by the arbitrator actor): the first
    #: charges :data:`COURT_FEE` wei a dispute, the second nothing
    courts: tuple[Contract, ...] = ()

    @property
    def slot_credits(self) -> int:
        return self.slot_orders + 1

    @property
    def slot_partial(self) -> int:
        return self.slot_orders + 2

    @property
    def escrow(self) -> Escrow:
        return self.dep.escrow

    @property
    def token(self) -> Contract:
        return self.dep.token

    @property
    def token_address(self) -> str:
        return str(self.dep.token.address)

    @property
    def tester(self) -> Any:
        return self.chain._tester

    def parties(self) -> list[LocalAccount]:
        """Everyone who may ever hold a credit."""
        a = self.actors
        return [a.buyer, a.buyer2, a.seller, a.seller2, a.treasury, a.tax, self.tax2]

    # ------------------------------------------------------------------ time

    def pending_time(self) -> int:
        """The block time the next transaction (or estimate) runs at."""
        return int(self.tester.backend.chain.header.timestamp)

    def travel(self, timestamp: int) -> int:
        """Make ``timestamp`` the next block time if it is not in the past; returns the next block time."""
        if timestamp > self.pending_time():
            self.tester.time_travel(timestamp)
        return self.pending_time()

    # ------------------------------------------------------------------ state reads

    def install_fast_estimates(self) -> None:
        """Estimate gas with one execution instead of py-evm's binary search (~14 executions a call).

        Reverts still surface at estimation time, with the same error, so outcomes do not change.
        """
        chain = self.tester.backend.chain
        if not hasattr(self, "_saved_estimator"):
            self._saved_estimator = chain.gas_estimator
        chain.gas_estimator = _one_shot_estimate

    def remove_fast_estimates(self) -> None:
        """Back to py-evm's own estimator."""
        if hasattr(self, "_saved_estimator"):
            self.tester.backend.chain.gas_estimator = self._saved_estimator

    def latest_block_time(self) -> int:
        """Timestamp of the latest mined block."""
        return int(self.tester.backend.chain.get_canonical_head().timestamp)

    def _state(self) -> Any:
        return self.tester.backend.chain.get_vm().state

    def storage(self, address: str, slot: int, state: Any = None) -> int:
        """One storage word of ``address`` at the latest state."""
        return int((state or self._state()).get_storage(to_canonical_address(address), slot))

    def snapshot_views(self, buyers: dict[bytes, str]) -> ChainView:
        """Commitments, partial bitmaps, credits and the escrow's token balance, read from storage, for the
        orders ``buyers`` maps (order id -> buyer: the escrow keys an order by both)."""
        state = self._state()
        esc, tok = self.escrow.address, self.token_address
        keys = {oid: order_key(oid, buyer) for oid, buyer in buyers.items()}
        commitments = {
            oid: self.storage(esc, mapping_slot(self.slot_orders, key), state).to_bytes(32, "big")
            for oid, key in keys.items()
        }
        partial = {
            (oid, m): self.storage(esc, mapping_slot(self.slot_partial, key, int(m)), state)
            for oid, key in keys.items()
            for m in Milestone
        }
        credits = {
            p.address: self.storage(esc, mapping_slot(self.slot_credits, tok, p.address), state)
            for p in self.parties()
        }
        balance = self.storage(tok, mapping_slot(SLOT_TOKEN_BALANCES, esc), state)
        return ChainView(commitments, partial, credits, balance, dict(buyers))


@dataclass
class ChainView:
    """The escrow's state as read from storage."""

    commitments: dict[bytes, bytes]
    partial: dict[tuple[bytes, Milestone], int]
    credits: dict[str, int]
    balance: int
    #: each order's buyer (the escrow keys an order by its id and buyer)
    buyers: dict[bytes, str]


def _one_shot_estimate(state: Any, transaction: Any) -> int:
    """Run the call once with the block's gas limit; raise its error, or return twice the gas it used."""
    from eth.vm.spoof import SpoofTransaction

    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0))
        if computation.is_error:
            raise computation.error
        return int(min(state.gas_limit, computation.get_gas_used() * 2 + 50_000))
    finally:
        state.revert(snapshot)


def commitment_of(order: Order) -> bytes:
    """``keccak256(abi.encode(terms, state))`` as the contract stores it."""
    return keccak(encode([TERMS_ABI, "uint256"], [order.terms.as_tuple(), order.state]))


def bits(indices: frozenset[int]) -> int:
    """A set of oracle indices as the contract's bitmap."""
    return sum(1 << i for i in indices)


def setup_env(chain: ChainClient, dep: Deployment, actors: Actors) -> Env:
    """A second tax corridor (capped at 1 bps), rich buyers with unlimited allowances; the model to match."""
    tax2 = chain.dev_accounts(20)[len(Actors.__dataclass_fields__)]
    fns = dep.escrow.contract.functions
    chain.send(fns.setTaxRecipient(tax2.address, TAX2_CAP_BPS), actors.admin)
    env = Env(chain, dep, actors, tax2, initial_model=_placeholder_model())
    env.courts = tuple(
        chain.deploy("CentralizedArbitrator", actors.arbitrator.address, fee, 0, 0, sender=actors.admin)
        for fee in (COURT_FEE, 0)
    )
    for court in env.courts:
        chain.send(fns.addArbitrator(court.address), actors.admin)
    chain.advance_time(int(chain.call(fns.ROLE_DELAY())) + 1)
    for buyer in (actors.buyer, actors.buyer2):
        _poke_balance(env, buyer.address, BIG_BALANCE)
        chain.send(dep.token.functions.approve(dep.escrow.address, 2**256 - 1), buyer)
    env.initial_model = model_from_chain(env)
    env.slot_orders = find_escrow_slots(env)
    return env


def find_escrow_slots(env: Env) -> int:
    """The slot of `_orders`, located from `oracleList` (its length, and its first element's address)."""
    fns = env.escrow.contract.functions
    count = env.escrow.config()["oracle_count"]
    first = int(env.chain.call(fns.oracleAt(0)), 16)
    esc = env.escrow.address
    found = [
        slot
        for slot in range(64)
        if env.storage(esc, slot) == count
        and env.storage(esc, int.from_bytes(keccak(slot.to_bytes(32, "big")), "big")) == first
    ]
    assert len(found) == 1, f"oracleList found at slots {found}"
    return found[0] + ORACLE_LIST_TO_ORDERS


def _placeholder_model() -> EscrowModel:
    reg = Registry(
        treasury=ZERO_ADDRESS, commission_bps=0, response_seconds=0, arbitration_seconds=0, role_delay=0
    )
    return EscrowModel(registry=reg, admins=frozenset())


def _poke_balance(env: Env, account: str, amount: int) -> None:
    """Give ``account`` a tUSD balance no faucet could (amounts up to 2^128 - 1 per order)."""
    chain = env.tester.backend.chain
    state = chain.get_vm(chain.header).state
    slot = mapping_slot(SLOT_TOKEN_BALANCES, account)
    state.set_storage(to_canonical_address(env.token_address), slot, amount)
    state.persist()
    chain.header = chain.header.copy(state_root=state.state_root)
    env.tester.mine_blocks(1)
    assert env.chain.call(env.token.functions.balanceOf(account)) == amount


def model_from_chain(env: Env) -> EscrowModel:
    """The model of the escrow as deployed: settings, oracles, arbitrator, roles, nothing escrowed."""
    esc = env.escrow
    call = env.chain.call
    fns = esc.contract.functions
    cfg = esc.config()
    oracles: dict[str, OracleInfo] = {}
    oracle_list: list[str] = []
    for i in range(cfg["oracle_count"]):
        addr = call(fns.oracleAt(i))
        index, active, active_from = call(fns.oracleInfo(addr))
        oracles[addr] = OracleInfo(index, active, active_from)
        oracle_list.append(addr)
    a = env.actors
    arbitrators = {
        address: call(fns.arbitratorActiveFrom(address))
        for address in (a.arbitrator.address, *(c.address for c in env.courts))
    }
    courts = {
        c.address: Court(owner=call(c.functions.owner()), fee=call(c.functions.fee())) for c in env.courts
    }
    registry = Registry(
        treasury=call(fns.treasury()),
        commission_bps=cfg["commission_bps"],
        response_seconds=cfg["response_seconds"],
        arbitration_seconds=cfg["arbitration_seconds"],
        role_delay=call(fns.ROLE_DELAY()),
        threshold=cfg["threshold"],
        oracles=oracles,
        oracle_list=tuple(oracle_list),
        arbitrators=arbitrators,
        allowed_tokens=frozenset({env.token_address}),
        tax_caps={a.tax.address: call(fns.taxCap(a.tax.address)), env.tax2.address: TAX2_CAP_BPS},
        paused=cfg["paused"],
        pending_oracles=cfg["pending_oracles"],
        pending_until=cfg["pending_until"],
    )
    balance = call(env.token.functions.balanceOf(esc.address))
    return EscrowModel(
        registry=registry,
        admins=frozenset({a.admin.address}),
        regulators=frozenset({a.regulator.address}),
        ledger=Ledger(balances={env.token_address: balance}),
        courts=courts,
    )


def fresh_model(env: Env) -> EscrowModel:
    """A private copy of the initial model for one example."""
    return copy.deepcopy(env.initial_model)


# ------------------------------------------------------------------ comparisons


class Disagreement(AssertionError):
    """The model and the contract disagree."""


def run_both(
    what: str, now: int, model_call: Callable[[], T], chain_call: Callable[[], TxResult | Any]
) -> tuple[T | None, Any, str | None]:
    """Run the model, then the chain, at block time ``now``; both must succeed, or fail with the same error.

    Returns (model result, chain result, None) on success and (None, None, error name) on an agreed failure.
    """
    model_err: DomainError | None = None
    result: T | None = None
    try:
        result = model_call()
    except DomainError as err:
        model_err = err
    chain_err: ContractRevert | None = None
    chain_result: Any = None
    try:
        chain_result = chain_call()
    except ContractRevert as err:
        chain_err = err
    if model_err is None and chain_err is None:
        return result, chain_result, None
    if model_err is None:
        raise Disagreement(f"{what} at t={now}: model accepts, contract reverts {chain_err}")
    if chain_err is None:
        raise Disagreement(
            f"{what} at t={now}: model refuses with {model_err.code} {model_err.details}, contract accepts"
        )
    if chain_err.name != model_err.code:
        raise Disagreement(
            f"{what} at t={now}: model {model_err.code} {model_err.details}, contract {chain_err}"
        )
    for key, value in model_err.details.items():
        if chain_err.args_by_name.get(key) != value:
            raise Disagreement(
                f"{what} at t={now}: {chain_err.name}.{key}: model {value!r}, contract {chain_err}"
            )
    return None, None, model_err.code


def compare_order(model: OrderModel, order: Order) -> None:
    """Status, flags, freeze and every timer of one order."""
    oid = "0x" + model.order_id.hex()[:12]
    d = order.decoded
    t = order.terms
    expect: list[tuple[str, Any, Any]] = [
        ("status", model.status, d.status),
        ("responded", model.responded, d.responded),
        ("frozen_seconds", model.frozen_seconds, d.frozen_seconds),
        ("frozen_until", model.frozen_until, d.frozen_until),
        ("ship deadline", model.ship_deadline, t.ship_by + d.frozen_seconds),
        ("deliver deadline", model.deliver_deadline, t.deliver_by + d.frozen_seconds),
        ("terms", _model_terms(model), t.as_tuple()),
    ]
    if model.status == Status.DELIVERED:
        expect.append(("release_at", model.release_at, d.release_at))
    if model.status == Status.DISPUTED:
        expect.append(("disputed_at", model.disputed_at, d.disputed_at))
    for name, mine, theirs in expect:
        if mine != theirs:
            raise Disagreement(f"order {oid} {name}: model {mine!r}, contract {theirs!r}")


def _model_terms(model: OrderModel) -> tuple[Any, ...]:
    t = model.terms
    return (
        t.buyer,
        t.seller,
        t.token,
        t.amount,
        t.commission_bps,
        t.tax_bps,
        t.tax_recipient,
        t.ship_by,
        t.deliver_by,
        t.hold_seconds,
        t.threshold,
        t.response_seconds,
        t.arbitration_seconds,
        t.funded_at,
        t.arbitrator,
        t.arbitrator_extra_data_hash,
        t.meta_evidence_id,
    )


def cross_check_views(env: Env, view: ChainView) -> None:
    """The storage reads agree with the contract's public views (guards the slot numbers above)."""
    esc, fns, me = env.escrow, env.escrow.contract.functions, env.actors.stranger.address
    for account, credit in view.credits.items():
        assert env.chain.call(fns.creditOf(env.token_address, account), me) == credit, (
            f"credit slot of {account}"
        )
    assert env.chain.call(env.token.functions.balanceOf(esc.address), me) == view.balance, "balance slot"
    for oid, commitment in list(view.commitments.items())[-3:]:
        assert env.chain.call(fns.commitmentOf(oid, view.buyers[oid]), me) == commitment, "commitment slot"
    for (oid, m), bitmap in list(view.partial.items())[-4:]:
        key = order_key(oid, view.buyers[oid])
        assert env.chain.call(fns.partialAttestations(key, int(m)), me) == bitmap, "partial slot"
