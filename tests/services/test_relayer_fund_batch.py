"""Batched funding: pending ``fund`` intents go on chain many orders a transaction. The contract's ``fund`` is
all-or-nothing, so a refused batch is checked entry by entry: only the failing entries fail, with their own
error, and the rest go out together; a permit leads its batch with its buyer's cart behind it (one permit,
one transfer); a batch reverted on chain is checked again; a crash re-broadcasts the recorded batch."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from app.chain.escrow import OrderAuthorization
from app.db.session import transaction
from app.services.outbox.relayer import CONFIRMED, FAILED, PENDING, SENT, relay, submit
from app.services.runtime import Runtime
from tests.services.test_relayer_support import Crash, Svc, hex32, spy_broadcasts, write_sites

SMALL = 1_000_000  # 1 tUSD an order


def put(rt: Runtime, kind: str, payload: dict[str, Any]) -> str:
    with transaction(rt.db) as s:
        intent = submit(s, kind, payload)
        s.flush()
        return intent.id


def signed(
    svc: Svc, auth: OrderAuthorization, buyer: str = "buyer", *, permit_value: int | None = None
) -> dict[str, Any]:
    """``buyer``'s fund payload for ``auth``, relying on an allowance or with a permit of that value."""
    sig = svc.rt.escrow.sign_authorization(svc[buyer].key, auth)
    authorization = {k: hex32(v) if isinstance(v, bytes) else v for k, v in auth.message().items()}
    authorization["amount"] = str(auth.amount)
    body: dict[str, Any] = {"authorization": authorization, "signature": hex32(sig), "permit": None}
    if permit_value is not None:
        value, deadline, v, r, s = svc.rt.escrow.sign_permit(
            svc[buyer], svc.token, permit_value, auth.valid_until
        )
        body["permit"] = {
            "value": str(value),
            "deadline": str(deadline),
            "v": v,
            "r": hex32(r),
            "s": hex32(s),
        }
    return body


def allowance(svc: Svc, buyer: str, amount: int) -> None:
    """``buyer`` holds ``amount`` and has approved the escrow for it."""
    svc.mint(svc[buyer].address, amount)
    svc.rt.chain.send(svc.token.functions.approve(svc.rt.escrow.address, amount), svc[buyer])


def order_for(svc: Svc, buyer: str = "buyer", **overrides: Any) -> OrderAuthorization:
    return svc.auth(buyer=svc[buyer].address, amount=SMALL, **overrides)


def events(rt: Runtime, tx_hash: str) -> list[Any]:
    receipt = rt.chain.receipt(tx_hash)
    assert receipt is not None and int(receipt["status"]) == 1
    return rt.chain.events(receipt)


def funded_in(rt: Runtime, tx_hash: str) -> list[str]:
    """Order ids funded by a transaction, in log order."""
    return ["0x" + bytes(e.args["orderId"]).hex() for e in events(rt, tx_hash) if e.name == "OrderFunded"]


def pulls(svc: Svc, tx_hash: str) -> list[tuple[str, int]]:
    """Token transfers into the escrow made by a transaction: (from, value)."""
    return [
        (e.args["from"], int(e.args["value"]))
        for e in events(svc.rt, tx_hash)
        if e.name == "Transfer" and e.address == svc.token.address and e.args["to"] == svc.rt.escrow.address
    ]


