#!/usr/bin/env bash
# A/B of two gateway builds (or two configs) on the same route, same upstream,
# same client: `benches/ab.sh LABEL_A BIN_A LABEL_B BIN_B [PATH]`. Alternates
# A and B for AB_ROUNDS rounds (default 3) of AB_SECONDS (default 8) of
# `wrk -t1 -c32` on PATH (default /plug/x: JWT + claims-to-headers) and prints
# each build's median requests/s and gateway CPU µs per request, and B/A.
# Both gateways run with the benches' config (one worker, access log off);
# AB_EXTRA_YAML is appended to B's config only (to compare a config knob with
# the same binary); AB_PLUGIN_B is B's claims-to-headers module (e.g.
# plugins/out/claims-to-headers-v1.wasm, to compare plugin ABIs). For "keep what wins" decisions: run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

[ $# -ge 4 ] || { echo "usage: benches/ab.sh LABEL_A BIN_A LABEL_B BIN_B [PATH]" >&2; exit 2; }
LABEL_A=$1 BIN_A=$2 LABEL_B=$3 BIN_B=$4 URL_PATH=${5:-/plug/x}
ROUNDS=${AB_ROUNDS:-3}
SECS=${AB_SECONDS:-8}
BACKEND=${AB_BACKEND:-${CARGO_TARGET_DIR:-target}/release/portcullis-demo-backend}
fail() { echo "benches/ab.sh: $*" >&2; exit 1; }
missing=$(missing_tools wrk curl python3)
[ -z "$missing" ] || fail "missing tools: $missing"
for b in "$BIN_A" "$BIN_B" "$BACKEND"; do [ -x "$b" ] || fail "$b is not an executable"; done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local status=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

UP=$(port)
SECRET=ab-secret-0123456789-0123456789-abcdef
"$BACKEND" --listen "127.0.0.1:$UP" --name ab >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)


start() { # NAME BIN EXTRA -> sets ${NAME}_PORT ${NAME}_PID
  local name=$1 bin=$2 extra=$3 port admin pid
  port=$(port); admin=$(port)
  bench_gateway_yaml "$port" "$admin" "$UP" "$SECRET" "$extra" >"$WORK/$name.yaml"
  "$bin" run -c "$WORK/$name.yaml" >"$WORK/$name.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null || { cat "$WORK/$name.log" >&2; fail "$name did not become ready"; }
  printf -v "${name}_PORT" '%s' "$port"
  printf -v "${name}_PID" '%s' "$pid"
}
start A "$BIN_A" ""
BENCH_PLUGIN_MODULE=${AB_PLUGIN_B:-} start B "$BIN_B" "${AB_EXTRA_YAML:-}"
TOKEN=$("$BIN_A" token mint -c "$WORK/A.yaml" --sub bench-user --claim role=admin \
  --claim email=bench-user@example.com --ttl 1h)
AUTH="Authorization: Bearer $TOKEN"
for p in "$A_PORT" "$B_PORT"; do
  curl -fsS "http://127.0.0.1:$p$URL_PATH" -H "$AUTH" >/dev/null || fail "warm-up on port $p failed"
  wrk -t1 -c32 -d2s -H "$AUTH" "http://127.0.0.1:$p$URL_PATH" >/dev/null
done

TICK=$(getconf CLK_TCK)
run() { # NAME -> appends "rps cpu_us" to $WORK/NAME.runs
  local name=$1 port pid before after out rps reqs
  port=${name}_PORT; pid=${name}_PID
  before=$(cpu_ticks "${!pid}")
  out=$(wrk -t1 -c32 -d"${SECS}s" --latency -H "$AUTH" "http://127.0.0.1:${!port}$URL_PATH")
  after=$(cpu_ticks "${!pid}")
  read -r rps _ _ reqs <<<"$(wrk_summary "$out")"
  [ -n "$(wrk_non2xx "$out")" ] && fail "$name: non-2xx answers"
  echo "$rps $(python3 -c "print(round(($after-$before)/$TICK*1e6/$reqs, 1))")" >>"$WORK/$name.runs"
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then run A; run B; else run B; run A; fi
done
python3 - "$WORK/A.runs" "$WORK/B.runs" "$LABEL_A" "$LABEL_B" "$URL_PATH" "$ROUNDS" "$SECS" <<'PY'
import statistics, sys
a, b, la, lb, path, rounds, secs = sys.argv[1:]
def med(f):
    rows = [tuple(map(float, l.split())) for l in open(f) if l.strip()]
    return statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows), rows
ra, ca, rowsa = med(a)
rb, cb, rowsb = med(b)
print(f"{path}, {rounds} alternating rounds of {secs}s, wrk -t1 -c32, medians:")
print(f"| build | requests/s | gateway CPU µs/request | rounds (rps/cpu) |\n|---|---|---|---|")
print(f"| {la} | {ra:.0f} | {ca:.1f} | {'; '.join(f'{r:.0f}/{c:.1f}' for r, c in rowsa)} |")
print(f"| {lb} | {rb:.0f} | {cb:.1f} | {'; '.join(f'{r:.0f}/{c:.1f}' for r, c in rowsb)} |")
print(f"B/A: requests/s {rb/ra:.3f}, CPU per request {cb/ca:.3f}")
PY
