"""The relayer's nonce allocator: kept in the database, reconciled with the chain, safe across processes."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Intent, KeyValue
from app.db.session import make_engine, make_session_factory, transaction
from app.services.outbox import nonce_manager
from app.services.runtime import Runtime


def record(s: Session, sender: str, nonce: int, status: str = "sent") -> None:
    """What the relayer writes in the allocating transaction: the signed transaction on its intent."""
    tag = uuid.uuid4().hex
    s.add(
        Intent(
            kind="release",
            order_id="0x" + tag.ljust(64, "0"),
            intent_hash="0x" + tag.ljust(64, "1"),
            payload={},
            status=status,
            sender=sender,
            nonce=nonce,
            tx_hash="0x" + tag.ljust(64, "2"),
            raw_tx=b"raw",
        )
    )


def allocate_and_record(rt: Runtime, sender: str) -> int:
    on_chain = nonce_manager.chain_nonce(rt.chain, sender)  # before the transaction: no RPC inside it
    with transaction(rt.db) as s:
        n = nonce_manager.allocate(s, sender, on_chain)
        record(s, sender, n)
        return n


def test_allocations_count_up_from_the_chain_and_survive_a_restart(runtime: Runtime) -> None:
    sender = runtime.relayer.address
    start = runtime.chain.nonce(sender)
    assert [allocate_and_record(runtime, sender) for _ in range(3)] == [start, start + 1, start + 2]

    engine = make_engine(runtime.settings.db_url)  # another process, after a restart
    try:
        with transaction(make_session_factory(engine)) as s:
            assert nonce_manager.peek(s, sender) == start + 3
            assert nonce_manager.allocate(s, sender, start) == start + 3
    finally:
        engine.dispose()


def test_a_rolled_back_allocation_is_not_used_up(runtime: Runtime) -> None:
    sender = runtime.relayer.address
    start = runtime.chain.nonce(sender)
    with pytest.raises(RuntimeError), transaction(runtime.db) as s:
        assert nonce_manager.allocate(s, sender, start) == start
        raise RuntimeError("the signing step failed")
    assert allocate_and_record(runtime, sender) == start


def test_the_chain_ahead_of_the_database_wins(runtime: Runtime) -> None:
    sender = runtime.relayer.address
    first = allocate_and_record(runtime, sender)
    # three transactions from the same key that the database never saw
    token = runtime.chain.contract("TestUSD", next(iter(runtime.tokens)))
    runtime.chain.reset_nonce(sender)
    for _ in range(3):
        runtime.chain.send(token.functions.faucet(sender, 1), runtime.relayer)
    on_chain = nonce_manager.chain_nonce(runtime.chain, sender)
    with transaction(runtime.db) as s:
        assert nonce_manager.sync(s, sender, on_chain) == on_chain
    assert allocate_and_record(runtime, sender) == first + 3 == runtime.chain.nonce(sender)


def test_a_gap_below_recorded_transactions_is_handed_out_first(runtime: Runtime) -> None:
    sender = runtime.relayer.address
    base = runtime.chain.nonce(sender)
    with transaction(runtime.db) as s:
        record(s, sender, base, status="failed")  # abandoned: the node refused it for good
        record(s, sender, base + 1)  # recorded, not broadcast yet
        record(s, sender, base + 2)
        s.add(KeyValue(key=nonce_manager.nonce_key(sender), value={"next": base + 3}))
    assert allocate_and_record(runtime, sender) == base  # else base + 1 and + 2 would wait forever
    assert allocate_and_record(runtime, sender) == base + 3  # base + 1, + 2 are held by their intents


def test_a_stale_chain_nonce_never_hands_out_a_mined_nonce_again(runtime: Runtime) -> None:
    """The chain's nonce is read before the allocating transaction, so it may lag: transactions of ours mined
    (and settled by another relayer) in between are not gaps."""
    sender = runtime.relayer.address
    stale = runtime.chain.nonce(sender)
    with transaction(runtime.db) as s:
        record(s, sender, stale, status="confirmed")
        record(s, sender, stale + 1, status="failed")  # mined, reverted: its nonce is used all the same
        for it in s.scalars(select(Intent).where(Intent.sender == sender)):
            it.block_number = 1
        s.add(KeyValue(key=nonce_manager.nonce_key(sender), value={"next": stale + 2}))
    with transaction(runtime.db) as s:
        assert nonce_manager.allocate(s, sender, stale) == stale + 2


def test_concurrent_allocators_never_hand_out_the_same_nonce(runtime: Runtime) -> None:
    """Two workers, each with its own engine (as two processes would have), allocate at once."""
    sender = runtime.relayer.address
    first = runtime.chain.nonce(sender)  # nobody else sends from the key: the database is under test
    got: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)
    lock = threading.Lock()

    def worker() -> None:
        engine = make_engine(runtime.settings.db_url)
        factory = make_session_factory(engine)
        try:
            barrier.wait()
            for _ in range(10):
                with transaction(factory) as s:
                    n = nonce_manager.allocate(s, sender, first)
                    record(s, sender, n)
                with lock:
                    got.append(n)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(got) == list(range(first, first + 20))
