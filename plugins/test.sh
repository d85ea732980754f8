#!/usr/bin/env bash
# Tests for plugins/: host-side unit tests of the SDK and standard plugins
# (cargo test), then the built modules: ABI shape checked with wasm-objdump,
# and, when node is installed, run end to end against the reference host in
# tools/ (hostile guests included). Builds first via build.sh (quick when
# up to date).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
say() { echo "plugins/test.sh: $*" >&2; }

bash ./build.sh

# --- unit tests on the host target ----------------------------------------------
# Prefer Debian's cargo (the compiler the modules are built with, so 1.63
# compatibility is tested too); rustup's cargo works as well.
if [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ]; then
  cargo_cmd=(env RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc /usr/bin/cargo)
else
  cargo_cmd=(cargo)
fi
lock_backup="$(mktemp)"
trap 'rm -f "$lock_backup"' EXIT
[ -f Cargo.lock ] && cp Cargo.lock "$lock_backup"
if ! log="$("${cargo_cmd[@]}" test --offline --workspace 2>&1)"; then
  echo "$log"
  say "cargo test failed"
  exit 1
fi
echo "$log" | awk '/^test result: ok/ { n += $4 } END { print "plugins: " n " unit tests passed" }'
if [ "$(sed -n 3p Cargo.lock)" != 'version = 3' ]; then
  [ -s "$lock_backup" ] && cp "$lock_backup" Cargo.lock
  say "Cargo.lock was rewritten to a format cargo 1.65 cannot read; restored it. Use /usr/bin/cargo here."
  exit 1
fi

# --- ABI shape of the built modules -----------------------------------------------
want_exports=$'memory\nportcullis_abi_version\nportcullis_alloc\nportcullis_init\nportcullis_on_request'
bad=0
for m in claims-to-headers claims-to-headers-v1 require-claims tenant-guard example-c example-wat example-wat-v1; do
  f="out/$m.wasm"
  exports="$(wasm-objdump -x -j Export "$f" | sed -n 's/.* -> "\(.*\)"$/\1/p' | sort)"
  if [ "$exports" != "$want_exports" ]; then
    say "$f exports: $(echo $exports) (want exactly: $(echo $want_exports))"
    bad=1
  fi
  while read -r imp; do
    [ -z "$imp" ] && continue
    if ! [[ "$imp" =~ ^portcullis\.(set_header|append_header|remove_header|deny|log|claim|claim_kind|claim_count|request_field|request_header|claims_json|request_json|header_batch)$ ]]; then
      say "$f imports $imp (only the ABI's portcullis.* functions exist: set_header append_header remove_header deny log claim claim_kind claim_count request_field request_header claims_json request_json header_batch)"
      bad=1
    fi
  done < <(wasm-objdump -x -j Import "$f" | sed -n 's/.* <- \(.*\)$/\1/p')
done
[ "$bad" = 0 ] || exit 1

# The v1 build of claims-to-headers imports only ABI v1 functions (it must
# load on a v1-only host).
if wasm-objdump -x -j Import out/claims-to-headers-v1.wasm | sed -n 's/.* <- portcullis\.\(.*\)$/\1/p' |
  grep -v -q -E '^(set_header|append_header|remove_header|deny|log)$'; then
  say "out/claims-to-headers-v1.wasm imports an ABI v2 function"
  exit 1
fi

# The inline WAT example in ABI.md must be the (compiled, tested) example.
if ! diff <(sed -n '/^```wat$/,/^```$/p' ABI.md | sed '1d;$d') examples/wat/static-header.wat >/dev/null; then
  say "the \`\`\`wat block in ABI.md differs from examples/wat/static-header.wat"
  exit 1
fi

# --- end to end against the reference host ----------------------------------------
if command -v node >/dev/null 2>&1; then
  node tools/abi-test.mjs
else
  say "node not found: skipping the end-to-end run of the modules (tools/abi-test.mjs)"
fi
echo "plugins: unit tests, ABI shape and end-to-end checks passed"
