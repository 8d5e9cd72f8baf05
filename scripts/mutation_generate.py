#!/usr/bin/env python3
"""List slither-mutate's mutants of the escrow without running anything (helper of scripts/mutation_check.py).

Runs in the tool venv (``.venv-tools/bin/python``, which holds slither; see ``make setup-lint``), never in
the app venv. ``slither-mutate`` itself edits the sources in place and runs one shell test command per mutant;
here we only instantiate its mutator classes (``slither.tools.mutator.mutators``) on each target contract and
call their ``_mutate()``, which returns the patches (byte range, old text, new text, line) that
``slither-mutate`` would apply. mutation_check.py applies them to copies, deduplicates them and chooses the
tests per mutant.

Besides the patches it writes a static call map: for every function and modifier of the mutated contracts, the
external or public functions of the escrow that reach it (through internal calls, library calls, modifiers).
That map is how mutation_check.py selects the tests covering a mutant.

    .venv-tools/bin/python scripts/mutation_generate.py <project root> <output.json> [target .sol ...]

``<project root>`` holds ``contracts/src``; targets are paths relative to it (default: the escrow and the
libraries). Compiles through the solcjs shim with the project's settings (read from app/chain/compiler.py as
text, since the app is not importable from this venv).
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TARGETS = ("contracts/src/TradeGuardEscrow.sol", "contracts/src/libraries/*.sol")
ESCROW_CONTRACT = "TradeGuardEscrow"


def project_settings() -> dict[str, Any]:
    """``SETTINGS`` of app/chain/compiler.py without its output selection (slither chooses its own)."""
    tree = ast.parse((ROOT / "app/chain/compiler.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "SETTINGS":
            value = node.value
            assert isinstance(value, ast.Dict)
            settings: dict[str, Any] = {}
            for key, val in zip(value.keys, value.values, strict=True):
                name = ast.literal_eval(key) if key is not None else None
                if name in ("optimizer", "viaIR", "evmVersion", "remappings"):
                    settings[str(name)] = ast.literal_eval(val)
            return settings
    raise SystemExit("mutation_generate: SETTINGS not found in app/chain/compiler.py")


def called_functions(fn: Any) -> set[Any]:
    """Functions and modifiers ``fn`` reaches directly (internal, library and modifier calls)."""
    out: set[Any] = set()
    for call in list(fn.internal_calls) + list(getattr(fn, "library_calls", [])):
        target = getattr(call, "function", call)
        if hasattr(target, "canonical_name"):
            out.add(target)
    for mod in getattr(fn, "modifiers", []):
        if hasattr(mod, "canonical_name"):
            out.add(mod)
    return out


def main(argv: list[str]) -> int:
    logging.disable(logging.CRITICAL)
    from slither import Slither
    from slither.tools.mutator.mutators import all_mutators
    from slither.tools.mutator.mutators.abstract_mutator import AbstractMutator

    tree = Path(argv[1]).resolve()
    output = Path(argv[2])
    patterns = argv[3:] or list(DEFAULT_TARGETS)
    targets = sorted(
        {p.relative_to(tree).as_posix() for pat in patterns for p in tree.glob(pat) if p.is_file()}
    )
    sources = sorted(p.relative_to(tree).as_posix() for p in (tree / "contracts/src").rglob("*.sol"))

    # crytic-compile looks for the project root from the input file's folder: keep it inside the tree.
    (tree / "var").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tg-mutgen-", dir=tree / "var") as tmp:
        input_file = Path(tmp) / "input.json"
        input_file.write_text(
            json.dumps(
                {
                    "language": "Solidity",
                    "sources": {f: {"urls": [f]} for f in sources},
                    "settings": project_settings(),
                }
            )
        )
        import os

        os.chdir(tree)
        sl = Slither(
            str(input_file),
            compile_force_framework="solc-json",
            solc=str(ROOT / "tools" / "solc"),
            solc_remaps="@openzeppelin/=node_modules/@openzeppelin/",
        )

    mutators = sorted(
        (
            c
            for c in vars(all_mutators).values()
            if inspect.isclass(c) and issubclass(c, AbstractMutator) and c is not AbstractMutator
        ),
        key=lambda c: c.NAME,
    )

    # All contracts of the compilation, by name; the escrow's entry points and what each reaches.
    contracts: dict[str, Any] = {}
    unit_of: dict[str, Any] = {}
    for unit in sl.compilation_units:
        for c in unit.contracts:
            contracts.setdefault(c.name, c)
            unit_of.setdefault(c.name, unit)
    escrow = contracts.get(ESCROW_CONTRACT)
    if escrow is None:
        raise SystemExit(f"mutation_generate: contract {ESCROW_CONTRACT} not found")

    def reach(fn: Any) -> set[Any]:
        seen: set[Any] = set()
        todo = [fn]
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            todo.extend(called_functions(f))
        return seen

    reached_by: dict[str, set[str]] = {}
    for fn in escrow.functions:
        if fn.is_constructor:
            entry = "constructor"
        elif fn.visibility in ("external", "public") and not fn.is_shadowed:
            entry = fn.solidity_signature
        else:
            continue
        for f in reach(fn):
            reached_by.setdefault(f.canonical_name, set()).add(entry)

    mutants: list[dict[str, Any]] = []
    for target in targets:
        name = Path(target).stem
        contract = contracts.get(name)
        if contract is None or contract.is_interface:
            print(f"mutation_generate: no contract {name} in {target}, skipped", file=sys.stderr)
            continue
        text = (tree / target).read_bytes()
        # function spans, to name the function each patch falls in
        spans = []
        for fn in contract.functions_and_modifiers_declared:
            sm = fn.source_mapping
            spans.append((sm.start, sm.start + sm.length, fn))
        for M in mutators:
            m = M(unit_of[name], 0, "", "", contract, None, False, Path(tempfile.gettempdir()), [])
            try:
                result = m._mutate()
            except Exception as exc:  # a slither mutator that crashes on some construct
                print(f"mutation_generate: {M.NAME} failed on {name}: {exc}", file=sys.stderr)
                continue
            for file, patches in result.get("patches", {}).items():
                if Path(file).resolve() != (tree / target).resolve():
                    continue
                for p in patches:
                    inside = [f for s, e, f in spans if s <= p["start"] < e]
                    fn = min(inside, key=lambda f: f.source_mapping.length) if inside else None
                    mutants.append(
                        {
                            "operator": M.NAME,
                            "file": target,
                            "start": p["start"],
                            "end": p["end"],
                            "line": p["line_number"],
                            "old": text[p["start"] : p["end"]].decode("utf-8"),
                            "new": p["new_string"],
                            "function": fn.canonical_name if fn is not None else None,
                            "entry_points": sorted(reached_by.get(fn.canonical_name, ()))
                            if fn is not None
                            else ["*"],
                        }
                    )
    entry_points = sorted({e for v in reached_by.values() for e in v})
    functions = {
        fn.canonical_name: [t, fn.source_mapping.start, fn.source_mapping.start + fn.source_mapping.length]
        for t in targets
        if (c := contracts.get(Path(t).stem)) is not None
        for fn in c.functions_and_modifiers_declared
    }
    output.write_text(
        json.dumps(
            {
                "operators": {M.NAME: M.HELP for M in mutators},
                "targets": targets,
                "entry_points": entry_points,
                "reached_by": {k: sorted(v) for k, v in sorted(reached_by.items())},
                "functions": functions,
                "mutants": mutants,
            },
            indent=1,
        )
    )
    print(f"mutation_generate: {len(mutants)} patches over {len(targets)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
