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
# Same settings as app/chain/compiler.py (viaIR: legacy codegen may not fit the stack).
node - "$INPUT" <<'JS'
const fs = require('fs');
const path = require('path');
const walk = (dir) => fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
  const p = path.posix.join(dir, e.name);
  return e.isDirectory() ? walk(p) : (e.name.endsWith('.sol') ? [p] : []);
});
const files = walk('contracts/src').sort();
if (files.length === 0) { console.error('slither: no .sol files under contracts/src'); process.exit(1); }
const input = {
  language: 'Solidity',
  sources: Object.fromEntries(files.map((f) => [f, { urls: [f] }])),
  settings: {
    optimizer: { enabled: true, runs: 10000 },
    viaIR: true,
    evmVersion: 'cancun',
    remappings: ['@openzeppelin/=node_modules/@openzeppelin/'],
  },
};
fs.writeFileSync(process.argv[2], JSON.stringify(input, null, 2));
console.log(`slither: analysing ${files.length} files under contracts/src`);
JS

exec "$SLITHER" "$INPUT" \
  --compile-force-framework solc-json \
  --solc "$ROOT/tools/solc" \
  --solc-remaps "@openzeppelin/=node_modules/@openzeppelin/" \
  --exclude-dependencies \
  --filter-paths node_modules \
  "${SLITHER_FAIL:---fail-medium}" \
  "$@"
