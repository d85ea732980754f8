#!/usr/bin/env bash
# Builds every Wasm artifact of plugins/ into plugins/out/:
#   claims-to-headers.wasm require-claims.wasm tenant-guard.wasm   (Rust, SDK, ABI v2)
#   claims-to-headers-v1.wasm                                      (the same plugin, ABI v1)
#   example-c.wasm example-wat.wasm                                (other languages, ABI v2)
#   example-wat-v1.wasm                                            (the WAT example, ABI v1)
#   hostile-<name>.wasm                                            (host tests)
#
# Toolchain: rustup's cargo when it has the wasm32-unknown-unknown target,
# else Debian's /usr/bin/cargo + /usr/bin/rustc (1.63), installed with apt-get
# when missing and we are root. Idempotent: cargo rebuilds only what changed,
# and wat2wasm/clang are skipped when the output is newer than its source.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
out="$here/out"
mkdir -p "$out"

say() { echo "plugins/build.sh: $*" >&2; }

apt_updated=0
apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: $* (run as root, or: apt-get install -y $*)"
    exit 1
  fi
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Rust toolchain for wasm32-unknown-unknown --------------------------------
toolchain=""
if command -v rustup >/dev/null 2>&1 && command -v cargo >/dev/null 2>&1 &&
  rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  cargo_cmd=(cargo)
  toolchain="rustup $(rustc --version 2>/dev/null | awk '{print $2}')"
else
  need=()
  { [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ]; } || need+=(rustc cargo)
  [ -d /usr/lib/rustlib/wasm32-unknown-unknown ] || need+=(libstd-rust-dev-wasm32)
  command -v wasm-ld >/dev/null 2>&1 || need+=(lld)
  [ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
  cargo_cmd=(env RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc /usr/bin/cargo)
  toolchain="debian $(/usr/bin/rustc --version | awk '{print $2}')"
fi

# --- clang (C example) and wat2wasm (WAT example, hostile guests) -------------
need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
command -v wasm-ld >/dev/null 2>&1 || need+=(lld)
command -v wat2wasm >/dev/null 2>&1 || need+=(wabt)
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"

# --- Rust plugins ---------------------------------------------------------------
# Self-contained: flags or a target dir meant for the gateway must not leak in
# (RUSTFLAGS would also override .cargo/config.toml).
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET
export CARGO_TARGET_DIR="$here/target"
rust_plugins=(claims-to-headers require-claims tenant-guard)
pkg_args=()
for p in "${rust_plugins[@]}"; do pkg_args+=(-p "$p"); done
"${cargo_cmd[@]}" build --offline --quiet --release --target wasm32-unknown-unknown "${pkg_args[@]}"

# The v1 build of claims-to-headers (cargo feature abi-v1) for v1/v2
# equivalence tests and benchmarks; its own target dir, so the two builds
# of the crate do not overwrite each other's output.
CARGO_TARGET_DIR="$here/target/abi-v1" "${cargo_cmd[@]}" build --offline --quiet --release \
  --target wasm32-unknown-unknown -p claims-to-headers --features abi-v1

built=()
fresh() { [ -f "$2" ] && [ "$2" -nt "$1" ]; } # output newer than source?

install_rust() { # src dst
  local src="$1" dst="$2"
  fresh "$src" "$dst" && return 0
  if wasm-objdump -x -j Export "$src" | grep -q -E '"__(heap_base|data_end)"'; then
    # Older rustc (e.g. Debian's 1.63) also exports the linker globals __heap_base and
    # __data_end; drop them so the module exports exactly the ABI set.
    wasm2wat "$src" | grep -v -E '^ *\(export "__(heap_base|data_end)"' | wat2wasm - -o "$dst.tmp"
  else
    cp "$src" "$dst.tmp"
  fi
  mv "$dst.tmp" "$dst"
  built+=("$(basename "$dst")")
}

for p in "${rust_plugins[@]}"; do
  install_rust "target/wasm32-unknown-unknown/release/${p//-/_}.wasm" "$out/$p.wasm"
done
install_rust target/abi-v1/wasm32-unknown-unknown/release/claims_to_headers.wasm "$out/claims-to-headers-v1.wasm"

# --- Non-Rust modules (skipped when the output is newer than the source) ------

wat() { # src dst
  fresh "$1" "$2" && return 0
  wat2wasm "$1" -o "$2.tmp"
  mv "$2.tmp" "$2"
  built+=("$(basename "$2")")
}

src=examples/c/add-header.c dst="$out/example-c.wasm"
if ! fresh "$src" "$dst"; then
  # -fvisibility=hidden + export_name attributes: only the ABI functions (and
  # memory) are exported; -nostdlib: no libc, so no WASI or env imports.
  clang --target=wasm32 -O2 -nostdlib -ffreestanding -fvisibility=hidden \
    -Wall -Wextra -Werror \
    -Wl,--no-entry -Wl,--strip-all \
    -o "$dst.tmp" "$src"
  chmod -x "$dst.tmp"
  mv "$dst.tmp" "$dst"
  built+=("$(basename "$dst")")
fi

wat examples/wat/static-header.wat "$out/example-wat.wasm"
wat examples/wat/static-header-v1.wat "$out/example-wat-v1.wasm"
hostile=0
for f in hostile/*.wat; do
  name="$(basename "$f" .wat)"
  wat "$f" "$out/hostile-$name.wasm"
  hostile=$((hostile + 1))
done

total=$(find "$out" -maxdepth 1 -name '*.wasm' | wc -l)
echo "plugins: ${#built[@]} built, $((total - ${#built[@]})) up to date -> plugins/out ($total modules: $((${#rust_plugins[@]} + 1)) Rust via $toolchain, 3 examples, $hostile hostile)"
