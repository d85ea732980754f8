#!/usr/bin/env bash
# Where the gateway's CPU time goes on the JWT + claims-to-headers route under
# load: `perf record` of the release gateway (one worker) while wrk drives
# /plug/x with the same HS256 token as benches/load.sh, then the sampled
# self time grouped by owner (kernel, pingora, tokio, allocator, Portcullis,
# wasmtime, …) and the top symbols. Writes benches/PROFILE.md (or $1).
#
# Needs: a release build (`cargo build --release --bins`), the plugins
# (`make plugins`), wrk and perf (Debian `linux-perf`), root or
# perf_event_paranoid <= 1. Knobs: PROFILE_SECONDS (10), BENCH_CONNECTIONS
# (32), CARGO_TARGET_DIR, PROFILE_LABEL (a note for the report's title line).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

OUT=${1:-benches/PROFILE.md}
SECONDS_TO_RECORD=${PROFILE_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
BIN_DIR=${CARGO_TARGET_DIR:-target}/release
fail() { echo "benches/profile.sh: $*" >&2; exit 1; }

missing=$(missing_tools wrk perf python3 curl)
[ -z "$missing" ] || fail "missing tools: $missing (apt-get install wrk linux-perf python3 curl)"
for bin in portcullis portcullis-demo-backend; do
  [ -x "$BIN_DIR/$bin" ] || fail "$BIN_DIR/$bin is missing: run cargo build --release --bins"
done
[ -f plugins/out/claims-to-headers.wasm ] || fail "plugins/out/claims-to-headers.wasm is missing: run make plugins"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local status=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${PROFILE_KEEP:-}" ] && cp "$WORK/report.txt" "$PROFILE_KEEP"; rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

UP=$(port); GW=$(port); ADMIN=$(port)
SECRET=profile-secret-0123456789-0123456789-abcdef
bench_gateway_yaml "$GW" "$ADMIN" "$UP" "$SECRET" >"$WORK/profile.yaml"

"$BIN_DIR/portcullis-demo-backend" --listen "127.0.0.1:$UP" --name profile >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
"$BIN_DIR/portcullis" run -c "$WORK/profile.yaml" >"$WORK/gw.log" 2>&1 &
GW_PID=$!; PIDS+=("$GW_PID")
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null || { cat "$WORK/gw.log" >&2; fail "the gateway did not become ready"; }

TOKEN=$("$BIN_DIR/portcullis" token mint -c "$WORK/profile.yaml" --sub user-42 \
  --claim role=admin --claim email=ada@example.com --ttl 1h 2>/dev/null)
AUTH="Authorization: Bearer $TOKEN"
curl -fsS "http://127.0.0.1:$GW/plug/x" -H "$AUTH" >/dev/null || fail "the authenticated warm-up request failed"

# Load for longer than the recording, so perf sees only steady state.
wrk -t1 -c"$CONNECTIONS" -d"$((SECONDS_TO_RECORD + 4))s" -H "$AUTH" "http://127.0.0.1:$GW/plug/x" >"$WORK/wrk.txt" &
WRK=$!; PIDS+=("$WRK")
sleep 2
perf record -q -F 1999 -g -p "$GW_PID" -o "$WORK/perf.data" -- sleep "$SECONDS_TO_RECORD" 2>"$WORK/perf.err" \
  || { cat "$WORK/perf.err" >&2; fail "perf record failed (run as root, or lower /proc/sys/kernel/perf_event_paranoid)"; }
wait "$WRK" || true
perf report -i "$WORK/perf.data" --no-children -g none --sort dso,sym --stdio --percent-limit 0 2>/dev/null \
  | grep -E '^ +[0-9.]+%' >"$WORK/report.txt" || true
[ -s "$WORK/report.txt" ] || fail "perf report produced no samples"

python3 - "$WORK/report.txt" "$WORK/wrk.txt" "$OUT" "${PROFILE_LABEL:-}" "$(machine)" <<'PY'
import re, sys
report, wrk, out, label, machine = sys.argv[1:]
rows = []
for line in open(report):
    m = re.match(r'\s*([\d.]+)%\s+(.+?)\s+\[(.)\]\s+(.*)', line)
    if m:
        rows.append((float(m.group(1)), m.group(2), m.group(4).strip()))

OWNERS = [
    ("allocator", r'^(malloc|free|calloc|realloc|_int_malloc|_int_free|__libc_malloc|__libc_free|cfree|malloc_consolidate|mi_|_mi_|je_|tcache|__rust_alloc|__rust_dealloc|__rdl_)'),
    ("wasmtime (host side)", r'(wasmtime|cranelift|wasmparser)'),
    ("pingora", r'pingora'),
    ("tokio", r'^(tokio|<tokio)'),
    ("http / h2 / bytes parsing", r'(httparse|^http::|<http::|^h2::|bytes::|BytesMut|http_body)'),
    ("JWT / crypto", r'(jsonwebtoken|aws_lc|ring::|sha2|hmac|base64)'),
    ("serde_json", r'serde_json|serde::'),
    ("metrics (prometheus)", r'prometheus'),
    ("tracing", r'tracing'),
    ("Portcullis", r'portcullis'),
    ("std / core (hashing, formatting, copies)", r'(^core::|^std::|^alloc::|<core::|<std::|<alloc::|hashbrown|memcpy|memmove|memset|memcmp|strlen|__mem)'),
]
def owner(dso, sym):
    if dso.startswith('[kernel'):
        return "kernel"
    if dso.startswith('[JIT]') or dso.startswith('jitted') or sym.startswith('wasm[') or dso == '[unknown]' and sym.startswith('0x'):
        return "Wasm guest code (JIT)"
    for name, pattern in OWNERS:
        if re.search(pattern, sym):
            return name
    if 'libc' in dso:
        return "libc (other)"
    return "other: " + dso
groups = {}
for pct, dso, sym in rows:
    groups[owner(dso, sym)] = groups.get(owner(dso, sym), 0.0) + pct
total = sum(groups.values()) or 1.0
wrk_text = open(wrk).read()
rps = re.search(r'Requests/sec:\s+([\d.]+)', wrk_text)
with open(out, 'w') as f:
    f.write("# Profile: where the gateway's CPU goes (JWT + claims-to-headers route)\n\n")
    f.write("Generated by `benches/profile.sh`" + (f" ({label})" if label else "") + ".\n")
    f.write(f"Machine: {machine}. Release build, one gateway worker, wrk -t1 -c32 on `/plug/x` with an HS256 token "
            f"(verified-token cache on, as in production); the demo backend as upstream; "
            f"{rps.group(1) if rps else '?'} requests/s during the recording. `perf record -F 1999` of the gateway process, "
            "self time per symbol (no children), grouped by who owns the code.\n\n")
    f.write("| owner | share of gateway CPU |\n|---|---|\n")
    for name, pct in sorted(groups.items(), key=lambda kv: -kv[1]):
        f.write(f"| {name} | {pct * 100 / total:.1f}% |\n")
    f.write("\nTop 30 symbols:\n\n| self | owner | symbol |\n|---|---|---|\n")
    for pct, dso, sym in sorted(rows, key=lambda r: -r[0])[:30]:
        short = sym if len(sym) <= 110 else sym[:107] + "..."
        short = short.replace('|', '\\|')
        f.write(f"| {pct * 100 / total:.2f}% | {owner(dso, sym)} | `{short}` |\n")
print(open(out).read())
PY
