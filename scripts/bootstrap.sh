#!/usr/bin/env bash
# Idempotent project setup. Safe to run often: each step is skipped when already up to date.
#   bash scripts/bootstrap.sh              app venv (.venv), node_modules (solc, OpenZeppelin, anvil, forge), var/
#   bash scripts/bootstrap.sh --with-lint  also the tool venv .venv-tools (slither; pins web3<8, so kept apart)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
SLITHER_VERSION="0.11.6"
WITH_LINT=0
for arg in "$@"; do
  case "$arg" in
    --with-lint) WITH_LINT=1 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { echo "bootstrap: $*"; }
# Run quietly; show the output only if the command fails.
quiet() {
  local log rc=0
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then cat "$log" >&2; rm -f "$log"; echo "bootstrap: failed: $*" >&2; exit "$rc"; fi
  rm -f "$log"
}
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# A venv that exists and whose interpreter still runs (a moved or half-made one is rebuilt).
ensure_venv() {
  local dir="$1"
  if [[ -x "$dir/bin/python" ]] && "$dir/bin/python" -c 'import sys' >/dev/null 2>&1; then
    return 0
  fi
  say "creating $dir ($("$PYTHON" --version 2>&1))"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  quiet "$dir/bin/python" -m pip install --disable-pip-version-check --upgrade pip
}

# 1. Python app venv + editable install of the project with dev extras.
ensure_venv .venv
stamp=.venv/.bootstrap-pyproject.sha256
want="$(hash_of pyproject.toml)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  say "pip install -e '.[dev]' into .venv"
  quiet .venv/bin/python -m pip install --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
else
  say ".venv up to date"
fi

# 2. Node toolchain: solc (solcjs), OpenZeppelin, anvil, forge, exactly as package-lock.json says.
command -v npm >/dev/null || { echo "bootstrap: npm not found (apt-get install nodejs npm)" >&2; exit 1; }
stamp=node_modules/.bootstrap-package-lock.sha256
want="$(hash_of package.json package-lock.json)"
if [[ ! -d node_modules || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  say "npm ci"
  quiet npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
else
  say "node_modules up to date"
fi
FOUNDRY_BINS=(
  node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
  node_modules/@foundry-rs/forge-linux-amd64/bin/forge
)
for bin in "${FOUNDRY_BINS[@]}"; do
  [[ -f "$bin" ]] || { echo "bootstrap: missing $bin (is this linux x64?)" >&2; exit 1; }
  [[ -x "$bin" ]] || chmod +x "$bin"
done
chmod +x tools/solc tools/solc-shim.js

# 3. The web console's browser assets, vendored from node_modules into the package (gitignored; copied on
#    every run, a few files): htmx, Chart.js, and Swagger UI / ReDoc so that /docs and /redoc work offline.
VENDOR=app/web/static/vendor
mkdir -p "$VENDOR"
VENDORED=(
  node_modules/htmx.org/dist/htmx.min.js
  node_modules/chart.js/dist/chart.umd.min.js
  node_modules/swagger-ui-dist/swagger-ui-bundle.js
  node_modules/swagger-ui-dist/swagger-ui.css
  node_modules/swagger-ui-dist/favicon-32x32.png
  node_modules/redoc/bundles/redoc.standalone.js
)
for asset in "${VENDORED[@]}"; do
  [[ -f "$asset" ]] || { echo "bootstrap: missing $asset (npm ci incomplete?)" >&2; exit 1; }
  cp -p "$asset" "$VENDOR/"
done

# 4. A browser for the console's tests (tests/web): Debian's chromium, driven by Playwright (Playwright's
#    own browser download cannot reach its host here). Installed when we are root; otherwise say how.
if ! command -v chromium >/dev/null; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    say "apt-get install chromium (browser tests)"
    # (quiet exits on failure: the first try is plain, so that a stale package index gets an update and a retry)
    if ! apt-get install -y chromium >/dev/null 2>&1; then
      quiet apt-get update
      quiet apt-get install -y chromium
    fi
  else
    say "chromium not found: the browser tests (tests/web) will be skipped; install it with" \
      "'sudo apt-get install -y chromium'"
  fi
fi

# 5. Scratch space: forge output/cache, anvil state, logs.
mkdir -p var

# 6. Optional lint tools in their own venv.
if [[ "$WITH_LINT" == 1 ]]; then
  ensure_venv .venv-tools
  stamp=.venv-tools/.bootstrap-tools
  want="slither-analyzer==$SLITHER_VERSION"
  if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    say "pip install $want into .venv-tools"
    quiet .venv-tools/bin/python -m pip install --disable-pip-version-check "$want"
    echo "$want" > "$stamp"
  else
    say ".venv-tools up to date"
  fi
fi

say "ready"
