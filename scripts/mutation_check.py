#!/usr/bin/env python3
"""Mutation check: do the tests notice when the escrow's rules are broken?

Mutants
    * slither-mutate's operators (RR revert replacement, CR comment-out, ROR/AOR/LOR/BOR/UOR/ASOR operator
      replacement, LIR/MVIE/MVIV literal and initialisation replacement, MIA/MWA condition replacement, SBR
      Solidity-specific replacement, FHR header replacement) over contracts/src/TradeGuardEscrow.sol and
      contracts/src/libraries/*.sol. scripts/mutation_generate.py runs slither's own mutator classes in the
      tool venv (.venv-tools, ``make setup-lint``) and returns their patches without running anything; the
      patches are applied here to copies. No-ops and duplicates (same mutated file text) are dropped.
    * the hand-made mutants below (text substitutions naming the rule they break). One whose text no longer
      occurs (after a contract change) is reported under ``not_applicable``.
    slither gives ~2,800 distinct mutants for this contract; compiling one takes ~15 s with solcjs, so by
    default a fixed-seed sample is drawn, proportional to each operator's share with at least 3 per operator
    (``--sample``, ``--seed``; ``--sample 0`` runs them all, ~6 h). Every hand-made mutant always runs.

Compilation (measured on this 2-core machine: ``forge build`` of the project 89 s, since each of the three
forge test contracts that deploys the escrow embeds and re-optimises its creation code; the app compiler's
one standard-JSON compile of contracts/src + contracts/test 15.6 s; the optimizer disabled or at 1 run was
slower (16.7 s, 24.9 s); the legacy pipeline cannot compile the escrow (stack too deep); so no cheaper
profile exists): each mutant is compiled ONCE, by app.chain.compiler with the project's exact settings, into a
temporary tree, and the artifacts are kept in var/mutation/builds/ by the hash of the sources and settings (a
rerun compiles nothing).
Those artifacts serve both test runners:
    * forge: the forge tests are compiled once per run (cached across runs) in worker copies of the project in
      var/mutation/forge-w<N>, where ``new TradeGuardEscrow(args)`` is rewritten to deploy the bytecode passed
      in the environment (TG_MUTANT_ESCROW_INITCODE; linked libraries placed by ``vm.etch`` at fixed
      addresses, TG_MUTANT_LIB<i>), so a mutant never recompiles the tests. FOUNDRY_PROFILE=mutation
      (foundry.toml) fixes the fuzz seed so every mutant meets the same inputs.
    * pytest: ``TRADEGUARD_CONTRACTS_ROOT`` points app.chain.compiler at the mutant's tree and its artifacts.
Two mutants are processed at a time (``--jobs``; one solcjs compile uses one core).

Test selection (per mutant; a mutant stops at its first failing test)
    * The static call map from slither: the mutated function -> every external/public escrow function that
      reaches it (internal calls, library calls, modifiers). A mutant in the constructor (or outside any
      function) is covered by every test.
    * forge: a static map test -> escrow functions, read from contracts/forge/*.sol: the ``.name(`` calls in
      the test's body and, transitively, in the helpers it calls; an ``invariant_*`` test reaches whatever the
      handler contracts of its file reach. Order: unit tests (sub-second) first, then the invariant campaign.
    * pytest (only for mutants every selected forge test let live): a coverage map built once from the
      unmutated contracts by the plugin scripts/mutation_coverage.py (the selector of every transaction, call
      and gas estimate each test sends; what session fixtures send is credited to the tests using them),
      cached in var/mutation/ by the hash of the contracts, tests/contracts and app/chain. The stateful model
      test (calls everything) runs first, then the selected tests fastest first, within ``--python-budget``.
    A failing test (pytest rc 1, forge failure) kills; a test run that errors out or times out does not.

Before the mutants, the unmutated contracts go through the same pipeline and every selected test must pass.

    .venv/bin/python scripts/mutation_check.py                  # sampled slither mutants + hand mutants
    .venv/bin/python scripts/mutation_check.py --list           # list them and exit
    .venv/bin/python scripts/mutation_check.py --only H:split_drops_tax S:ROR:0123 --no-python

Prints one JSON document on stdout (also written to var/mutation/report.json): mutants, killed, survived,
not_compiled, equivalent, score = killed / (compiled mutants - explained equivalents), the score without
excluding equivalents, survivors, per-mutant details and the seconds taken. Equivalent survivors are explained
one line each in contracts/mutation/equivalent.json (keyed by the mutant's file, function, original and
mutated text, so a key survives line shifts). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.chain import compiler  # noqa: E402

ESCROW = "contracts/src/TradeGuardEscrow.sol"
ESCROW_CONTRACT = "TradeGuardEscrow"
TARGETS = (ESCROW, "contracts/src/libraries/*.sol")
VAR = ROOT / "var" / "mutation"
EQUIVALENT_FILE = "contracts/mutation/equivalent.json"
#: The private copy of the project that a run reads, mutates, compiles and tests (``snapshot()``): set once at
#: the start of ``main``, so that edits of /work/main (contracts, tests, app) during a run never reach it.
SRC: Path = ROOT
#: What ``snapshot()`` copies (folders without __pycache__ and hypothesis databases; single files), and what
#: it links (read-only toolchains).
SNAPSHOT_DIRS = ("contracts/src", "contracts/test", "contracts/forge", "contracts/mutation", "app", "tests")
SNAPSHOT_FILES = (
    "pyproject.toml",
    "foundry.toml",
    "scripts/mutation_generate.py",
    "scripts/mutation_coverage.py",
)
SNAPSHOT_LINKS = ("node_modules", "tools")
TOOLS_PYTHON = ROOT / ".venv-tools" / "bin" / "python"
FORGE_BIN = ROOT / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin"
ANVIL_BIN = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin"
PYTHON_TESTS = "tests/contracts"
DEFAULT_SAMPLE = 70
MIN_PER_OPERATOR = 3
FORGE_TIMEOUT = 600
#: Seconds of pytest per mutant (forge survivors only): tests/contracts takes ~6 CPU-minutes in all, so a
#: mutant every forge test let live gets this much of the tests that reach it, then counts as survived
#: (``python_complete: false`` in its details). ``--python-budget 0``: no limit.
PYTHON_BUDGET = 240
#: Stateful model tests that call every entry point: not traced for the coverage map (one of them is ~60 % of
#: the suite's time), selected for every mutant and run first.
PYTHON_EVERYTHING = ("tests/contracts/test_model_stateful.py",)
#: Where the forge harness places the mutant's linked libraries (vm.etch); the escrow is linked to them.
LIB_BASE = 0xE5C0_0000_0000_0000_0000_0000_0000_0000_0000_0000
MAX_LIBS = 4


@dataclass(frozen=True)
class Hand:
    """A hand-made substitution: ``old`` must occur exactly once in ``path``. ``moved``: the same rule's
    substitution where a later version of the contract keeps it, ``(path, old, new)``, tried in order when
    ``old`` is not found exactly once (the mutant keeps its name)."""

    name: str
    old: str
    new: str
    path: str = ESCROW
    moved: tuple[tuple[str, str, str], ...] = ()


REGISTRY = "contracts/src/libraries/EscrowRegistry.sol"
ORDER_STATE = "contracts/src/libraries/OrderState.sol"
#: Escrow v2 (contracts/src/TradeGuardEscrow.sol + libraries/). An anchor must occur exactly once in its file
#: (whitespace runs match any whitespace); one that no longer does is reported under ``hand_not_applicable``.
HAND_MUTANTS: tuple[Hand, ...] = (
    # money
    Hand("split_drops_tax", "tax = gross * taxBps / BPS;", "tax = 0;"),
    Hand(
        "refund_charges_commission",
        "credits[t.token][t.buyer] += t.amount;",
        "credits[t.token][t.buyer] += t.amount - t.amount * t.commissionBps / 10_000;",
        REGISTRY,
    ),
    Hand(
        "ruling_refund_rounds_up",
        "uint256 refund = t.amount * shareBps / 10_000;",
        "uint256 refund = (t.amount * shareBps + 9_999) / 10_000;",
        REGISTRY,
    ),
    Hand(
        "batch_mixes_sellers",
        "if (p.seller != t.seller) {\n            _flushSeller(p);\n",
        "if (p.seller != t.seller) {\n",
    ),
    Hand("withdraw_one_more_than_credit", "amount > available)", "amount > available + 1)"),
    Hand("withdraw_to_escrow", "if (to == address(this)) revert InvalidRecipient(to);", ""),
    Hand(
        "balance_delta_unchecked",
        "if (received != amount) revert TokenShortfall(token, amount, received);",
        "",
    ),
    # timers
    Hand(
        "release_edge_lte",
        "if (block.timestamp < releaseAt) return",
        "if (block.timestamp <= releaseAt) return",
    ),
    Hand(
        "dispute_at_release_at",
        "if (block.timestamp >= releaseAt) revert DeadlinePassed(id, releaseAt);",
        "if (block.timestamp > releaseAt) revert DeadlinePassed(id, releaseAt);",
    ),
    Hand(
        "ship_timeout_off_by_one",
        "(ITradeGuardEscrow.RefundReason.ShipTimeout, t.shipBy + ext)",
        "(ITradeGuardEscrow.RefundReason.ShipTimeout, t.shipBy + ext - 1)",
        REGISTRY,
    ),
    Hand(
        "attest_ship_by_off_by_one",
        "if (st == OrderState.FUNDED) deadline = t.shipBy;",
        "if (st == OrderState.FUNDED) deadline = t.shipBy - 1;",
    ),
    Hand(
        "rule_after_deadline",
        "if (block.timestamp > deadline) revert ITradeGuardEscrow.DeadlinePassed(id, deadline);",
        "",
        REGISTRY,
        moved=((ESCROW, "if (block.timestamp > deadline) revert DeadlinePassed(id, deadline);", ""),),
    ),
    Hand(
        "late_seller_answer_counts",
        "&& block.timestamp <= s.anchor() + s.elapsedFrozen(block.timestamp) + t.responseSeconds",
        "",
    ),
    Hand(
        "response_timeout_ignores_answer",
        "if (!s.responded() && block.timestamp > responseDeadline) {",
        "if (block.timestamp > responseDeadline) {",
        REGISTRY,
    ),
    Hand(
        "timeout_ignores_recorded_ruling",
        "} else if (st == OrderState.DISPUTED && rulings[k] == 0) {",
        "} else if (st == OrderState.DISPUTED) {",
        REGISTRY,
    ),
    # freezes
    Hand(
        "release_ignores_freeze",
        "if (s.isFrozen(block.timestamp)) return abi.encodeWithSelector(OrderIsFrozen.selector, id, "
        "s.frozenUntil());",
        "",
    ),
    Hand(
        "attest_ignores_freeze",
        "if (s.isFrozen(block.timestamp)) {\n"
        "            return (abi.encodeWithSelector(OrderIsFrozen.selector, id, s.frozenUntil()), false);\n"
        "        }",
        "",
    ),
    Hand(
        "unfreeze_keeps_whole_extension",
        "s.withFreeze(s.frozenSeconds() - (until - block.timestamp), block.timestamp)",
        "s.withFreeze(s.frozenSeconds(), block.timestamp)",
        REGISTRY,
    ),
    # (Starting the hold at block time instead of after a freeze would be an equivalent mutant since attest()
    # refuses frozen orders; a dispute, though, may open during a freeze and its timers must start after it.)
    Hand(
        "dispute_timers_start_during_freeze",
        "withAnchor(s.timerStart(block.timestamp) - s.frozenSeconds())",
        "withAnchor(block.timestamp - s.frozenSeconds())",
    ),
    # A freeze must not reopen a window that closed before it began (counting the whole freeze would).
    Hand(
        "dispute_window_counts_whole_freeze",
        "uint256 ext = s.elapsedFrozen(block.timestamp);",
        "uint256 ext = s.frozenSeconds();",
    ),
    Hand(
        "response_window_counts_whole_freeze",
        "s.anchor() + s.elapsedFrozen(block.timestamp) + t.responseSeconds",
        "s.anchor() + s.frozenSeconds() + t.responseSeconds",
    ),
    Hand("freeze_cap_per_freeze", "total > MAX_FREEZE_SECONDS", "duration > MAX_FREEZE_SECONDS", REGISTRY),
    # oracles and signatures
    Hand("oracle_distinctness_skipped", "if (bits & bit != 0) return", "if (false) return"),
    Hand(
        "removed_oracle_votes_count",
        "if (o.active && o.index == i && o.activeFrom <= fundedAt) ++count;",
        "++count;",
    ),
    Hand("pending_oracle_counts", "if (!o.active || o.activeFrom > t.fundedAt) {", "if (!o.active) {"),
    Hand("threshold_off_by_one", "if (count < t.threshold) {", "if (count + 1 < t.threshold) {"),
    Hand(
        "fund_threshold_unchecked",
        "if (c.threshold > usable) revert InvalidThreshold(c.threshold, usable);",
        "",
    ),
    Hand("event_time_unchecked", "if (a.eventTime > block.timestamp) {", "if (false) {"),
    Hand("signer_check_skipped", "if (signer != expected) revert InvalidSignature(expected, signer);", ""),
    Hand(
        "commitment_check_skipped",
        "if (c != OrderState.commit(t, s)) return (key, "
        "abi.encodeWithSelector(OrderDataMismatch.selector, id));",
        "",
    ),
    Hand(
        "library_commitment_check_skipped",
        "if (c != OrderState.commit(t, s)) revert ITradeGuardEscrow.OrderDataMismatch(id);",
        "",
        REGISTRY,
    ),
    Hand(
        "commitment_ignores_last_term_word",
        "calldatacopy(ptr, t, 544)",
        "calldatacopy(ptr, t, 512)",
        ORDER_STATE,
    ),
    Hand("order_key_ignores_buyer", "mstore(0x20, buyer)", "mstore(0x20, 0)", ORDER_STATE),
    Hand("evidence_replay_allowed", "if (_usedDigests[key][digest]) revert SignatureReplayed(digest);", ""),
    Hand(
        "expired_signature_accepted",
        "if (validUntil < block.timestamp) revert SignatureExpired(validUntil, block.timestamp);",
        "",
    ),
    # who may act
    Hand(
        "confirm_from_funded",
        "if (st != OrderState.SHIPPED && st != OrderState.DELIVERED) revert InvalidStatus",
        "if (st != OrderState.FUNDED && st != OrderState.SHIPPED && st != OrderState.DELIVERED)"
        " revert InvalidStatus",
    ),
    Hand(
        "seller_refund_by_anyone",
        "if (msg.sender != t.seller) revert ITradeGuardEscrow.Unauthorized(msg.sender);",
        "",
        REGISTRY,
    ),
    # ERC-792 arbitration (SPEC 4.1)
    Hand(
        "ruled_twice",
        "if (rulings[k] != 0) revert ITradeGuardEscrow.AlreadyRuled(k, disputeID);",
        "",
        REGISTRY,
    ),
    Hand(
        "ruling_out_of_range",
        "if (ruling > RULING_CHOICES) revert ITradeGuardEscrow.InvalidRuling(ruling);",
        "",
        REGISTRY,
    ),
    Hand("ruling_share_off_by_one_choice", "(ruling - 1) * 1111", "ruling * 1111", REGISTRY),
    Hand("refused_ruling_refunds_nothing", "ruling == 0 ? 5000", "ruling == 0 ? 0", REGISTRY),
    Hand(
        "platform_rules_erc792_order",
        "if (t.arbitrator != address(0) || since == 0 || since > t.fundedAt) {",
        "if (since == 0 || since > t.fundedAt) {",
        REGISTRY,
        moved=(
            (
                ESCROW,
                "t.arbitrator != address(0) || since == 0 || since > t.fundedAt",
                "since == 0 || since > t.fundedAt",
            ),
        ),
    ),
    Hand(
        "arbitrator_appointed_after_funding_rules",
        "if (t.arbitrator != address(0) || since == 0 || since > t.fundedAt) {",
        "if (t.arbitrator != address(0) || since == 0) {",
        REGISTRY,
        moved=(
            (
                ESCROW,
                "t.arbitrator != address(0) || since == 0 || since > t.fundedAt",
                "t.arbitrator != address(0) || since == 0",
            ),
        ),
    ),
    Hand(
        "extra_data_unchecked",
        "} else if (keccak256(extraData) != t.arbitratorExtraDataHash) {",
        "} else if (false) {",
    ),
    Hand(
        "platform_dispute_keeps_value",
        "if (arbitrator == address(0)) {\n            if (msg.value != 0) revert UnexpectedValue(msg.value);",
        "if (arbitrator == address(0)) {",
    ),
    Hand(
        "confirm_keeps_value",
        "if (msg.value != 0) revert UnexpectedValue(msg.value);\n            _confirm(",
        "_confirm(",
    ),
)


# ------------------------------------------------------------------------------------------------ utilities

_log_lock = threading.Lock()


def log(msg: str) -> None:
    with _log_lock:
        print(msg, file=sys.stderr, flush=True)


def sha(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def tree_hash(*folders: str) -> str:
    files = sorted(
        p for f in folders for p in (SRC / f).rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    return sha(*(f"{p.relative_to(SRC)}:{compiler.sha256_file(p)}" for p in files))


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(
        [str(ROOT / "node_modules" / ".bin"), str(FORGE_BIN), str(ANVIL_BIN), env["PATH"]]
    )
    env["FOUNDRY_SOLC"] = str(ROOT / "tools" / "solc")
    return env


# ------------------------------------------------------------------------------------------------- snapshot


def git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _files_digest(base: Path, rel: str) -> str:
    root = base / rel
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return sha(*(f"{p.relative_to(base)}:{compiler.sha256_file(p)}" for p in files))


def snapshot(contracts_at: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Copy what a run reads (contracts/src, the contract and Python tests, app/, the helper scripts) into a
    private folder, and describe the contract it holds (commit, whether contracts/src differs from it, the
    hash of contracts/src). The copy is taken again if contracts/src changed while it was being made."""
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc", ".pytest_cache")
    for _attempt in range(5):
        commit = git("rev-parse", "HEAD")
        before = _files_digest(ROOT, "contracts/src")
        snap = Path(tempfile.mkdtemp(prefix="tg-mutsnap-"))
        for rel in SNAPSHOT_DIRS:
            if (ROOT / rel).is_dir():
                shutil.copytree(ROOT / rel, snap / rel, ignore=ignore)
        for rel in SNAPSHOT_FILES:
            (snap / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, snap / rel)
        for rel in SNAPSHOT_LINKS:
            (snap / rel).symlink_to(ROOT / rel)
        if contracts_at:  # contracts/src as committed at that revision; the tests as they are now
            shutil.rmtree(snap / "contracts/src")
            (snap / "contracts/src").mkdir(parents=True)
            archive = subprocess.run(
                ["git", "archive", "--format=tar", contracts_at, "contracts/src"],
                cwd=ROOT,
                capture_output=True,
            )
            if archive.returncode != 0:
                raise SystemExit(
                    f"mutation_check: no contracts/src at {contracts_at}: {archive.stderr.decode()}"
                )
            subprocess.run(["tar", "-x", "-C", str(snap)], input=archive.stdout, check=True)
            commit = git("rev-parse", contracts_at)
            before = _files_digest(snap, "contracts/src")
        taken = _files_digest(snap, "contracts/src")
        if contracts_at or taken == before == _files_digest(ROOT, "contracts/src"):
            dirty = not contracts_at and bool(git("status", "--porcelain", "--", "contracts/src"))
            info = {
                "commit": commit,
                "contracts_src_dirty": dirty,
                "contracts_src_sha256": taken,
                "escrow_sha256": compiler.sha256_file(snap / ESCROW),
                "snapshot": str(snap),
            }
            return snap, info
        shutil.rmtree(snap, ignore_errors=True)
        time.sleep(2)
    raise SystemExit("mutation_check: contracts/src kept changing while the snapshot was taken")


