"""Solidity compiler pipeline: compile our contracts, write artifacts, detect stale artifacts.

Every ``contracts/src/**/*.sol`` and ``contracts/test/**/*.sol`` (test doubles) goes into one
standard-JSON compilation with pinned settings. Each contract defined in those files gets
``contracts/build/<ContractName>.json`` holding its ABI, bytecode and the sha256 of every source
that went into the compilation (OpenZeppelin imports included), so :func:`load_artifact` can refuse
an artifact that no longer matches the sources on disk.

The compiler is a native ``solc`` 0.8.30 if one is on PATH, else the solcjs shim ``tools/solc``.

CLI: ``python -m app.chain.compiler`` compiles; ``python -m app.chain.compiler --check`` only
checks the artifacts and exits 1 naming the stale file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import solcx
from solcx.exceptions import SolcError

SOLC_VERSION = "0.8.30"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIM = PROJECT_ROOT / "tools" / "solc"
SOURCE_DIRS: tuple[str, ...] = ("contracts/src", "contracts/test")
BUILD_DIR = "contracts/build"
#: Environment overrides for tools that build a copy of the contracts elsewhere (scripts/mutation_check.py):
#: the tree holding the ``contracts/src`` and ``contracts/test`` the artifacts were built from, and the folder
#: the artifacts are read from (default ``<that tree>/contracts/build``).
ENV_CONTRACTS_ROOT = "TRADEGUARD_CONTRACTS_ROOT"
ENV_BUILD_DIR = "TRADEGUARD_BUILD_DIR"

OUTPUT_SELECTION: list[str] = [
    "abi",
    "evm.bytecode.object",
    "evm.bytecode.linkReferences",
    "evm.deployedBytecode.object",
    "evm.deployedBytecode.linkReferences",
    "evm.methodIdentifiers",
    "metadata",
]

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 600},
    "viaIR": True,
    "evmVersion": "cancun",
    "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
    "outputSelection": {"*": {"*": OUTPUT_SELECTION}},
}

_VERSION_RE = re.compile(r"Version:\s*(\d+\.\d+\.\d+)")

JSON = dict[str, Any]


class CompilerError(Exception):
    """Compilation failed, or the compiler could not be run."""

    def __init__(self, message: str, errors: Sequence[str] = ()) -> None:
        self.errors: list[str] = list(errors)
        if self.errors:
            message = message + "\n" + "\n".join(self.errors)
        super().__init__(message)


class StaleArtifactError(CompilerError):
    """An artifact no longer matches the sources or compiler; recompile (``make compile``)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class MissingArtifactError(StaleArtifactError):
    """No artifact was built for the requested contract."""


@dataclass(frozen=True)
class CompileResult:
    """What :func:`compile_contracts` produced."""

    artifacts: dict[str, Path]
    deployed_sizes: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    solc: str = ""


# --------------------------------------------------------------------------------------------
# compiler discovery


def solc_version_of(binary: str | Path) -> str | None:
    """Return ``X.Y.Z`` reported by ``binary --version``, or None if it cannot be run."""
    try:
        proc = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_RE.search(proc.stdout)
    return match.group(1) if proc.returncode == 0 and match else None


def find_solc() -> Path:
    """A native ``solc`` on PATH if it reports exactly :data:`SOLC_VERSION`, else the shim."""
    native = shutil.which("solc")
    if native is not None and solc_version_of(native) == SOLC_VERSION:
        return Path(native)
    return SHIM


