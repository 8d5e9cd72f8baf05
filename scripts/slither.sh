#!/usr/bin/env bash
# Static analysis of contracts/src with slither (from .venv-tools, see scripts/bootstrap.sh --with-lint),
# compiling through the solcjs shim tools/solc with the project's compiler settings. Fails on findings of
# medium severity or above (SLITHER_FAIL=--fail-high/--fail-low/--fail-none to change). Extra arguments go to
# slither (e.g. --checklist, --triage-mode).
#
# Why a standard-JSON input file and --compile-force-framework: with foundry.toml at the root, crytic-compile
# takes a directory target inside the repo for a Foundry project (and runs `forge build`), ignoring
# --solc-standard-json; forcing its "Solc-json" platform on an input file keeps slither on the shim. It still
# reads remappings and settings through `forge config --json`, so forge must be on PATH and FOUNDRY_SOLC set.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SLITHER="$ROOT/.venv-tools/bin/slither"
[[ -x "$SLITHER" ]] || { echo "slither: not installed; run: bash scripts/bootstrap.sh --with-lint" >&2; exit 1; }

export PATH="$ROOT/node_modules/@foundry-rs/forge-linux-amd64/bin:$PATH"
export FOUNDRY_SOLC="$ROOT/tools/solc"
mkdir -p var
INPUT="var/slither-input.json"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || { echo "slither: .venv missing; run: bash scripts/bootstrap.sh" >&2; exit 1; }
# Same compiler settings as app/chain/compiler.py (the single source of truth); slither picks its own outputs.
"$PY" - "$INPUT" <<'PY'
import json
import sys
from pathlib import Path

from app.chain.compiler import SETTINGS

files = sorted(p.as_posix() for p in Path("contracts/src").rglob("*.sol") if p.is_file())
if not files:
    sys.exit("slither: no .sol files under contracts/src")
settings = {k: v for k, v in SETTINGS.items() if k != "outputSelection"}
source_input = {
    "language": "Solidity",
    "sources": {f: {"urls": [f]} for f in files},
    "settings": settings,
}
Path(sys.argv[1]).write_text(json.dumps(source_input, indent=2))
print(f"slither: analysing {len(files)} files under contracts/src")
PY

exec "$SLITHER" "$INPUT" \
  --compile-force-framework solc-json \
  --solc "$ROOT/tools/solc" \
  --solc-remaps "@openzeppelin/=node_modules/@openzeppelin/" \
  --exclude-dependencies \
  --filter-paths node_modules \
  "${SLITHER_FAIL:---fail-medium}" \
  "$@"