# -------------------------------------------------------------------------------------------------- mutants


@dataclass
class Mutant:
    id: str
    operator: str  # slither operator name, or "HAND"
    file: str
    start: int
    end: int
    new: str
    line: int = 0
    function: str | None = None
    entry_points: list[str] = field(default_factory=list)
    old: str = ""
    name: str = ""  # hand mutants

    def key(self) -> str:
        """Identity that survives line shifts (used by the equivalence file)."""
        return f"{self.file}|{self.function}|{self.old.strip()}|{self.new.strip()}"


def generate_slither(targets: list[str]) -> dict[str, Any]:
    """slither's mutants and call map, cached by the hash of the sources and the generator."""
    digest = sha(tree_hash("contracts/src"), (SRC / "scripts/mutation_generate.py").read_bytes(), *targets)
    cached = VAR / f"slither-{digest[:16]}.json"
    if not cached.is_file():
        if not TOOLS_PYTHON.is_file():
            raise SystemExit("mutation_check: slither not installed; run `make setup-lint`")
        log("generating slither-mutate's mutants (slither compiles the contracts once, ~1 min)")
        tmp = cached.with_suffix(".tmp")
        subprocess.run(
            [str(TOOLS_PYTHON), str(SRC / "scripts/mutation_generate.py"), str(SRC), str(tmp), *targets],
            env=tool_env(),
            check=True,
        )
        tmp.replace(cached)
    data: dict[str, Any] = json.loads(cached.read_text())
    return data