# --------------------------------------------------------------------------------------------
# sources and hashes


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sources_hash(sources: dict[str, str]) -> str:
    """One digest over ``{path: sha256}``, independent of ordering."""
    text = "".join(f"{path}\0{digest}\n" for path, digest in sorted(sources.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def own_sources(root: Path = PROJECT_ROOT) -> list[str]:
    """Our ``.sol`` files, as POSIX paths relative to ``root`` (the names solc sees)."""
    found: list[str] = []
    for rel in SOURCE_DIRS:
        base = root / rel
        if base.is_dir():
            found.extend(p.relative_to(root).as_posix() for p in base.rglob("*.sol") if p.is_file())
    return sorted(found)


def standard_input(paths: Iterable[str], root: Path = PROJECT_ROOT) -> JSON:
    """Standard-JSON input: our files by content; imports are resolved by the compiler."""
    return {
        "language": "Solidity",
        "sources": {p: {"content": (root / p).read_text(encoding="utf-8")} for p in paths},
        "settings": SETTINGS,
    }


# --------------------------------------------------------------------------------------------
# compile


def _hex(obj: str) -> str:
    return obj if obj.startswith("0x") else "0x" + obj


def _formatted(errors: Iterable[JSON], severity: str) -> list[str]:
    out: list[str] = []
    for err in errors:
        if (err.get("severity") == "error") == (severity == "error"):
            out.append(str(err.get("formattedMessage") or err.get("message") or err).rstrip())
    return out


def _run_solc(solc: Path, input_json: JSON, root: Path) -> JSON:
    try:
        output: JSON = solcx.compile_standard(
            input_json, solc_binary=solc, base_path=root, allow_paths=[root]
        )
    except SolcError as exc:
        raw = getattr(exc, "error_dict", None) or []
        errors = _formatted(raw, "error") if raw else [str(exc)]
        raise CompilerError("solc reported errors:", errors) from exc
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise CompilerError(f"could not run solc ({solc}): {exc}") from exc
    errors = _formatted(output.get("errors", []), "error")
    if errors:
        raise CompilerError("solc reported errors:", errors)
    return output


def compile_contracts(
    root: Path = PROJECT_ROOT, build_dir: Path | None = None, solc: Path | None = None
) -> CompileResult:
    """Compile our sources and write one artifact per contract to ``contracts/build``."""
    started = time.monotonic()
    root = root.resolve()
    build = build_dir if build_dir is not None else root / BUILD_DIR
    solc = solc if solc is not None else find_solc()
    paths = own_sources(root)
    if not paths:
        raise CompilerError(f"no .sol files under {', '.join(SOURCE_DIRS)} in {root}")

    output = _run_solc(solc, standard_input(paths, root), root)
    warnings = _formatted(output.get("errors", []), "warning")

    # Every source unit that went into the compilation, as solc named it (imports included).
    sources: dict[str, str] = {}
    for unit in output.get("sources", {}):
        file = root / unit
        if not file.is_file():
            raise CompilerError(f"solc used source {unit!r}, which is not a file under {root}")
        sources[unit] = sha256_file(file)
    digest = sources_hash(sources)

    contracts: dict[str, tuple[str, JSON]] = {}
    for unit in paths:
        for name, data in output.get("contracts", {}).get(unit, {}).items():
            if name in contracts:
                raise CompilerError(
                    f"contract name {name!r} is defined in both {contracts[name][0]} and {unit}"
                )
            contracts[name] = (unit, data)
    if not contracts:
        raise CompilerError("solc produced no contracts")

    build.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    for name, (unit, data) in sorted(contracts.items()):
        evm = data.get("evm", {})
        metadata = data.get("metadata") or "{}"
        long_version = json.loads(metadata).get("compiler", {}).get("version", SOLC_VERSION)
        creation = evm.get("bytecode", {})
        runtime = evm.get("deployedBytecode", {})
        deployed = _hex(runtime.get("object", ""))
        artifact: JSON = {
            "contractName": name,
            "sourceName": unit,
            "abi": data.get("abi", []),
            "bytecode": _hex(creation.get("object", "")),
            "deployedBytecode": deployed,
            # {sourceName: {libraryName: [{start, length}]}} (byte offsets); see link_bytecode().
            "linkReferences": creation.get("linkReferences", {}),
            "deployedLinkReferences": runtime.get("linkReferences", {}),
            "methodIdentifiers": evm.get("methodIdentifiers", {}),
            "metadata": metadata,
            "compiler": {"version": long_version, "settings": SETTINGS},
            "sources": sources,
            "sourcesHash": digest,
        }
        target = build / f"{name}.json"
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(artifact, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(target)
        written[name] = target
        sizes[name] = (len(deployed) - 2) // 2

    # Drop artifacts of contracts that no longer exist, so check_artifacts() sees a clean set.
    for old in build.glob("*.json"):
        if old.stem not in written:
            old.unlink()

    return CompileResult(
        artifacts=written,
        deployed_sizes=sizes,
        warnings=warnings,
        seconds=time.monotonic() - started,
        solc=str(solc),
    )


def link_bytecode(artifact: JSON, libraries: dict[str, str], deployed: bool = False) -> str:
    """Return the artifact's (creation or runtime) bytecode with library addresses filled in.

    ``libraries`` maps a library's contract name (e.g. ``"EscrowRegistry"``) to its address.
    """
    code = str(artifact["deployedBytecode" if deployed else "bytecode"])
    refs: dict[str, dict[str, list[dict[str, int]]]] = artifact.get(
        "deployedLinkReferences" if deployed else "linkReferences", {}
    )
    body = list(code[2:] if code.startswith("0x") else code)
    for _source, libs in refs.items():
        for lib, spots in libs.items():
            if lib not in libraries:
                raise CompilerError(f"{artifact.get('contractName')} needs library {lib} linked")
            address = libraries[lib].lower().removeprefix("0x")
            if len(address) != 40:
                raise CompilerError(f"bad address for library {lib}: {libraries[lib]!r}")
            for spot in spots:
                start, length = spot["start"] * 2, spot["length"] * 2
                body[start : start + length] = list(address)
    linked = "".join(body)
    if "__$" in linked:
        raise CompilerError(f"{artifact.get('contractName')}: unlinked library placeholder left")
    return "0x" + linked


# --------------------------------------------------------------------------------------------
# load and staleness


def _check(artifact: JSON, where: Path, root: Path) -> None:
    compiler = artifact.get("compiler", {})
    version = str(compiler.get("version", ""))
    if version.split("+")[0] != SOLC_VERSION:
        raise StaleArtifactError(
            f"{where}: built with solc {version or '?'}, expected {SOLC_VERSION}", str(where)
        )
    if compiler.get("settings") != SETTINGS:
        raise StaleArtifactError(f"{where}: built with other compiler settings", str(where))
    sources = artifact.get("sources")
    if not isinstance(sources, dict) or not sources:
        raise StaleArtifactError(f"{where}: lists no sources", str(where))
    for unit, digest in sorted(sources.items()):
        file = root / unit
        if not file.is_file():
            raise StaleArtifactError(f"{where}: source {unit} is missing", unit)
        if sha256_file(file) != digest:
            raise StaleArtifactError(f"{where}: source {unit} changed since the build", unit)
    for unit in own_sources(root):
        if unit not in sources:
            raise StaleArtifactError(f"{where}: source {unit} was added after the build", unit)


def artifacts_root() -> Path:
    """The source tree artifacts are checked against: ``$TRADEGUARD_CONTRACTS_ROOT`` or the project."""
    override = os.environ.get(ENV_CONTRACTS_ROOT)
    return Path(override).resolve() if override else PROJECT_ROOT


def artifacts_dir(root: Path | None = None) -> Path:
    """Where artifacts are read: ``$TRADEGUARD_BUILD_DIR``, else ``<root>/contracts/build``.

    With an explicit ``root`` the environment is ignored.
    """
    if root is not None:
        return root / BUILD_DIR
    override = os.environ.get(ENV_BUILD_DIR)
    return Path(override).resolve() if override else artifacts_root() / BUILD_DIR


def load_artifact(name: str, root: Path | None = None, build_dir: Path | None = None) -> JSON:
    """Read ``contracts/build/<name>.json``; raise :class:`StaleArtifactError` if out of date.

    Defaults come from :func:`artifacts_root` and :func:`artifacts_dir` (environment overrides).
    """
    build = build_dir if build_dir is not None else artifacts_dir(root)
    root = root if root is not None else artifacts_root()
    where = build / f"{name}.json"
    if not where.is_file():
        raise MissingArtifactError(f"no artifact for {name} at {where}; run `make compile`", str(where))
    try:
        artifact: JSON = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StaleArtifactError(f"{where}: unreadable ({exc})", str(where)) from exc
    _check(artifact, where, root)
    return artifact


def check_artifacts(root: Path | None = None, build_dir: Path | None = None) -> list[str]:
    """Check every artifact in the build folder; return their names, raise if any is stale."""
    build = build_dir if build_dir is not None else artifacts_dir(root)
    root = root if root is not None else artifacts_root()
    names = sorted(p.stem for p in build.glob("*.json")) if build.is_dir() else []
    if not names:
        raise MissingArtifactError(f"no artifacts in {build}; run `make compile`", str(build))
    for name in names:
        load_artifact(name, root, build)
    return names


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.chain.compiler", description="Compile the Solidity contracts."
    )
    parser.add_argument("--check", action="store_true", help="only check the artifacts are up to date")
    args = parser.parse_args(argv)
    if args.check:
        try:
            names = check_artifacts()
        except StaleArtifactError as exc:
            print(f"stale artifacts: {exc}\nrun `make compile`", file=sys.stderr)
            return 1
        print(f"artifacts up to date: {', '.join(names)}")
        return 0
    try:
        result = compile_contracts()
    except CompilerError as exc:
        print(f"compile failed: {exc}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    for name, path in result.artifacts.items():
        rel = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
        print(f"{name:32} {result.deployed_sizes[name]:6} bytes deployed  -> {rel}")
    print(
        f"compiled {len(result.artifacts)} contracts with {result.solc} in {result.seconds:.1f}s"
        f" ({len(result.warnings)} warnings)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
