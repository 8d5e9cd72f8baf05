#!/usr/bin/env node
// Behaves like a native `solc` binary for tools that shell out to one (py-solc-x, slither, forge),
// backed by solcjs (WebAssembly) from node_modules/solc. Supported:
//   solc --version
//   solc --standard-json [input.json]   (standard JSON from stdin or the file; output JSON on stdout)
// Imports the input does not carry are resolved against the --base-path, each --include-path, the
// repository root and node_modules/. Other flags (--allow-paths, --optimize, ...) are accepted and ignored.
'use strict';

const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');

// Flags of native solc that take a value; their values must not be taken for input files.
const VALUE_FLAGS = new Set([
  '--base-path', '--include-path', '--allow-paths', '--output-dir', '-o', '--evm-version',
  '--optimize-runs', '--libraries', '--combined-json', '--error-recovery', '--model-checker-engine',
  '--model-checker-targets', '--model-checker-timeout', '--model-checker-solvers', '--revert-strings',
  '--debug-info', '--stop-after', '--yul-optimizations', '--eof-version', '--import-ast',
]);

function parseArgs(argv) {
  const opts = { version: false, standardJson: false, help: false, basePath: null, includePaths: [], files: [], unsupported: [] };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value = null;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const takeValue = () => (value !== null ? value : argv[++i]);
    switch (arg) {
      case '--version': opts.version = true; break;
      case '--standard-json': opts.standardJson = true; break;
      case '--help': case '-h': opts.help = true; break;
      case '--base-path': opts.basePath = takeValue(); break;
      case '--include-path': opts.includePaths.push(takeValue()); break;
      default:
        if (VALUE_FLAGS.has(arg)) { takeValue(); }
        else if (arg.startsWith('-')) { opts.unsupported.push(arg); }
        else if (arg.includes('=') && !fs.existsSync(arg)) { /* remapping prefix=target: ignored */ }
        else { opts.files.push(arg); }
    }
  }
  return opts;
}

function loadSolc() {
  return require(path.join(ROOT, 'node_modules', 'solc'));
}

function nativeVersion(solc) {
  // "0.8.30+commit.73712a01.Emscripten.clang" -> "0.8.30+commit.73712a01.Linux.g++"
  return solc.version().replace(/\.Emscripten\.clang$/, '.Linux.g++');
}

function makeFindImports(opts) {
  const roots = [];
  const add = (p) => { if (p) { const r = path.resolve(p); if (!roots.includes(r)) roots.push(r); } };
  add(opts.basePath);
  opts.includePaths.forEach(add);
  add(process.cwd());
  add(ROOT);
  add(path.join(ROOT, 'node_modules'));
  return function findImports(importPath) {
    const candidates = path.isAbsolute(importPath)
      ? [importPath]
      : roots.map((r) => path.join(r, importPath));
    for (const candidate of candidates) {
      try {
        if (fs.statSync(candidate).isFile()) return { contents: fs.readFileSync(candidate, 'utf8') };
      } catch (_) { /* try the next root */ }
    }
    return { error: `File not found: ${importPath} (searched ${roots.join(', ')})` };
  };
}

function writeAndFinish(text, code) {
  // Let Node drain stdout on its own: process.exit() here would cut piped output at 64 KiB.
  process.exitCode = code;
  process.stdout.write(text);
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.version) {
    const solc = loadSolc();
    writeAndFinish(`solc, the solidity compiler commandline interface\nVersion: ${nativeVersion(solc)}\n`, 0);
    return;
  }
  if (opts.help) {
    writeAndFinish('solc (solcjs shim): supports --version and --standard-json only\n', 0);
    return;
  }
  if (!opts.standardJson) {
    process.stderr.write(
      `solc shim: only --version and --standard-json are supported (got: ${process.argv.slice(2).join(' ')})\n`);
    process.exitCode = 1;
    return;
  }
  let input;
  try {
    input = opts.files.length > 0 ? fs.readFileSync(opts.files[0], 'utf8') : fs.readFileSync(0, 'utf8');
  } catch (err) {
    process.stderr.write(`solc shim: cannot read standard JSON input: ${err.message}\n`);
    process.exitCode = 1;
    return;
  }
  const solc = loadSolc();
  const output = solc.compile(input, { import: makeFindImports(opts) });
  // Native solc exits 0 in --standard-json mode even when the output carries errors.
  writeAndFinish(output + '\n', 0);
}

main();