def anchor_pattern(anchor: str) -> re.Pattern[bytes]:
    """A hand mutant's anchor as a pattern: its text, with any run of whitespace matching any other (so a
    reformatted or re-wrapped line still matches; a moved one always does)."""
    parts = [re.escape(p.encode()) for p in anchor.split()]
    lead = rb"(?<=\s)" if anchor[:1].isspace() else b""
    return re.compile(lead + rb"\s+".join(parts))


def function_at(gen: dict[str, Any], file: str, offset: int) -> str | None:
    best: tuple[int, str] | None = None
    for name, (f, start, end) in gen["functions"].items():
        if f == file and start <= offset < end and (best is None or end - start < best[0]):
            best = (end - start, name)
    return best[1] if best else None


def build_mutants(gen: dict[str, Any], sample: int, seed: int) -> tuple[list[Mutant], dict[str, str], int]:
    """(chosen mutants, hand mutants that no longer apply, number of distinct slither mutants)."""
    texts: dict[str, bytes] = {}

    def text(path: str) -> bytes:
        if path not in texts:
            texts[path] = (SRC / path).read_bytes()
        return texts[path]

    seen: set[tuple[str, bytes]] = set()

    def mutated(m: Mutant) -> bytes:
        t = text(m.file)
        return t[: m.start] + m.new.encode() + t[m.end :]

    hands: list[Mutant] = []
    not_applicable: dict[str, str] = {}
    for h in HAND_MUTANTS:
        tried = []
        for candidate in ((h.path, h.old, h.new), *h.moved):
            path, old = candidate[0], candidate[1]
            t = text(path)
            found = list(anchor_pattern(old).finditer(t))
            if len(found) == 1:
                break
            tried.append(f"{old!r} found {len(found)} times in {path}")
        else:
            not_applicable[f"H:{h.name}"] = (
                f"anchor {'; '.join(tried)} (must be exactly once):"
                " re-make this hand mutant for the current contract"
            )
            continue
        h = Hand(h.name, old, candidate[2], path)
        start, end = found[0].span()
        fn = function_at(gen, h.path, start)
        m = Mutant(
            id=f"H:{h.name}",
            operator="HAND",
            file=h.path,
            start=start,
            end=end,
            new=h.new,
            line=t[:start].count(b"\n") + 1,
            function=fn,
            entry_points=gen["reached_by"].get(fn, []) if fn else ["*"],
            old=t[start:end].decode("utf-8"),
            name=h.name,
        )
        seen.add((m.file, mutated(m)))
        hands.append(m)

    by_op: dict[str, list[Mutant]] = {}
    for p in gen["mutants"]:
        m = Mutant(
            id="",
            operator=p["operator"],
            file=p["file"],
            start=p["start"],
            end=p["end"],
            new=p["new"],
            line=p["line"],
            function=p["function"],
            entry_points=p["entry_points"],
            old=p["old"],
        )
        out = mutated(m)
        if out == text(m.file) or (m.file, out) in seen:
            continue
        seen.add((m.file, out))
        m.id = f"S:{m.operator}:{sha(m.file, out)[:8]}"
        by_op.setdefault(m.operator, []).append(m)
    distinct = sum(len(v) for v in by_op.values())

    chosen: list[Mutant] = []
    rng = random.Random(seed)
    if sample <= 0 or sample >= distinct:
        chosen = [m for ms in by_op.values() for m in ms]
    else:
        quota = {
            op: max(min(MIN_PER_OPERATOR, len(ms)), round(sample * len(ms) / distinct))
            for op, ms in by_op.items()
        }
        for op in sorted(by_op):
            ms = sorted(by_op[op], key=lambda m: m.id)
            rng.shuffle(ms)
            chosen.extend(ms[: quota[op]])
    chosen.sort(key=lambda m: (m.file, m.start, m.id))
    return hands + chosen, not_applicable, distinct


