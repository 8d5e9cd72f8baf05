"""Admin setters (EscrowRegistry, reached through the escrow): events, bounds, access control, and that no
admin change alters an order that is already funded."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from app.chain.escrow import ZERO_ADDRESS
from app.chain.reverts import revert_data_from_exception
from app.domain.ids import content_hash
from app.domain.money import release_split
from app.domain.order_state import RefundReason, Status
from app.errors import ContractRevert
from tests.factories import DAY, HOLD, OrderFactory, reverts

ADMIN_ROLE = b"\x00" * 32
REGULATOR_ROLE = keccak(text="REGULATOR_ROLE")
HOUR = 3_600
META_URI = "ipfs://tradeguard/meta-evidence/v2.json"


def _config(factory: OrderFactory) -> dict[str, int]:
    return factory.escrow.config()


def _fresh() -> str:
    return str(Account.create().address)


# ------------------------------------------------------------------ access control


def _admin_calls(factory: OrderFactory) -> list[tuple[str, tuple[Any, ...]]]:
    a = factory.actors
    return [
        ("addOracle", (a.stranger.address,)),
        ("removeOracle", (a.oracle1.address,)),
        ("setThreshold", (2,)),
        ("addArbitrator", (a.stranger.address,)),
        ("removeArbitrator", (a.arbitrator.address,)),
        ("setToken", (factory.token.address, False)),
        ("setTaxRecipient", (a.stranger.address, 100)),
        ("setCommission", (100,)),
        ("setDisputeWindows", (HOUR, 2 * HOUR)),
        ("setMetaEvidence", (META_URI,)),
        ("pause", ()),
        ("grantRole", (REGULATOR_ROLE, a.stranger.address)),
        ("revokeRole", (REGULATOR_ROLE, a.regulator.address)),
        ("beginDefaultAdminTransfer", (a.stranger.address,)),
    ]


ADMIN_FNS = [
    "addOracle",
    "removeOracle",
    "setThreshold",
    "addArbitrator",
    "removeArbitrator",
    "setToken",
    "setTaxRecipient",
    "setCommission",
    "setDisputeWindows",
    "setMetaEvidence",
    "pause",
    "grantRole(regulator)",
    "revokeRole(regulator)",
    "beginDefaultAdminTransfer",
]


@pytest.mark.parametrize("caller", ["stranger", "relayer", "regulator", "arbitrator", "oracle1", "treasury"])
@pytest.mark.parametrize("index", range(len(ADMIN_FNS)), ids=ADMIN_FNS)
def test_non_admin_is_refused(factory: OrderFactory, caller: str, index: int) -> None:
    name, args = _admin_calls(factory)[index]
    acct = getattr(factory.actors, caller)
    fn = getattr(factory.escrow.contract.functions, name)(*args)
    with reverts("AccessControlUnauthorizedAccount", account=acct.address, neededRole=ADMIN_ROLE):
        factory.chain.send(fn, acct)


@pytest.mark.parametrize("caller", ["stranger", "regulator"])
def test_non_admin_cannot_unpause(factory: OrderFactory, caller: str) -> None:
    factory.admin("pause")
    acct = getattr(factory.actors, caller)
    with reverts("AccessControlUnauthorizedAccount", account=acct.address, neededRole=ADMIN_ROLE):
        factory.chain.send(factory.escrow.contract.functions.unpause(), acct)


@pytest.mark.parametrize("caller", ["admin", "stranger"])
def test_admin_role_is_never_granted_directly(factory: OrderFactory, caller: str) -> None:
    """Escrow v2: the admin role moves only in two steps with a delay (AccessControlDefaultAdminRules)."""
    acct = getattr(factory.actors, caller)
    fn = factory.escrow.contract.functions.grantRole(ADMIN_ROLE, factory.actors.stranger.address)
    with reverts("AccessControlEnforcedDefaultAdminRules"):
        factory.chain.send(fn, acct)


def test_admin_calls_succeed_for_the_admin(factory: OrderFactory) -> None:
    for name, args in _admin_calls(factory):
        factory.admin(name, *args)
    assert factory.escrow.config()["paused"]


# ------------------------------------------------------------------ oracles


def test_add_oracle_emits_and_waits_role_delay(factory: OrderFactory) -> None:
    new = _fresh()
    before = _config(factory)
    res = factory.admin("addOracle", new)
    now = factory.chain.now()
    (ev,) = res.named("OracleAdded")
    assert ev.args == {"oracle": new, "index": 3, "activeFrom": now + DAY}
    info = factory.chain.call(factory.escrow.contract.functions.oracleInfo(new))
    assert tuple(info) == (3, True, now + DAY)
    assert factory.chain.call(factory.escrow.contract.functions.oracleAt(3)) == new
    after = _config(factory)
    assert after["active_oracles"] == before["active_oracles"] + 1 == 4
    assert after["oracle_count"] == before["oracle_count"] + 1 == 4


def test_add_oracle_twice_reverts(factory: OrderFactory) -> None:
    o = factory.actors.oracle1.address
    with reverts("OracleConfig", oracle=o):
        factory.admin("addOracle", o)
    new = _fresh()
    factory.admin("addOracle", new)
    with reverts("OracleConfig", oracle=new):
        factory.admin("addOracle", new)


def test_add_oracle_zero_reverts(factory: OrderFactory) -> None:
    with reverts("ZeroAddress"):
        factory.admin("addOracle", ZERO_ADDRESS)


def test_readding_a_removed_oracle_gets_a_new_index(factory: OrderFactory) -> None:
    o = factory.actors.oracle2.address
    factory.admin("removeOracle", o)
    res = factory.admin("addOracle", o)
    assert res.named("OracleAdded")[0].args["index"] == 3  # indices are never reused
    assert _config(factory)["active_oracles"] == 3
    assert _config(factory)["oracle_count"] == 4


@pytest.mark.slow
def test_registry_full_at_256_oracles(factory: OrderFactory) -> None:
    add = factory.escrow.contract.functions.addOracle
    for _ in range(256 - 3):
        factory.chain.send(add(_fresh()), factory.actors.admin, gas=150_000)  # no estimate: twice as fast
    assert _config(factory)["oracle_count"] == 256
    extra = _fresh()
    with reverts("OracleConfig", oracle=extra):
        factory.admin("addOracle", extra)


def test_remove_oracle_emits(factory: OrderFactory) -> None:
    o = factory.actors.oracle3.address
    res = factory.admin("removeOracle", o)
    assert [e.name for e in res.events] == ["OracleRemoved"]
    assert res.events[0].args == {"oracle": o}
    info = factory.chain.call(factory.escrow.contract.functions.oracleInfo(o))
    assert tuple(info)[1] is False
    assert _config(factory)["active_oracles"] == 2


def test_remove_unknown_oracle_reverts(factory: OrderFactory) -> None:
    s = factory.actors.stranger.address
    with reverts("OracleConfig", oracle=s):
        factory.admin("removeOracle", s)
    with reverts("OracleConfig", oracle=ZERO_ADDRESS):
        factory.admin("removeOracle", ZERO_ADDRESS)


def test_remove_oracle_twice_reverts(factory: OrderFactory) -> None:
    o = factory.actors.oracle1.address
    factory.admin("removeOracle", o)
    with reverts("OracleConfig", oracle=o):
        factory.admin("removeOracle", o)


# ------------------------------------------------------------------ threshold


@pytest.mark.parametrize("k", [1, 2, 3])
def test_set_threshold_within_bounds(factory: OrderFactory, k: int) -> None:
    res = factory.admin("setThreshold", k)
    assert [e.name for e in res.events] == ["ThresholdSet"]
    assert res.events[0].args == {"threshold": k}
    assert _config(factory)["threshold"] == k


@pytest.mark.parametrize("k", [0, 4, 255])
def test_set_threshold_out_of_bounds_reverts(factory: OrderFactory, k: int) -> None:
    with reverts("InvalidThreshold", threshold=k, activeOracles=3):
        factory.admin("setThreshold", k)


def test_threshold_bound_follows_active_oracles(factory: OrderFactory) -> None:
    factory.admin("removeOracle", factory.actors.oracle1.address)
    with reverts("InvalidThreshold", threshold=3, activeOracles=2):
        factory.admin("setThreshold", 3)
    factory.admin("addOracle", _fresh())  # pending oracles count for the bound
    factory.admin("setThreshold", 3)


def test_funding_refused_when_threshold_exceeds_active_oracles(factory: OrderFactory) -> None:
    factory.admin("setThreshold", 3)
    factory.admin("removeOracle", factory.actors.oracle1.address)
    with reverts("InvalidThreshold", threshold=3, activeOracles=2):
        factory.fund()


# ------------------------------------------------------------------ arbitrators


def test_add_arbitrator_emits_with_active_from(factory: OrderFactory) -> None:
    s = factory.actors.stranger.address
    res = factory.admin("addArbitrator", s)
    now = factory.chain.now()
    assert [e.name for e in res.events] == ["ArbitratorAdded"]
    assert res.events[0].args == {"arbitrator": s, "activeFrom": now + DAY}
    assert factory.chain.call(factory.escrow.contract.functions.arbitratorActiveFrom(s)) == now + DAY


def test_add_arbitrator_zero_reverts(factory: OrderFactory) -> None:
    with reverts("ZeroAddress"):
        factory.admin("addArbitrator", ZERO_ADDRESS)


def test_remove_arbitrator_emits(factory: OrderFactory) -> None:
    arb = factory.actors.arbitrator.address
    res = factory.admin("removeArbitrator", arb)
    assert [e.name for e in res.events] == ["ArbitratorRemoved"]
    assert res.events[0].args == {"arbitrator": arb}
    assert factory.chain.call(factory.escrow.contract.functions.arbitratorActiveFrom(arb)) == 0


def test_remove_unknown_arbitrator_reverts(factory: OrderFactory) -> None:
    s = factory.actors.stranger.address
    with reverts("NotArbitrator", account=s):
        factory.admin("removeArbitrator", s)
    arb = factory.actors.arbitrator.address
    factory.admin("removeArbitrator", arb)
    with reverts("NotArbitrator", account=arb):
        factory.admin("removeArbitrator", arb)


# ------------------------------------------------------------------ tokens


def test_set_token_emits_and_disallowing_refuses_new_orders(factory: OrderFactory) -> None:
    token = factory.token.address
    res = factory.admin("setToken", token, False)
    assert [e.name for e in res.events] == ["TokenAllowed"]
    assert res.events[0].args == {"token": token, "allowed": False}
    assert factory.chain.call(factory.escrow.contract.functions.isTokenAllowed(token)) is False
    with reverts("TokenNotAllowed", token=token):
        factory.fund()
    res = factory.admin("setToken", token, True)
    assert res.events[0].args == {"token": token, "allowed": True}
    factory.fund()


def test_set_token_zero_reverts(factory: OrderFactory) -> None:
    with reverts("ZeroAddress"):
        factory.admin("setToken", ZERO_ADDRESS, True)


# ------------------------------------------------------------------ tax recipients


@pytest.mark.parametrize("cap", [0, 1, 5000])
def test_set_tax_recipient_within_bounds(factory: OrderFactory, cap: int) -> None:
    r = factory.actors.stranger.address
    res = factory.admin("setTaxRecipient", r, cap)
    assert [e.name for e in res.events] == ["TaxRecipientSet"]
    assert res.events[0].args == {"recipient": r, "maxTaxBps": cap}
    assert factory.chain.call(factory.escrow.contract.functions.taxCap(r)) == cap


@pytest.mark.parametrize("cap", [5001, 10_000, 65_535])
def test_set_tax_recipient_above_5000_reverts(factory: OrderFactory, cap: int) -> None:
    with reverts("InvalidBps", bps=cap):
        factory.admin("setTaxRecipient", factory.actors.stranger.address, cap)


def test_set_tax_recipient_zero_reverts(factory: OrderFactory) -> None:
    with reverts("ZeroAddress"):
        factory.admin("setTaxRecipient", ZERO_ADDRESS, 100)


def test_tax_cap_bounds_new_orders(factory: OrderFactory) -> None:
    a = factory.actors
    factory.admin("setTaxRecipient", a.tax.address, 500)
    with reverts("TaxNotAllowed", taxRecipient=a.tax.address, taxBps=501):
        factory.fund(tax_bps=501)
    factory.fund(tax_bps=500)
    factory.admin("setTaxRecipient", a.tax.address, 0)  # removed
    with reverts("TaxNotAllowed", taxRecipient=a.tax.address, taxBps=1):
        factory.fund(tax_bps=1)


# ------------------------------------------------------------------ commission and treasury


@pytest.mark.parametrize("bps", [0, 1, 3000])
def test_set_commission_within_bounds(factory: OrderFactory, bps: int) -> None:
    res = factory.admin("setCommission", bps)
    assert [e.name for e in res.events] == ["CommissionSet"]
    assert res.events[0].args == {"commissionBps": bps}
    assert _config(factory)["commission_bps"] == bps


@pytest.mark.parametrize("bps", [3001, 10_000, 65_535])
def test_set_commission_above_3000_reverts(factory: OrderFactory, bps: int) -> None:
    with reverts("InvalidBps", bps=bps):
        factory.admin("setCommission", bps)


def test_new_commission_applies_to_new_orders_only(factory: OrderFactory) -> None:
    factory.admin("setCommission", 300)
    with reverts("CommissionMismatch", signed=200, expected=300):
        factory.fund()
    order = factory.fund(commission_bps=300)
    assert order.terms.commission_bps == 300


def test_treasury_is_fixed_at_deployment(factory: OrderFactory) -> None:
    """There is no treasury setter: the treasury is immutable, so no admin change can redirect commission."""
    fns = {i["name"] for i in factory.escrow.contract.abi if i["type"] == "function"}
    assert not {n for n in fns if "treasury" in n.lower() and n != "treasury"}
    assert factory.chain.call(factory.escrow.contract.functions.treasury()) == factory.actors.treasury.address


def _deploy(factory: OrderFactory, deployment: Any, **overrides: Any) -> Any:
    a = factory.actors
    args = {
        "admin": a.admin.address,
        "treasury": a.treasury.address,
        "commission": 200,
        "role_delay": DAY,
        "response": 3 * DAY,
        "arbitration": 14 * DAY,
        "uri": "ipfs://x",
    }
    args.update(overrides)
    try:
        return factory.chain.deploy(
            "TradeGuardEscrow",
            *args.values(),
            sender=a.admin,
            libraries={"EscrowRegistry": deployment.registry_library},
        )
    except ContractRevert:
        raise
    except Exception as exc:
        # ChainClient.deploy lets web3's build_transaction estimate gas outside its revert translation, so a
        # constructor revert arrives raw from eth-tester: decode it the same way the client does.
        data = revert_data_from_exception(exc)
        decoded = factory.chain.abis.decode_error(data) if data else None
        if decoded is None:
            raise
        raise decoded from exc


def test_constructor_reverts_on_zero_treasury_or_admin(factory: OrderFactory, deployment: Any) -> None:
    with reverts("ZeroAddress"):
        _deploy(factory, deployment, treasury=ZERO_ADDRESS)
    # AccessControlDefaultAdminRules refuses a zero admin in its own constructor, before the escrow's check
    with reverts("AccessControlInvalidDefaultAdmin", defaultAdmin=ZERO_ADDRESS):
        _deploy(factory, deployment, admin=ZERO_ADDRESS)


def test_constructor_bounds(factory: OrderFactory, deployment: Any) -> None:
    with reverts("InvalidDuration", seconds_=30 * DAY + 1):
        _deploy(factory, deployment, role_delay=30 * DAY + 1)
    with reverts("InvalidBps", bps=3001):
        _deploy(factory, deployment, commission=3001)
    with reverts("InvalidDuration", seconds_=HOUR - 1):
        _deploy(factory, deployment, response=HOUR - 1)
    with reverts("InvalidDuration", seconds_=3 * DAY):
        _deploy(factory, deployment, arbitration=3 * DAY)


def test_constructor_emits_initial_settings(factory: OrderFactory, deployment: Any) -> None:
    contract = _deploy(factory, deployment, treasury=factory.actors.stranger.address, uri="ipfs://policy")
    events = factory.chain.get_events(
        contract.address, factory.chain.block_number(), factory.chain.block_number()
    )
    by_name = {e.name: e.args for e in events}
    assert by_name["TreasurySet"] == {"treasury": factory.actors.stranger.address}
    assert by_name["CommissionSet"] == {"commissionBps": 200}
    assert by_name["DisputeWindowsSet"] == {"responseSeconds": 3 * DAY, "arbitrationSeconds": 14 * DAY}
    assert by_name["ThresholdSet"] == {"threshold": 1}
    assert by_name["MetaEvidence"] == {"_metaEvidenceID": 0, "_evidence": "ipfs://policy"}


# ------------------------------------------------------------------ dispute windows


@pytest.mark.parametrize(
    ("response", "arbitration"),
    [(HOUR, HOUR + 1), (90 * DAY, 90 * DAY + 1), (HOUR, 180 * DAY), (2 * DAY, 10 * DAY)],
)
def test_set_dispute_windows_within_bounds(factory: OrderFactory, response: int, arbitration: int) -> None:
    res = factory.admin("setDisputeWindows", response, arbitration)
    assert [e.name for e in res.events] == ["DisputeWindowsSet"]
    assert res.events[0].args == {"responseSeconds": response, "arbitrationSeconds": arbitration}
    c = _config(factory)
    assert (c["response_seconds"], c["arbitration_seconds"]) == (response, arbitration)


@pytest.mark.parametrize(
    ("response", "arbitration", "bad"),
    [
        (0, DAY, 0),
        (HOUR - 1, DAY, HOUR - 1),
        (90 * DAY + 1, 100 * DAY, 90 * DAY + 1),
        (DAY, DAY, DAY),  # arbitration must be longer than the response window
        (DAY, DAY - 1, DAY - 1),
        (DAY, 180 * DAY + 1, 180 * DAY + 1),
        (HOUR - 1, 0, HOUR - 1),  # the response window is checked first
    ],
)
def test_set_dispute_windows_out_of_bounds_reverts(
    factory: OrderFactory, response: int, arbitration: int, bad: int
) -> None:
    with reverts("InvalidDuration", seconds_=bad):
        factory.admin("setDisputeWindows", response, arbitration)


# ------------------------------------------------------------------ meta-evidence


def test_set_meta_evidence_emits_the_next_id(factory: OrderFactory) -> None:
    assert _config(factory)["meta_evidence_id"] == 0
    res = factory.admin("setMetaEvidence", META_URI)
    assert [e.name for e in res.events] == ["MetaEvidence"]
    assert res.events[0].args == {"_metaEvidenceID": 1, "_evidence": META_URI}
    res = factory.admin("setMetaEvidence", "ipfs://v3")
    assert res.events[0].args == {"_metaEvidenceID": 2, "_evidence": "ipfs://v3"}
    assert _config(factory)["meta_evidence_id"] == 2
    assert factory.fund().terms.meta_evidence_id == 2  # locked into the order's terms at funding


# ------------------------------------------------------------------ pause


def test_pause_and_unpause(factory: OrderFactory) -> None:
    admin = factory.actors.admin.address
    res = factory.admin("pause")
    assert [e.name for e in res.events] == ["Paused"]
    assert res.events[0].args == {"account": admin}
    assert factory.chain.call(factory.escrow.contract.functions.paused()) is True
    with reverts("EnforcedPause"):
        factory.fund()
    res = factory.admin("unpause")
    assert [e.name for e in res.events] == ["Unpaused"]
    assert res.events[0].args == {"account": admin}
    assert factory.chain.call(factory.escrow.contract.functions.paused()) is False
    factory.fund()


def test_pause_twice_reverts(factory: OrderFactory) -> None:
    factory.admin("pause")
    with reverts("EnforcedPause"):
        factory.admin("pause")


def test_unpause_when_not_paused_reverts(factory: OrderFactory) -> None:
    with reverts("ExpectedPause"):
        factory.admin("unpause")


# ------------------------------------------------------------------ admin changes never alter an open order


def _change_everything(factory: OrderFactory) -> None:
    """Every admin setting that applies to new orders, changed as far as its bound allows."""
    a = factory.actors
    factory.admin("setCommission", 3000)
    factory.admin("setTaxRecipient", a.tax.address, 0)
    factory.admin("setDisputeWindows", HOUR, HOUR + 1)
    factory.admin("setThreshold", 3)
    factory.admin("setToken", factory.token.address, False)
    factory.admin("setMetaEvidence", META_URI)
    factory.admin("pause")


def test_open_order_releases_with_its_funded_terms(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund(amount=1_000_000_007)
    before = factory.escrow.commitment(order.order_id)
    _change_everything(factory)
    assert factory.escrow.commitment(order.order_id) == before

    order = factory.deliver(order)  # one oracle still suffices: k=1 was locked at funding
    assert order.decoded.release_at == factory.chain.now() + HOLD
    factory.chain.advance_time(HOLD)
    factory.escrow.release([order], a.stranger)
    split = release_split(1_000_000_007, 200, 1000)
    token = factory.token.address
    assert factory.escrow.credit(token, a.seller.address) == split.seller_net
    assert factory.escrow.credit(token, a.treasury.address) == split.commission
    assert factory.escrow.credit(token, a.tax.address) == split.tax
    factory.escrow.withdraw(token, a.seller, split.seller_net)  # a disallowed token still pays out
    assert factory.balance(a.seller.address) == split.seller_net


def test_open_dispute_keeps_its_funded_windows(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    _change_everything(factory)
    order = factory.dispute(order)
    disputed_at = order.decoded.disputed_at
    assert disputed_at is not None
    factory.chain.set_next_block_time(
        disputed_at + HOUR + 2
    )  # past the new 1-hour window, inside the old one
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=disputed_at + 3 * DAY):
        factory.escrow.timeout_refund(order, a.stranger)
    factory.escrow.submit_evidence(order, a.seller, content_hash(b"reply"))
    order = factory.current(order)
    assert order.decoded.responded
    factory.chain.set_next_block_time(disputed_at + 14 * DAY)
    res = factory.escrow.rule(order, a.arbitrator, 3_333, content_hash(b"split"))
    (ev,) = res.named("DisputeResolved")
    refund = order.terms.amount * 3_333 // 10_000
    gross = order.terms.amount - refund
    assert (ev.args["buyerRefund"], ev.args["commission"], ev.args["tax"]) == (
        refund,
        gross * 200 // 10_000,
        gross * 1000 // 10_000,
    )


def test_open_order_times_out_with_its_funded_windows(factory: OrderFactory) -> None:
    order = factory.in_status(Status.DISPUTED)
    _change_everything(factory)
    disputed_at = order.decoded.disputed_at
    assert disputed_at is not None
    factory.chain.set_next_block_time(disputed_at + 3 * DAY + 1)
    res = factory.escrow.timeout_refund(order, factory.actors.stranger)
    assert res.named("OrderRefunded")[0].args["reason"] == RefundReason.RESPONSE_TIMEOUT


def test_raising_threshold_does_not_hold_back_an_open_order(factory: OrderFactory) -> None:
    order = factory.fund()
    factory.admin("setThreshold", 3)
    order = factory.ship(order)
    assert order.status == Status.SHIPPED
    later = factory.fund()
    assert later.terms.threshold == 3
