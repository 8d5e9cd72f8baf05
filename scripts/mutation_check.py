#!/usr/bin/env python3
"""Mutation check: do the tests notice when the escrow's rules are broken?

Each mutant is one small, hand-made text substitution in a copy of ``contracts/`` (a dropped tax leg, ``<``
for ``<=`` at a window's edge, a skipped signer check, ...). The copy is compiled into its own build folder,
never ``contracts/build``, and a chosen subset of the Python tests runs against it through the environment
override ``TRADEGUARD_CONTRACTS_ROOT`` (read by ``app.chain.compiler``). A mutant is *killed* when a test
fails.

Before the mutants, the unmutated copy goes through the same pipeline and must pass: otherwise the score would
measure a broken harness. Compiling the next mutant overlaps with testing the current one.

    .venv/bin/python scripts/mutation_check.py                 # all mutants, default test subset
    .venv/bin/python scripts/mutation_check.py --list          # names and substitutions
    .venv/bin/python scripts/mutation_check.py --only split_drops_tax --tests tests/contracts/test_release.py

Prints one JSON document on stdout: mutants, killed, survived (names), score = killed / mutants tested, and
per-mutant details (status, the first failing test, seconds). A test run that errors out or times out is not
a kill. Progress goes to stderr. Exit status 0 unless the baseline fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.chain import compiler  # noqa: E402

ESCROW = "contracts/src/TradeGuardEscrow.sol"
# Fast subset: the smoke test, the adversarial-token tests (fee-on-transfer, blacklists, re-entrancy: what the
# model test cannot see), then the stateful model test (~1 min in its CI profile).
DEFAULT_TESTS = (
    "tests/contracts/test_smoke_lifecycle.py",
    "tests/contracts/test_token_doubles.py",
    "tests/contracts/test_model_stateful.py::test_model_agrees_with_contract",
)
TEST_TIMEOUT = 900


@dataclass(frozen=True)
class Mutant:
    """One substitution: ``old`` must occur exactly once in ``path``."""

    name: str
    old: str
    new: str
    path: str = ESCROW


MUTANTS: tuple[Mutant, ...] = (
    # money
    Mutant("split_drops_tax", "tax = gross * taxBps / BPS;", "tax = 0;"),
    Mutant(
        "refund_charges_commission",
        "_credits[t.token][t.buyer] += t.amount;",
        "_credits[t.token][t.buyer] += t.amount - t.amount * t.commissionBps / BPS;\n"
        "        _credits[t.token][_TREASURY] += t.amount * t.commissionBps / BPS;",
    ),
    Mutant(
        "ruling_refund_rounds_up",
        "uint256 refund = t.amount * shareBps / BPS;",
        "uint256 refund = (t.amount * shareBps + BPS - 1) / BPS;",
    ),
    Mutant(
        "batch_mixes_sellers",
        "if (p.seller != t.seller) {\n            _flushSeller(p);\n",
        "if (p.seller != t.seller) {\n",
    ),
    Mutant("withdraw_one_more_than_credit", "amount > available)", "amount > available + 1)"),
    Mutant(
        "balance_delta_unchecked",
        "if (received != amount) revert TokenShortfall(token, amount, received);",
        "",
    ),
    # timers
    Mutant(
        "release_edge_lte",
        "if (block.timestamp < releaseAt) return",
        "if (block.timestamp <= releaseAt) return",
    ),
    Mutant(
        "dispute_at_release_at",
        "if (block.timestamp >= releaseAt) revert DeadlinePassed(id, releaseAt);",
        "if (block.timestamp > releaseAt) revert DeadlinePassed(id, releaseAt);",
    ),
    Mutant(
        "ship_timeout_off_by_one",
        "(RefundReason.ShipTimeout, terms.shipBy + ext)",
        "(RefundReason.ShipTimeout, terms.shipBy + ext - 1)",
    ),
    Mutant(
        "attest_ship_by_off_by_one",
        "if (st == OrderState.FUNDED) deadline = t.shipBy;",
        "if (st == OrderState.FUNDED) deadline = t.shipBy - 1;",
    ),
    Mutant(
        "rule_after_deadline",
        "if (block.timestamp > deadline) revert DeadlinePassed(id, deadline);",
        "",
    ),
    Mutant(
        "late_seller_answer_counts",
        "\n                && block.timestamp <= s.anchor() + s.elapsedFrozen(block.timestamp)"
        " + t.responseSeconds",
        "",
    ),
    Mutant(
        "response_timeout_ignores_answer",
        "if (!state.responded() && block.timestamp > responseDeadline) {",
        "if (block.timestamp > responseDeadline) {",
    ),
    # freezes
    Mutant(
        "release_ignores_freeze",
        "if (s.isFrozen(block.timestamp)) return abi.encodeWithSelector(OrderIsFrozen.selector, id, "
        "s.frozenUntil());",
        "",
    ),
    Mutant(
        "attest_ignores_freeze",
        "if (s.isFrozen(block.timestamp)) {\n"
        "            return (abi.encodeWithSelector(OrderIsFrozen.selector, id, s.frozenUntil()), false);\n"
        "        }",
        "",
    ),
    Mutant(
        "unfreeze_keeps_whole_extension",
        "state.frozenSeconds() - (until - block.timestamp)",
        "state.frozenSeconds()",
    ),
    # (Starting the hold at block time instead of after a freeze would be an equivalent mutant since attest()
    # refuses frozen orders; a dispute, though, may open during a freeze and its timers must start after it.)
    Mutant(
        "dispute_timers_start_during_freeze",
        "withAnchor(s.timerStart(block.timestamp) - s.frozenSeconds())",
        "withAnchor(block.timestamp - s.frozenSeconds())",
    ),
    # A freeze must not reopen a window that closed before it began (counting the whole freeze would).
    Mutant(
        "dispute_window_counts_whole_freeze",
        "uint256 ext = s.elapsedFrozen(block.timestamp);",
        "uint256 ext = s.frozenSeconds();",
    ),
    Mutant(
        "response_window_counts_whole_freeze",
        "s.anchor() + s.elapsedFrozen(block.timestamp) + t.responseSeconds",
        "s.anchor() + s.frozenSeconds() + t.responseSeconds",
    ),
    Mutant("freeze_cap_per_freeze", "total > MAX_FREEZE_SECONDS", "duration > MAX_FREEZE_SECONDS"),
    # oracles and signatures
    Mutant("oracle_distinctness_skipped", "if (bits & bit != 0) return", "if (false) return"),
    Mutant(
        "removed_oracle_votes_count",
        "if (o.active && o.index == i && o.activeFrom <= fundedAt) ++count;",
        "++count;",
    ),
    Mutant("pending_oracle_counts", "if (!o.active || o.activeFrom > t.fundedAt) {", "if (!o.active) {"),
    Mutant("threshold_off_by_one", "if (count < t.threshold) {", "if (count + 1 < t.threshold) {"),
    Mutant(
        "fund_threshold_unchecked",
        "if (c.threshold > usable) revert InvalidThreshold(c.threshold, usable);",
        "",
    ),
    Mutant("event_time_unchecked", "if (a.eventTime > block.timestamp) {", "if (false) {"),
    Mutant("signer_check_skipped", "if (signer != expected) revert InvalidSignature(expected, signer);", ""),
    Mutant(
        "commitment_check_skipped",
        "if (c != _commit(t, s)) return abi.encodeWithSelector(OrderDataMismatch.selector, id);",
        "",
    ),
    Mutant("evidence_replay_allowed", "if (_usedDigests[digest]) revert SignatureReplayed(digest);", ""),
    # who may act
    Mutant(
        "confirm_from_funded",
        "if (st != OrderState.SHIPPED && st != OrderState.DELIVERED) revert InvalidStatus",
        "if (st != OrderState.FUNDED && st != OrderState.SHIPPED && st != OrderState.DELIVERED)"
        " revert InvalidStatus",
    ),
    Mutant("seller_refund_by_anyone", "if (msg.sender != terms.seller) revert Unauthorized(msg.sender);", ""),
)


@dataclass
class Outcome:
    """What happened to one mutant."""

    name: str
    status: str  # killed | survived | stillborn | not_applicable | error | timeout
    killed_by: str | None = None
    seconds: float = 0.0
    detail: str = ""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_tree(mutant: Mutant | None) -> Path:
    """A temporary project root with a (mutated) copy of contracts/src and contracts/test."""
    tree = Path(tempfile.mkdtemp(prefix=f"tg-mutant-{mutant.name if mutant else 'baseline'}-"))
    for rel in compiler.SOURCE_DIRS:
        if (ROOT / rel).is_dir():
            shutil.copytree(ROOT / rel, tree / rel)
    (tree / "node_modules").symlink_to(ROOT / "node_modules")
    if mutant is not None:
        target = tree / mutant.path
        text = target.read_text(encoding="utf-8")
        count = text.count(mutant.old)
        if count != 1:
            raise LookupError(f"pattern found {count} times in {mutant.path}")
        target.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")
    return tree


def build(mutant: Mutant | None) -> tuple[Path | None, Outcome | None]:
    """Copy, mutate and compile; an Outcome instead of a tree when the mutant cannot be tested."""
    name = mutant.name if mutant else "baseline"
    try:
        tree = make_tree(mutant)
    except LookupError as exc:
        return None, Outcome(name, "not_applicable", detail=str(exc))
    try:
        compiler.compile_contracts(root=tree, build_dir=tree / compiler.BUILD_DIR)
    except compiler.CompilerError as exc:
        shutil.rmtree(tree, ignore_errors=True)
        return None, Outcome(name, "stillborn", detail=str(exc).splitlines()[0])
    return tree, None


_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def run_tests(name: str, tree: Path, tests: list[str], timeout: int) -> Outcome:
    """Run the test subset against the tree's build; rc 1 (a test failed) kills the mutant."""
    env = dict(os.environ)
    env.update(
        {
            compiler.ENV_CONTRACTS_ROOT: str(tree),
            "HYPOTHESIS_PROFILE": env.get("HYPOTHESIS_PROFILE", "ci"),
            # Failing examples of mutants must not land in the project's example database.
            "HYPOTHESIS_STORAGE_DIRECTORY": str(tree / ".hypothesis"),
        }
    )
    env.pop(compiler.ENV_BUILD_DIR, None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return Outcome(name, "timeout", seconds=time.monotonic() - started)
    seconds = time.monotonic() - started
    if proc.returncode == 0:
        return Outcome(name, "survived", seconds=seconds)
    failed = _FAILED.search(proc.stdout)
    if proc.returncode == 1:
        return Outcome(name, "killed", killed_by=failed.group(1) if failed else None, seconds=seconds)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    return Outcome(name, "error", seconds=seconds, detail=" | ".join(tail))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS), help="pytest targets to run")
    parser.add_argument("--only", nargs="+", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--skip-baseline", action="store_true", help="do not check the unmutated copy first")
    parser.add_argument("--keep", action="store_true", help="keep the mutated trees (paths on stderr)")
    parser.add_argument("--timeout", type=int, default=TEST_TIMEOUT, help="seconds per test run")
    args = parser.parse_args(argv)

    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list:
        for m in mutants:
            print(f"{m.name}: {m.path}\n  - {m.old!r}\n  + {m.new!r}")
        return 0
    unknown = set(args.only or ()) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutants: {', '.join(sorted(unknown))}")

    started = time.monotonic()
    if not args.skip_baseline:
        tree, failed = build(None)
        if failed is not None:
            log(f"baseline does not compile: {failed.detail}")
            return 2
        assert tree is not None
        base = run_tests("baseline", tree, args.tests, args.timeout)
        shutil.rmtree(tree, ignore_errors=True)
        if base.status != "survived":
            why = base.killed_by or base.detail
            log(f"baseline: the tests fail on the unmutated contracts ({base.status} {why})")
            return 2
        log(f"baseline: tests pass on the unmutated copy in {base.seconds:.0f}s")

    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=1) as builder:
        builds: list[Future[tuple[Path | None, Outcome | None]]] = [builder.submit(build, m) for m in mutants]
        for mutant, pending in zip(mutants, builds, strict=True):
            tree, outcome = pending.result()
            if tree is not None:
                outcome = run_tests(mutant.name, tree, args.tests, args.timeout)
                if args.keep:
                    log(f"  kept {tree}")
                else:
                    shutil.rmtree(tree, ignore_errors=True)
            assert outcome is not None
            outcomes.append(outcome)
            log(f"{mutant.name:34} {outcome.status:14} {outcome.killed_by or outcome.detail}")

    tested = [o for o in outcomes if o.status not in ("stillborn", "not_applicable")]
    killed = [o for o in tested if o.status == "killed"]
    report = {
        "mutants": len(tested),
        "killed": len(killed),
        "survived": [o.name for o in tested if o.status == "survived"],
        "errors": {o.name: f"{o.status}: {o.detail}" for o in tested if o.status in ("error", "timeout")},
        "score": round(len(killed) / len(tested), 3) if tested else None,
        "not_tested": {o.name: f"{o.status}: {o.detail}" for o in outcomes if o not in tested},
        "tests": args.tests,
        "seconds": round(time.monotonic() - started),
        "details": [
            {
                "name": o.name,
                "status": o.status,
                "killed_by": o.killed_by,
                "seconds": round(o.seconds, 1),
                "detail": o.detail,
            }
            for o in outcomes
        ],
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