# -------------------------------------------------------------------------------------------- forge harness

FORGE_DEPLOY_FILE = "TgMutantDeploy.sol"
FORGE_DEPLOY_SOURCE = f"""// SPDX-License-Identifier: MIT
// Generated by scripts/mutation_check.py into its forge worker trees only (never into contracts/forge).
pragma solidity ^0.8.28;

interface TgMutantVm {{
    function etch(address target, bytes calldata code) external;
    function envBytes(string calldata name) external view returns (bytes memory);
    function envOr(string calldata name, bytes calldata defaultValue) external view returns (bytes memory);
    function toString(uint256 value) external pure returns (string memory);
}}

/// @dev Deploys the mutant escrow whose linked creation code is in TG_MUTANT_ESCROW_INITCODE, after
///      placing its libraries (TG_MUTANT_LIB<i>, runtime code) at the fixed addresses it was linked to.
function tgMutantDeploy(bytes memory args) returns (address deployed) {{
    TgMutantVm tgvm = TgMutantVm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);
    for (uint256 i; i < {MAX_LIBS}; ++i) {{
        address lib = address(uint160({LIB_BASE:#044x} + i));
        if (lib.code.length != 0) continue;
        bytes memory code = tgvm.envOr(string.concat("TG_MUTANT_LIB", tgvm.toString(i)), new bytes(0));
        if (code.length != 0) tgvm.etch(lib, code);
    }}
    bytes memory init = bytes.concat(tgvm.envBytes("TG_MUTANT_ESCROW_INITCODE"), args);
    assembly ("memory-safe") {{
        deployed := create(0, add(init, 0x20), mload(init))
        if iszero(deployed) {{
            returndatacopy(0, 0, returndatasize())
            revert(0, returndatasize())
        }}
    }}
}}
"""

_NEW_ESCROW = re.compile(r"new\s+" + ESCROW_CONTRACT + r"\s*\(")


def rewrite_forge_source(text: str) -> str:
    """``new TradeGuardEscrow(a, b)`` -> ``TradeGuardEscrow(tgMutantDeploy(abi.encode(a, b)))``."""
    out = []
    pos = 0
    for match in _NEW_ESCROW.finditer(text):
        depth, i = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        args = text[match.end() : i - 1]
        out.append(text[pos : match.start()])
        out.append(f"{ESCROW_CONTRACT}(payable(tgMutantDeploy(abi.encode({args}))))")
        pos = i
    if not out:
        return text
    out.append(text[pos:])
    body = "".join(out)
    # import the deploy helper after the pragma
    return re.sub(
        r"(pragma solidity[^;]*;\n)",
        rf'\1import {{tgMutantDeploy}} from "./{FORGE_DEPLOY_FILE}";\n',
        body,
        count=1,
    )


_held_locks: list[Any] = []


def claim_forge_slot() -> Path:
    """A forge worker folder of var/mutation no other running check holds (an exclusive lock kept until exit),
    so two runs at once never test in each other's trees; forge's cache inside it is reused across runs."""
    import fcntl

    for slot in range(64):
        lock = open(VAR / f"forge-w{slot}.lock", "w")  # noqa: SIM115 (held until the process ends)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        _held_locks.append(lock)
        return VAR / f"forge-w{slot}"
    raise SystemExit("mutation_check: no free forge worker folder in var/mutation")


def prepare_forge_tree(tree: Path) -> Path:
    """A copy of the snapshot for forge whose tests deploy the mutant from the environment; built once."""
    tree.mkdir(parents=True, exist_ok=True)
    for rel in ("contracts/src", "contracts/test"):
        dst = tree / rel
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(SRC / rel, dst)
    forge_dst = tree / "contracts/forge"
    if forge_dst.exists():
        shutil.rmtree(forge_dst)
    forge_dst.mkdir(parents=True)
    for src in (SRC / "contracts/forge").rglob("*.sol"):
        dst = forge_dst / src.relative_to(SRC / "contracts/forge")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(rewrite_forge_source(src.read_text(encoding="utf-8")), encoding="utf-8")
    (forge_dst / FORGE_DEPLOY_FILE).write_text(FORGE_DEPLOY_SOURCE, encoding="utf-8")
    shutil.copy2(SRC / "foundry.toml", tree / "foundry.toml")
    for link in ("node_modules", "tools"):
        if not (tree / link).exists():
            (tree / link).symlink_to(ROOT / link)
    return tree