def test_twenty_allowance_fundings_go_out_in_one_transaction(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    allowance(svc, "buyer", 15 * SMALL)
    allowance(svc, "buyer2", 5 * SMALL)
    buyers = ["buyer", "buyer2", "buyer", "buyer"] * 5  # interleaved: the batch is sorted into two runs
    auths = [order_for(svc, b) for b in buyers]
    ids = [put(runtime, "fund", signed(svc, a, b)) for a, b in zip(auths, buyers, strict=True)]
    sent = spy_broadcasts(runtime, monkeypatch)

    report = relay(runtime)

    intents = [svc.intent(i) for i in ids]
    assert {(i.status, i.error) for i in intents} == {(CONFIRMED, None)}
    assert len(sent) == 1 and (report.transactions, report.sent, report.confirmed) == (1, 20, 20)
    (tx_hash,) = {i.tx_hash for i in intents}
    assert Counter(funded_in(runtime, tx_hash)) == Counter(hex32(a.order_id) for a in auths)
    # one pull per buyer: the contract's run logic sees each buyer's orders consecutively
    assert sorted(pulls(svc, tx_hash)) == sorted(
        [(svc["buyer"].address, 15 * SMALL), (svc["buyer2"].address, 5 * SMALL)]
    )
    assert all(runtime.escrow.load_order(a.order_id) is not None for a in auths)


def test_orders_that_pass_alone_but_not_together_are_split_and_the_excess_fails(runtime: Runtime) -> None:
    svc = Svc(runtime)
    allowance(svc, "buyer", 3 * SMALL)  # enough for each order alone, for three of the five together
    ids = [put(runtime, "fund", signed(svc, order_for(svc))) for _ in range(5)]

    relay(runtime)

    outcome = Counter((svc.intent(i).status, svc.intent(i).error_name) for i in ids)
    assert outcome == {(CONFIRMED, None): 3, (FAILED, "ERC20InsufficientAllowance"): 2}


def test_a_batch_setting_caps_the_orders_per_transaction(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    monkeypatch.setattr(runtime.settings, "fund_batch", 4)
    allowance(svc, "buyer", 10 * SMALL)
    ids = [put(runtime, "fund", signed(svc, order_for(svc))) for _ in range(10)]

    report = relay(runtime)

    intents = [svc.intent(i) for i in ids]
    assert {i.status for i in intents} == {CONFIRMED} and report.transactions == 3
    assert sorted(Counter(i.tx_hash for i in intents).values()) == [2, 4, 4]


def test_bad_entries_fail_alone_with_their_error_and_the_rest_is_funded_in_one_transaction(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    allowance(svc, "buyer", 5 * SMALL)
    svc.mint(svc["buyer2"].address, SMALL)  # holds the tokens, approved nothing
    now = runtime.chain.now()
    good = [order_for(svc) for _ in range(3)]
    expired = order_for(svc, valid_until=now - 1)
    forged = order_for(svc)
    poor = order_for(svc, "buyer2")
    payloads = [signed(svc, a) for a in good[:2]]
    payloads += [
        signed(svc, expired),
        {**signed(svc, forged), "signature": signed(svc, forged, "merchant")["signature"]},
    ]
    payloads += [signed(svc, poor, "buyer2"), signed(svc, good[2])]
    ids = [put(runtime, "fund", p) for p in payloads]
    sent = spy_broadcasts(runtime, monkeypatch)

    report = relay(runtime)

    by_id = {i: svc.intent(i) for i in ids}
    outcome = {i: (it.status, it.error_name) for i, it in by_id.items()}
    assert outcome == {
        ids[0]: (CONFIRMED, None),
        ids[1]: (CONFIRMED, None),
        ids[2]: (FAILED, "SignatureExpired"),
        ids[3]: (FAILED, "InvalidSignature"),
        ids[4]: (FAILED, "ERC20InsufficientAllowance"),
        ids[5]: (CONFIRMED, None),
    }
    assert len(sent) == 1 and report.transactions == 1 and report.failed == 3
    (tx_hash,) = {by_id[i].tx_hash for i in (ids[0], ids[1], ids[5])}
    assert sorted(funded_in(runtime, tx_hash)) == sorted(hex32(a.order_id) for a in good)
    assert all(by_id[i].tx_hash is None for i in ids[2:5])
    for bad in (expired, forged, poor):
        assert runtime.escrow.load_order(bad.order_id) is None


def test_a_permit_leads_its_batch_with_its_buyers_cart_behind_it(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    allowance(svc, "buyer", 3 * SMALL)
    svc.mint(svc["buyer2"].address, 3 * SMALL)  # no allowance: the cart's permit covers its three orders
    plain = [put(runtime, "fund", signed(svc, order_for(svc))) for _ in range(2)]
    cart = [
        order_for(svc, "buyer2", seller=svc[seller].address) for seller in ("merchant", "customs", "oracle")
    ]
    cart_ids = [
        put(runtime, "fund", signed(svc, cart[1], "buyer2")),
        put(runtime, "fund", signed(svc, cart[2], "buyer2")),
    ]
    lead = put(
        runtime, "fund", signed(svc, cart[0], "buyer2", permit_value=3 * SMALL)
    )  # filed last, goes first
    plain.append(put(runtime, "fund", signed(svc, order_for(svc))))
    sent = spy_broadcasts(runtime, monkeypatch)

    report = relay(runtime)

    assert {svc.intent(i).status for i in [*plain, *cart_ids, lead]} == {CONFIRMED}
    assert len(sent) == 2 and report.transactions == 2
    cart_tx = svc.intent(lead).tx_hash
    assert cart_tx is not None and {svc.intent(i).tx_hash for i in cart_ids} == {cart_tx}
    assert {svc.intent(i).tx_hash for i in plain} - {cart_tx} == {svc.intent(plain[0]).tx_hash}
    assert funded_in(runtime, cart_tx)[0] == hex32(cart[0].order_id)  # the permit's order is first
    assert sorted(funded_in(runtime, cart_tx)) == sorted(hex32(a.order_id) for a in cart)
    assert pulls(svc, cart_tx) == [(svc["buyer2"].address, 3 * SMALL)]  # one permit, one transfer


def test_a_bad_order_in_a_cart_fails_alone_and_the_cart_keeps_its_permit(runtime: Runtime) -> None:
    svc = Svc(runtime)
    svc.mint(svc["buyer2"].address, 3 * SMALL)
    first = order_for(svc, "buyer2")
    late = order_for(svc, "buyer2", valid_until=runtime.chain.now() - 1)
    last = order_for(svc, "buyer2", seller=svc["customs"].address, tax_bps=0, tax_recipient="0x" + "00" * 20)
    lead = put(runtime, "fund", signed(svc, first, "buyer2", permit_value=3 * SMALL))
    bad, follower = (
        put(runtime, "fund", signed(svc, late, "buyer2")),
        put(runtime, "fund", signed(svc, last, "buyer2")),
    )

    relay(runtime)

    assert (svc.intent(bad).status, svc.intent(bad).error_name) == (FAILED, "SignatureExpired")
    assert svc.intent(lead).status == svc.intent(follower).status == CONFIRMED
    assert svc.intent(lead).tx_hash == svc.intent(follower).tx_hash
    assert pulls(svc, str(svc.intent(lead).tx_hash)) == [(svc["buyer2"].address, 2 * SMALL)]


def test_a_crash_before_a_batch_broadcast_rebroadcasts_it_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    allowance(svc, "buyer", 5 * SMALL)
    auths = [order_for(svc) for _ in range(5)]
    ids = [put(runtime, "fund", signed(svc, a)) for a in auths]
    before = runtime.chain.nonce(runtime.relayer.address, "latest")

    def killed(raw: bytes) -> str:
        raise Crash("SIGKILL")

    monkeypatch.setattr(runtime.chain, "broadcast", killed)
    with pytest.raises(Crash):
        relay(runtime)
    monkeypatch.undo()

    recorded = [svc.intent(i) for i in ids]
    assert {(i.status, i.nonce) for i in recorded} == {(SENT, before)}
    assert len({(i.tx_hash, bytes(i.raw_tx or b"")) for i in recorded}) == 1
    assert runtime.chain.nonce(runtime.relayer.address, "latest") == before
    sent = spy_broadcasts(runtime, monkeypatch)

    report = relay(runtime)
    again = relay(runtime)

    assert [bytes(raw) for raw in sent] == [recorded[0].raw_tx]
    assert (report.rebroadcast, report.transactions, report.confirmed) == (1, 0, 5)
    assert (again.sent, again.rebroadcast, again.transactions) == (0, 0, 0)
    assert {(svc.intent(i).status, svc.intent(i).tx_hash) for i in ids} == {(CONFIRMED, recorded[0].tx_hash)}
    assert runtime.chain.nonce(runtime.relayer.address, "latest") == before + 1
    logs = runtime.chain.get_events(
        runtime.escrow.address, runtime.deployment_block, runtime.chain.block_number()
    )
    funded = Counter("0x" + bytes(e.args["orderId"]).hex() for e in logs if e.name == "OrderFunded")
    assert funded == Counter(hex32(a.order_id) for a in auths)  # one OrderFunded per order


def test_a_batch_reverted_on_chain_is_checked_again_and_only_the_front_run_order_fails(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    allowance(svc, "buyer", 4 * SMALL)
    auths = [order_for(svc) for _ in range(4)]
    ids = [put(runtime, "fund", signed(svc, a)) for a in auths]
    original = runtime.chain.broadcast

    def front_run_then_broadcast(raw: bytes) -> str:
        monkeypatch.setattr(runtime.chain, "broadcast", original)
        # the buyer funds one of the orders itself between the relayer's check and its transaction
        sig = runtime.escrow.sign_authorization(svc["buyer"].key, auths[2])
        runtime.escrow.fund([auths[2]], [sig], svc["buyer"])
        return original(raw)

    monkeypatch.setattr(runtime.chain, "broadcast", front_run_then_broadcast)
    first = relay(runtime)

    reverted = [svc.intent(i) for i in ids]
    assert first.mined == 4 and first.confirmed == 0
    assert {(i.status, i.tx_hash, i.attempts) for i in reverted} == {(PENDING, None, 1)}
    later = max(i.next_attempt_at for i in reverted) + timedelta(seconds=1)

    second = relay(runtime, now=later)

    outcome = [(svc.intent(i).status, svc.intent(i).error_name) for i in ids]
    assert outcome[2] == (FAILED, "OrderAlreadyExists")
    assert [outcome[i] for i in (0, 1, 3)] == [(CONFIRMED, None)] * 3 and second.transactions == 1
    assert all(runtime.escrow.load_order(a.order_id) is not None for a in auths)


def test_an_order_filed_twice_with_different_payloads_is_funded_once(runtime: Runtime) -> None:
    svc = Svc(runtime)
    allowance(svc, "buyer", 3 * SMALL)
    auth = order_for(svc)
    first = put(runtime, "fund", signed(svc, auth))
    second = put(runtime, "fund", signed(svc, auth, permit_value=SMALL))  # same order, another intent
    other = put(runtime, "fund", signed(svc, order_for(svc)))

    report = relay(runtime)
    relay(runtime)

    assert report.deferred >= 1 and svc.intent(other).status == CONFIRMED
    outcomes = {(svc.intent(i).status, svc.intent(i).error_name) for i in (first, second)}
    assert outcomes == {(CONFIRMED, None), (FAILED, "OrderAlreadyExists")}


def test_allowance_orders_are_pulled_before_a_permit_that_resets_the_allowance(runtime: Runtime) -> None:
    svc = Svc(runtime)
    allowance(svc, "buyer", SMALL)  # enough for the order funded without a permit
    svc.mint(svc["buyer"].address, SMALL)  # and the balance for the second
    plain = put(runtime, "fund", signed(svc, order_for(svc)))
    # a permit for its own order only: it sets the allowance to SMALL, wiping the one the first order needs
    lead = put(runtime, "fund", signed(svc, order_for(svc), permit_value=SMALL))

    relay(runtime)

    assert svc.intent(plain).status == CONFIRMED, svc.intent(plain).error
    assert svc.intent(lead).status == CONFIRMED, svc.intent(lead).error


def test_a_pass_records_its_transactions_in_one_write_and_settles_them_in_one(runtime: Runtime) -> None:
    """Two fundings with permits (two transactions: a permit leads its own batch) are signed at consecutive
    nonces and recorded in one write transaction before either is broadcast; their receipts are settled in
    one write transaction too (a disk sync per pass, not per transaction)."""
    svc = Svc(runtime)
    ids = []
    for buyer in ("buyer", "buyer2"):
        svc.mint(svc[buyer].address, SMALL)
        ids.append(put(runtime, "fund", signed(svc, order_for(svc, buyer), buyer, permit_value=SMALL)))

    with write_sites() as sites:
        report = relay(runtime)

    intents = [svc.intent(i) for i in ids]
    assert {(i.status, i.error) for i in intents} == {(CONFIRMED, None)}
    assert report.transactions == 2 and len({i.tx_hash for i in intents}) == 2
    nonces = sorted(int(i.nonce) for i in intents if i.nonce is not None)
    assert len(nonces) == 2 and nonces[1] == nonces[0] + 1
    assert sites.count("app.services.outbox.relayer.send_all") == 1, sites
    assert sites.count("app.services.outbox.relayer.settle_many") == 1, sites