def forge_build(tree: Path) -> None:
    proc = subprocess.run(
        ["forge", "build"],
        cwd=tree,
        env={**tool_env(), "FOUNDRY_PROFILE": "mutation"},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"mutation_check: forge build of {tree} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )


_SOL_FUNC = re.compile(r"\bfunction\s+(\w+)\s*\(")
_SOL_CONTRACT = re.compile(r"\b(contract|abstract\s+contract|library|interface)\s+(\w+)")
#: A call, call options included (``escrow.submitBuyerDecision{value: v}(...)``).
_CALL = re.compile(r"(\.)?\b(\w+)\s*(?:\{[^{}]*\}\s*)?\(")
#: Any member access: an entry point named as ``escrow.name`` counts as reached even when it is not called
#: right there (``abi.encodeCall(escrow.fund, ...)``, ``escrow.attest.selector``, a low-level call's data).
_MEMBER = re.compile(r"\.(\w+)\b")


def forge_test_map(entry_names: set[str]) -> dict[str, dict[str, Any]]:
    """{test name: {"contract", "invariant", "reaches": escrow function names}} from contracts/forge/*.sol."""
    bodies: dict[str, str] = {}  # function name -> body (overloads and overrides merged)
    contract_of: dict[str, str] = {}
    contract_funcs: dict[str, list[str]] = {}
    file_of_contract: dict[str, str] = {}
    for path in sorted((SRC / "contracts/forge").rglob("*.sol")):
        text = path.read_text(encoding="utf-8")
        contracts = [(m.start(), m.group(2)) for m in _SOL_CONTRACT.finditer(text)]
        for m in _SOL_FUNC.finditer(text):
            name = m.group(1)
            brace = text.find("{", m.end())
            semi = text.find(";", m.end())
            if brace < 0 or (0 <= semi < brace):
                continue  # declaration without a body
            depth, i = 1, brace + 1
            while depth and i < len(text):
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            bodies[name] = bodies.get(name, "") + text[brace:i]
            owner = max((c for c in contracts if c[0] < m.start()), default=(0, "?"))[1]
            contract_of.setdefault(name, owner)
            contract_funcs.setdefault(owner, []).append(name)
            file_of_contract[owner] = path.name

    memo: dict[str, set[str]] = {}

    def reaches(name: str, stack: frozenset[str] = frozenset()) -> set[str]:
        if name in memo:
            return memo[name]
        body = bodies.get(name, "")
        out: set[str] = {m.group(1) for m in _MEMBER.finditer(body) if m.group(1) in entry_names}
        for m in _CALL.finditer(body):
            callee = m.group(2)
            if m.group(1) and callee in entry_names:
                out.add(callee)
            if callee in bodies and callee not in stack and callee != name:
                out |= reaches(callee, stack | {name})
        if not stack:
            memo[name] = out
        return out

    tests: dict[str, dict[str, Any]] = {}
    for name, owner in contract_of.items():
        if not (name.startswith("test") or name.startswith("invariant")):
            continue
        reached = set(reaches(name))
        invariant = name.startswith("invariant")
        if invariant:
            # the fuzzer calls every function of the handler contracts of this file
            for other, fns in contract_funcs.items():
                if other != owner and file_of_contract.get(other) == file_of_contract.get(owner):
                    for f in fns:
                        reached |= reaches(f)
        tests[name] = {"contract": owner, "invariant": invariant, "reaches": sorted(reached)}
    # The slow stage: every test of a contract that runs an invariant campaign (its deterministic drives of
    # the handler take seconds too); the unit tests of the other contracts run first.
    campaign = {t["contract"] for t in tests.values() if t["invariant"]}
    for t in tests.values():
        t["campaign"] = t["contract"] in campaign
    return tests


# ------------------------------------------------------------------------------------------ python coverage


def python_coverage(build_root: Path, jobs: int) -> dict[str, Any]:
    """{nodeid: {"selectors": [...], "seconds": s}} for tests/contracts, cached by the tree's hash."""
    digest = sha(
        tree_hash("contracts/src", "contracts/test", PYTHON_TESTS, "app/chain"),
        (SRC / "scripts/mutation_coverage.py").read_bytes(),
    )
    cached = VAR / f"pycoverage-{digest[:16]}.json"
    if cached.is_file():
        data: dict[str, Any] = json.loads(cached.read_text())
        return data
    log(
        f"building the Python coverage map: all of {PYTHON_TESTS} once on the unmutated contracts (-n {jobs})"
    )
    folder = Path(tempfile.mkdtemp(prefix="tg-mutcov-"))
    report = folder / "report.xml"
    env = {
        **tool_env(),
        compiler.ENV_CONTRACTS_ROOT: str(build_root),
        "TG_MUTATION_COVERAGE": str(folder),
        "PYTHONPATH": os.pathsep.join([str(SRC / "scripts"), os.environ.get("PYTHONPATH", "")]),
        "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
        "HYPOTHESIS_STORAGE_DIRECTORY": str(folder / ".hypothesis"),
    }
    env.pop(compiler.ENV_BUILD_DIR, None)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "mutation_coverage",
        f"--junitxml={report}",
        *(f"--ignore={p}" for p in PYTHON_EVERYTHING),
        PYTHON_TESTS,
    ]
    if jobs > 1:
        cmd[4:4] = ["-n", str(jobs)]
    proc = subprocess.run(cmd, cwd=SRC, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(
            f"mutation_check: {PYTHON_TESTS} fails on the unmutated contracts:\n{proc.stdout[-4000:]}"
        )
    tests: dict[str, set[str]] = {}
    fixtures: dict[str, set[str]] = {}
    uses: dict[str, list[str]] = {}
    for f in folder.glob("coverage-*.json"):
        part = json.loads(f.read_text())
        for k, v in part["tests"].items():
            tests.setdefault(k, set()).update(v)
        for k, v in part["fixtures"].items():
            fixtures.setdefault(k, set()).update(v)
        uses.update(part["uses"])
    seconds = junit_seconds(report)
    out: dict[str, Any] = {}
    for nodeid, sels in tests.items():
        allsel = set(sels)
        for fx in uses.get(nodeid, []):
            allsel |= fixtures.get(fx, set())
        out[nodeid] = {"selectors": sorted(allsel), "seconds": seconds.get(nodeid, 1.0)}
    shutil.rmtree(folder, ignore_errors=True)
    cached.write_text(json.dumps(out, indent=0))
    return out


def junit_seconds(report: Path) -> dict[str, float]:
    import xml.etree.ElementTree as ET

    out: dict[str, float] = {}
    if not report.is_file():
        return out
    for case in ET.parse(report).iter("testcase"):
        classname = case.get("classname", "")
        name = case.get("name", "")
        parts = classname.split(".")
        # tests.contracts.test_fund[.TestClass] -> tests/contracts/test_fund.py[::TestClass]::name
        for cut in range(len(parts), 0, -1):
            path = "/".join(parts[:cut]) + ".py"
            if (SRC / path).is_file():
                nodeid = "::".join([path, *parts[cut:], name])
                out[nodeid] = float(case.get("time", "1") or 1)
                break
    return out


def selector(signature: str) -> str:
    from eth_utils import function_signature_to_4byte_selector

    return "0x" + function_signature_to_4byte_selector(signature).hex()


# -------------------------------------------------------------------------------------------------- running


@dataclass
class Outcome:
    status: str  # killed | survived | not_compiled | error | timeout
    killed_by: str | None = None
    stage: str | None = None  # forge | pytest
    seconds: float = 0.0
    detail: str = ""
    forge_tests: int = 0
    python_tests: int = 0
    python_complete: bool | None = None
    compile_seconds: float = 0.0
    build: Path | None = None  # where the artifacts are kept (var/mutation/builds/...)


def make_tree(m: Mutant | None) -> Path:
    tree = Path(tempfile.mkdtemp(prefix="tg-mutant-"))
    for rel in compiler.SOURCE_DIRS:
        if (SRC / rel).is_dir():
            shutil.copytree(SRC / rel, tree / rel)
    (tree / "node_modules").symlink_to(ROOT / "node_modules")
    if m is not None:
        target = tree / m.file
        t = target.read_bytes()
        target.write_bytes(t[: m.start] + m.new.encode() + t[m.end :])
    return tree


def forge_env(tree: Path) -> dict[str, str]:
    """TG_MUTANT_* for the forge harness, from the tree's artifacts."""
    build = tree / compiler.BUILD_DIR
    escrow = json.loads((build / f"{ESCROW_CONTRACT}.json").read_text())
    libs = sorted({lib for refs in escrow.get("linkReferences", {}).values() for lib in refs})
    if len(libs) > MAX_LIBS:
        raise RuntimeError(f"{ESCROW_CONTRACT} links {len(libs)} libraries; the harness places {MAX_LIBS}")
    addresses = {lib: f"0x{LIB_BASE + i:040x}" for i, lib in enumerate(libs)}
    env = {"TG_MUTANT_ESCROW_INITCODE": compiler.link_bytecode(escrow, addresses)}
    for i, lib in enumerate(libs):
        art = json.loads((build / f"{lib}.json").read_text())
        code = compiler.link_bytecode(art, addresses, deployed=True)
        # A library's runtime code starts with PUSH20 <its own address> (zero until deployed): fill it in.
        head = "0x73" + "00" * 20
        if code.startswith(head):
            code = "0x73" + addresses[lib][2:] + code[len(head) :]
        env[f"TG_MUTANT_LIB{i}"] = code
    return env


_FORGE_NAME = re.compile(r"(?:^\s*|\]\s+)(\w+)\([^()]*\)\s+\((?:gas|runs|calls|\u03bc)")


def forge_failure(out: str) -> tuple[str, str] | None:
    """(test, reason) of the first ``[FAIL...]`` in forge's output (the name follows on the same line for unit
    tests, after the call sequence for invariants)."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("[FAIL"):
            continue
        reason = line[1 : line.find("]") if "]" in line else len(line)].removeprefix("FAIL").lstrip(":. ")
        for follow in lines[i : i + 200]:
            m = _FORGE_NAME.search(follow)
            if m:
                return m.group(1), reason[:160]
        return "?", reason[:160]
    return None


def run_forge(
    worker_tree: Path, env_extra: dict[str, str], tests: list[str], timeout: int
) -> tuple[str, str | None, str]:
    """('pass'|'fail'|'error'|'timeout', failing test, detail)."""
    if not tests:
        return "pass", None, ""
    for sub in ("var/forge-cache/invariant", "var/forge-cache/fuzz", "var/forge-cache/test-failures"):
        p = worker_tree / sub
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
    pattern = "^(" + "|".join(re.escape(t) for t in tests) + r")(\(|$)"
    cmd = [
        "forge",
        "test",
        "--match-path",
        "contracts/forge/*",
        "--match-test",
        pattern,
        "--fail-fast",
        "-j",
        "1",
    ]
    env = {**tool_env(), "FOUNDRY_PROFILE": "mutation", **env_extra}
    try:
        proc = subprocess.run(
            cmd, cwd=worker_tree, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return "timeout", None, f"forge over {timeout}s"
    out = proc.stdout + proc.stderr
    if "Compiling" in out and "No files changed" not in out:
        log(f"warning: forge recompiled in {worker_tree} (the harness sources changed?)")
    fail = forge_failure(out)
    if fail:
        return "fail", fail[0], fail[1]
    if proc.returncode == 0:
        return "pass", None, ""
    return "error", None, " | ".join(out.strip().splitlines()[-3:])


_PY_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def run_pytest(tree: Path, tests: list[str], timeout: int | None) -> tuple[str, str | None, str]:
    if not tests:
        return "pass", None, ""
    env = {
        **tool_env(),
        compiler.ENV_CONTRACTS_ROOT: str(tree),
        "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
        # failing examples of mutants must not land in the project's example database
        "HYPOTHESIS_STORAGE_DIRECTORY": str(tree / ".hypothesis"),
    }
    env.pop(compiler.ENV_BUILD_DIR, None)
    argfile = tree / "pytest-args.txt"
    argfile.write_text("\n".join(tests) + "\n")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "--no-header",
        "-p",
        "no:randomly",
        f"@{argfile}",
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=SRC, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return "pass", None, f"python budget of {timeout}s used up before the selected tests ended"
    if proc.returncode == 0:
        return "pass", None, ""
    failed = _PY_FAILED.search(proc.stdout)
    if proc.returncode == 1 and failed:
        return "fail", failed.group(1), ""
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    return "error", None, " | ".join(tail)


def compile_mutant(tree: Path, baseline_build: Path, files: list[str]) -> None:
    """Like app.chain.compiler.compile_contracts, but generates code only for the contracts of ``files`` (the
    mutated sources: the escrow and its libraries; measured 15 s of CPU instead of 22 s). No other contract
    (tUSD, the token doubles, the interface) imports them, so their baseline artifacts are reused, restamped
    with the tree's source hashes so that app.chain.compiler accepts them for this tree."""
    paths = compiler.own_sources(tree)
    source_input = compiler.standard_input(paths, tree)
    source_input["settings"] = {
        **compiler.SETTINGS,
        "outputSelection": {f: {"*": compiler.OUTPUT_SELECTION} for f in files},
    }
    output = compiler._run_solc(compiler.find_solc(), source_input, tree)
    sources = {unit: compiler.sha256_file(tree / unit) for unit in output.get("sources", {})}
    for unit in paths:  # sources the selected contracts do not import are still part of the build
        sources.setdefault(unit, compiler.sha256_file(tree / unit))
    digest = compiler.sources_hash(sources)
    build = tree / compiler.BUILD_DIR
    build.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    for unit in files:
        for name, data in output.get("contracts", {}).get(unit, {}).items():
            evm = data.get("evm", {})
            metadata = data.get("metadata") or "{}"
            version = json.loads(metadata).get("compiler", {}).get("version", compiler.SOLC_VERSION)
            artifact = {
                "contractName": name,
                "sourceName": unit,
                "abi": data.get("abi", []),
                "bytecode": "0x" + evm.get("bytecode", {}).get("object", "").removeprefix("0x"),
                "deployedBytecode": "0x"
                + evm.get("deployedBytecode", {}).get("object", "").removeprefix("0x"),
                "linkReferences": evm.get("bytecode", {}).get("linkReferences", {}),
                "deployedLinkReferences": evm.get("deployedBytecode", {}).get("linkReferences", {}),
                "methodIdentifiers": evm.get("methodIdentifiers", {}),
                "metadata": metadata,
                "compiler": {"version": version, "settings": compiler.SETTINGS},
                "sources": sources,
                "sourcesHash": digest,
            }
            (build / f"{name}.json").write_text(json.dumps(artifact, indent=2, sort_keys=True) + "\n")
            written.add(name)
    for old in baseline_build.glob("*.json"):
        if old.stem in written:
            continue
        artifact = json.loads(old.read_text())
        artifact["sources"] = sources
        artifact["sourcesHash"] = digest
        (build / old.name).write_text(json.dumps(artifact, indent=2, sort_keys=True) + "\n")


class Runner:
    def __init__(
        self,
        forge_map: dict[str, dict[str, Any]],
        pycov: dict[str, Any] | None,
        workers: list[Path],
        entry_selectors: dict[str, str],
        python_budget: int,
        compile_files: list[str],
        functions: dict[str, list[Any]] | None = None,
    ) -> None:
        self.compile_files = compile_files
        self.functions = functions or {}
        self.baseline_build: Path | None = None
        self.python_budget = python_budget
        self.forge_map = forge_map
        self.pycov = pycov
        self.free = list(workers)
        self.lock = threading.Lock()
        self.entry_selectors = entry_selectors  # signature -> selector

    def codegen_files(self, m: Mutant) -> list[str]:
        """Sources whose bytecode a mutant can change. The escrow calls EscrowRegistry's external and public
        functions by DELEGATECALL to a linked address, so a change inside the body of one of them (or of a
        private function, which only they reach) leaves the escrow's bytecode as it was: only the library is
        generated again (the escrow's baseline artifact is reused). A header change (FHR), a change outside
        any function, or one in an internal function (inlined into the escrow) regenerates every target."""
        if m.file != REGISTRY or m.operator == "FHR" or m.function not in self.functions:
            return self.compile_files
        file, start, end = self.functions[m.function]
        text = (SRC / file).read_text(encoding="utf-8").encode()[start:end].decode("utf-8")
        header = text[: text.find("{")] if "{" in text else text
        if file != REGISTRY or not re.search(r"\b(external|public|private)\b", header):
            return self.compile_files
        if not (start <= m.start and m.end <= end) or m.start < start + len(header.encode()):
            return self.compile_files
        return [REGISTRY]

    def select(self, m: Mutant | None) -> tuple[list[str], list[str], list[str]]:
        """(forge unit tests, forge campaign tests, python node ids) covering the mutant."""
        everything = m is None or not m.entry_points or any(e in ("*", "constructor") for e in m.entry_points)
        names = {e.split("(")[0] for e in (m.entry_points if m else [])}
        unit: list[str] = []
        inv: list[str] = []
        for test, info in sorted(self.forge_map.items()):
            if everything or names & set(info["reaches"]):
                (inv if info["campaign"] else unit).append(test)
        py: list[str] = []
        if self.pycov is not None:
            sels = {
                self.entry_selectors[e] for e in (m.entry_points if m else []) if e in self.entry_selectors
            }
            chain_tests = {k: v for k, v in self.pycov.items() if v["selectors"]}
            picked = [k for k, v in chain_tests.items() if everything or sels & set(v["selectors"])]
            py = [*PYTHON_EVERYTHING, *sorted(picked, key=lambda k: (self.pycov[k]["seconds"], k))]  # type: ignore[index]
        return unit, inv, py

    def run(self, m: Mutant | None, python: bool, cache: dict[str, Any]) -> Outcome:
        started = time.monotonic()
        tree = make_tree(m)
        try:
            ckey = sha(
                json.dumps(compiler.SETTINGS, sort_keys=True),
                *(f"{p}:{compiler.sha256_file(tree / p)}" for p in compiler.own_sources(tree)),
            )
            if ckey in cache.get("not_compiled", {}):
                return Outcome(
                    "not_compiled", detail=cache["not_compiled"][ckey], seconds=time.monotonic() - started
                )
            built = VAR / "builds" / ckey[:24]
            compile_seconds = 0.0
            try:
                if built.is_dir():  # compiled by an earlier run: same sources, same settings
                    shutil.copytree(built, tree / compiler.BUILD_DIR)
                else:
                    t0 = time.monotonic()
                    if m is None or self.baseline_build is None:
                        compiler.compile_contracts(root=tree, build_dir=tree / compiler.BUILD_DIR)
                    else:
                        compile_mutant(tree, self.baseline_build, self.codegen_files(m))
                    compile_seconds = time.monotonic() - t0
                    shutil.copytree(tree / compiler.BUILD_DIR, built.with_suffix(".tmp"), dirs_exist_ok=True)
                    built.with_suffix(".tmp").replace(built)
            except compiler.CompilerError as exc:
                lines = [ln for ln in str(exc).splitlines() if ln.strip()]
                detail = next((ln for ln in lines if "Error" in ln), lines[-1] if lines else "")
                cache.setdefault("not_compiled", {})[ckey] = detail
                return Outcome("not_compiled", detail=detail, seconds=time.monotonic() - started)
            env = forge_env(tree)
            unit, inv, py = self.select(m)
            out = Outcome(
                "survived",
                forge_tests=len(unit) + len(inv),
                python_tests=len(py) if python else 0,
                compile_seconds=compile_seconds,
                build=built,
            )
            with self.lock:
                worker = self.free.pop()
            try:
                for group in (unit, inv):
                    status, test, detail = run_forge(worker, env, group, FORGE_TIMEOUT)
                    if status != "pass":
                        break
            finally:
                with self.lock:
                    self.free.append(worker)
            if status == "pass" and python:
                status, test, detail = run_pytest(tree, py, self.python_budget or None)
                out.python_complete = not detail
                stage = "pytest"
            else:
                stage = "forge"
            out.seconds = time.monotonic() - started
            if status == "fail":
                out.status, out.killed_by, out.stage = "killed", test, stage
            elif status in ("error", "timeout"):
                out.status, out.detail, out.stage = status, detail, stage
            return out
        finally:
            shutil.rmtree(tree, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------- main


def load_reviews() -> tuple[dict[str, str], dict[str, str]]:
    """contracts/mutation/equivalent.json: ({key: why equivalent}, {key: the test written to kill it}).

    Read from the project (not the snapshot) when the report is written: the reviews only annotate outcomes
    and change no test's result, so survivors can be reviewed while a long run goes on."""
    path = ROOT / EQUIVALENT_FILE
    if not path.is_file():
        return {}, {}
    data = json.loads(path.read_text())
    return (
        {e["key"]: e["why"] for e in data.get("equivalent", [])},
        {e["key"]: e["test"] for e in data.get("killed", [])},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, help="slither mutants to draw (0: all)")
    parser.add_argument("--seed", type=int, default=11, help="seed of the sample")
    parser.add_argument("--only", nargs="+", help="run only these mutant ids (see --list)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--jobs", type=int, default=2, help="mutants processed at once (one core each)")
    parser.add_argument("--no-python", action="store_true", help="forge tests only")
    parser.add_argument(
        "--python-budget", type=int, default=PYTHON_BUDGET, help="pytest seconds per mutant (0: no limit)"
    )
    parser.add_argument("--no-slither", action="store_true", help="hand-made mutants only")
    parser.add_argument(
        "--output", type=Path, default=VAR / "report.json", help="where to write the JSON too"
    )
    parser.add_argument("--keep-snapshot", action="store_true", help="keep the private copy of the project")
    parser.add_argument(
        "--contracts-at",
        metavar="REV",
        help="mutate contracts/src as committed at REV (tests as they are now)",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        help="an earlier report.json of the same contracts/src: its kills are kept, the rest runs again",
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    started = time.monotonic()
    VAR.mkdir(parents=True, exist_ok=True)
    global SRC
    SRC, contract = snapshot(args.contracts_at)
    log(
        f"snapshot of the project at {contract['commit'][:10]}"
        f"{' (contracts/src differs from it)' if contract['contracts_src_dirty'] else ''}"
        f" in {SRC}: contracts/src sha256 {contract['contracts_src_sha256'][:16]}"
    )
    try:
        return run_check(args, parser, started, contract)
    finally:
        if not args.keep_snapshot:
            shutil.rmtree(SRC, ignore_errors=True)


def run_check(
    args: argparse.Namespace, parser: argparse.ArgumentParser, started: float, contract: dict[str, Any]
) -> int:
    targets = sorted({p.relative_to(SRC).as_posix() for pat in TARGETS for p in SRC.glob(pat) if p.is_file()})
    gen = generate_slither(targets)
    all_patches = gen["mutants"]
    if args.no_slither:
        gen = {**gen, "mutants": []}
    # --only picks among all the mutants, not only the sample
    mutants, not_applicable, distinct = build_mutants(gen, 0 if args.only else args.sample, args.seed)
    if args.only:
        mutants = [m for m in mutants if m.id in args.only]
        unknown = set(args.only) - {m.id for m in mutants}
        if unknown:
            parser.error(f"unknown mutants: {', '.join(sorted(unknown))}")
    for name, why in not_applicable.items():
        log(f"WARNING: hand mutant {name} not applied: {why}")
    if args.list:
        for m in mutants:
            print(f"{m.id}  {m.file}:{m.line}  {m.function}\n  - {m.old!r}\n  + {m.new!r}")
        print(f"{len(mutants)} mutants ({distinct} distinct slither mutants before sampling)")
        return 0
    log(
        f"{len(mutants)} mutants: {sum(m.operator == 'HAND' for m in mutants)} hand-made, "
        f"{sum(m.operator != 'HAND' for m in mutants)} of slither's {distinct}"
        f" (sample {args.sample}, seed {args.seed})"
    )

    # forge worker trees, built in parallel (cached across runs by forge's own cache)
    t0 = time.monotonic()
    workers = [prepare_forge_tree(claim_forge_slot()) for _ in range(max(1, args.jobs))]
    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        list(pool.map(forge_build, workers))
    log(f"forge harness built in {time.monotonic() - t0:.0f}s")
    entry_names = {e.split("(")[0] for e in gen["entry_points"]}
    forge_map = forge_test_map(entry_names)
    entry_selectors = {e: selector(e) for e in gen["entry_points"] if e not in ("constructor", "*")}

    # baseline: the unmutated contracts through the same pipeline (compiled once, kept in var/mutation/builds)
    runner = Runner(forge_map, None, workers, entry_selectors, args.python_budget, targets, gen["functions"])
    base = runner.run(None, python=False, cache={})
    runner.baseline_build = base.build
    if base.status != "survived":
        log(
            "baseline: the forge tests fail on the unmutated contracts"
            f" ({base.status} {base.killed_by} {base.detail})"
        )
        return 2
    if base.compile_seconds:
        log(f"one compile (app.chain.compiler, project settings): {base.compile_seconds:.1f}s")
    if not args.no_python:  # the Python coverage map, built on the unmutated contracts (cached)
        base_tree = make_tree(None)
        assert base.build is not None
        shutil.copytree(base.build, base_tree / compiler.BUILD_DIR)
        runner.pycov = python_coverage(base_tree, args.jobs)
        shutil.rmtree(base_tree, ignore_errors=True)
    log(f"baseline: {base.forge_tests} forge tests pass on the unmutated contracts in {base.seconds:.0f}s")

    cache_file = VAR / "compile-cache.json"
    cache: dict[str, Any] = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    outcomes: dict[str, Outcome] = {}
    done = [0]

    def one(m: Mutant) -> None:
        try:
            o = runner.run(m, python=not args.no_python, cache=cache)
        except Exception as exc:  # a harness failure on one mutant must not lose the others
            o = Outcome("error", detail=f"{type(exc).__name__}: {exc}")
        outcomes[m.id] = o
        done[0] += 1
        log(
            f"[{done[0]}/{len(mutants)}] {m.id:22} {m.file.split('/')[-1]}:{m.line:<4} {o.status:12} "
            f"{o.stage or '':6} {o.killed_by or o.detail[:90]} ({o.seconds:.0f}s)"
        )

    # --resume: a mutant an earlier report of the SAME contracts/src saw killed, by a test that still exists,
    # stays killed (adding tests or equivalence reviews cannot revive it); a survivor reviewed as equivalent
    # stays a survivor (no test can kill it); a mutant that did not compile stays so. Only the others run.
    reused: dict[str, str] = {}
    if args.resume:
        previous = json.loads(args.resume.read_text())
        if previous.get("contract", {}).get("contracts_src_sha256") != contract["contracts_src_sha256"]:
            log(f"--resume: {args.resume} is of another contracts/src: every mutant runs")
        else:
            reviewed_equivalent, _ = load_reviews()
            key_of = {m.id: m.key() for m in mutants}
            for d in previous.get("details", []):
                if d["id"] not in key_of:
                    continue
                test = d.get("killed_by") or ""
                still = test in forge_map or (
                    d.get("stage") == "pytest" and (SRC / test.split("::")[0]).is_file()
                )
                status = d.get("status")
                if status == "killed" and still:
                    outcomes[d["id"]] = Outcome(
                        "killed",
                        killed_by=test,
                        stage=d.get("stage"),
                        detail="reused from " + args.resume.name,
                    )
                elif status == "not_compiled" or (
                    status == "survived" and key_of[d["id"]] in reviewed_equivalent
                ):
                    outcomes[d["id"]] = Outcome(
                        status,
                        stage=d.get("stage"),
                        detail=d.get("detail") or "reused from " + args.resume.name,
                        python_complete=d.get("python_complete"),
                        forge_tests=d.get("forge_tests", 0),
                        python_tests=d.get("python_tests", 0),
                    )
                else:
                    continue
                reused[d["id"]] = status
            log(f"--resume: {len(reused)} outcomes reused from {args.resume}")

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(one, [m for m in mutants if m.id not in reused]))
    cache_file.write_text(json.dumps(cache))

    equivalents, kills = load_reviews()
    # reviews whose mutant no longer exists (the contract changed under them): to be reviewed again
    current = {f"{p['file']}|{p['function']}|{p['old'].strip()}|{p['new'].strip()}" for p in all_patches} | {
        m.key() for m in mutants
    }
    stale = sorted(k for k in [*equivalents, *kills] if k not in current)
    for k in stale:
        log(f"WARNING: contracts/mutation/equivalent.json reviews a mutant that no longer exists: {k}")
    compiled = [m for m in mutants if outcomes[m.id].status != "not_compiled"]
    killed = [m for m in compiled if outcomes[m.id].status == "killed"]
    survivors = [m for m in compiled if outcomes[m.id].status != "killed"]
    equivalent = [m for m in survivors if outcomes[m.id].status == "survived" and m.key() in equivalents]
    unexplained = [m for m in survivors if m not in equivalent]
    # mutants that survived an earlier run and were killed by a test written for them (recorded in the file)
    now_killed = [m for m in killed if m.key() in kills]
    denominator = len(compiled) - len(equivalent)
    seconds = round(time.monotonic() - started)

    def diff(m: Mutant) -> str:
        return f"- {m.old}\n+ {m.new}"

    def detail(m: Mutant) -> dict[str, Any]:
        o = outcomes[m.id]
        return {
            "id": m.id,
            "operator": m.operator,
            "file": m.file,
            "line": m.line,
            "function": m.function,
            "original": m.old,
            "mutated": m.new,
            "status": o.status,
            "stage": o.stage,
            "killed_by": o.killed_by,
            "forge_tests": o.forge_tests,
            "python_tests": o.python_tests,
            "python_complete": o.python_complete,
            "seconds": round(o.seconds, 1),
            "compile_seconds": round(o.compile_seconds, 1),
            "detail": o.detail,
            "key": m.key(),
            **({"equivalent": equivalents[m.key()]} if m in equivalent else {}),
        }

    def survivor(m: Mutant) -> dict[str, Any]:
        o = outcomes[m.id]
        if m in equivalent:
            verdict = f"equivalent: {equivalents[m.key()]}"
        elif m in now_killed:
            verdict = f"killed by: {o.killed_by} ({o.stage})"
        else:
            verdict = f"UNEXPLAINED ({o.status}{': ' + o.detail if o.detail else ''})"
        return {
            "id": m.id,
            "file": m.file,
            "line": m.line,
            "operator": m.operator,
            "function": m.function,
            "diff": diff(m),
            "status": o.status,
            "verdict": verdict,
            **({"python_complete": o.python_complete} if o.python_complete is not None else {}),
        }

    report = {
        "contract": {k: v for k, v in contract.items() if k != "snapshot"},
        "mutants_total": len(mutants),
        "hand_mutants": sum(m.operator == "HAND" for m in mutants),
        "slither_mutants": sum(m.operator != "HAND" for m in mutants),
        "slither_distinct_mutants": distinct,
        "compiled": len(compiled),
        "not_compiled": len(mutants) - len(compiled),
        "killed": len(killed),
        "survived": len(survivors),
        "equivalent": len(equivalent),
        "unexplained_survivors": len(unexplained),
        "score": round(len(killed) / denominator, 4) if denominator else None,
        "score_counting_equivalents": round(len(killed) / len(compiled), 4) if compiled else None,
        "duration_seconds": seconds,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "resumed_from": str(args.resume) if args.resume else None,
        "outcomes_reused": len(reused),
        "command": " ".join(["scripts/mutation_check.py", *args.argv]),
        "sample": {"size": args.sample, "seed": args.seed, "min_per_operator": MIN_PER_OPERATOR},
        "python": not args.no_python,
        "python_budget_seconds": args.python_budget,
        # survivors of this run (equivalent, or unexplained) and mutants that survived an earlier run and
        # are now killed by a test written for them (contracts/mutation/equivalent.json "killed")
        "survivors": [survivor(m) for m in [*survivors, *now_killed]],
        "hand_not_applicable": not_applicable,
        "stale_reviews": stale,
        "by_operator": {
            op: {
                "mutants": sum(m.operator == op for m in mutants),
                "compiled": sum(m.operator == op for m in compiled),
                "killed": sum(m.operator == op for m in killed),
            }
            for op in sorted({m.operator for m in mutants})
        },
        "killed_by_stage": {s: sum(outcomes[m.id].stage == s for m in killed) for s in ("forge", "pytest")},
        "details": [detail(m) for m in mutants],
    }
    text = json.dumps(report, indent=2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(text)
    log(
        f"score {report['score']} ({len(killed)} killed of {denominator} = {len(compiled)} compiled - "
        f"{len(equivalent)} equivalent; {len(unexplained)} unexplained survivors;"
        f" {report['not_compiled']} did not compile)"
        f" in {seconds // 60}m{seconds % 60:02d}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
