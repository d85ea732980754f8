#!/usr/bin/env bash
# Loopback load comparison, all measured side by side in one run with the same
# client (wrk) and the same request (the same bearer token on every case):
#   - the demo upstream direct;
#   - Portcullis on an `auth: none` route, validating an HS256 token on every
#     request (cached after the first verification, as in production), and the
#     same plus the `claims-to-headers` Wasm plugin (X-User-Id/Role/Email);
#   - HAProxy 2.6 doing that same job with `jwt_verify`
#     (benches/haproxy/jwt-gateway.cfg): alg, signature, exp, iss, 401 otherwise,
#     identity headers stripped and set from the claims.
# Then 1,000 open connections against both gateways (RSS while they are open),
# and the latency each gateway adds at half of Portcullis' peak rate (paced with
# a wrk Lua delay(): wrk has no rate control of its own, and neither wrk2 nor
# oha is available here).
# Reports requests/s, p50/p99 latency, gateway RSS and CPU per request, and the
# ratios. Writes benches/RESULTS.md (release build, `cargo build --release`).
#
# --smoke (run by `make test`): checks that the harness works, in well under a
# minute; its numbers are not asserted. It uses the debug binaries `cargo test
# --all-targets` already built (target/debug; `cargo build --bins` only when they
# are missing), BENCH_SECONDS (default 1) per case, BENCH_MANY_CONNECTIONS
# (default 200) instead of 1,000 and one 1 s pacing probe instead of two, and
# writes target/bench-smoke.md. Either mode exits non-zero when the harness
# breaks: a gateway that does not start or dies, the "same job" check, non-2xx
# answers, a case without requests, a missing result row.
# Then benches/edge_load.sh (same mode, its own servers): TLS and HTTP/2, new
# connections with full and resumed handshakes, RSS with many TLS connections,
# and RS256/ES256 tokens from OpenID Providers against HS256; its sections go
# into the report before the criterion summary (BENCH_EDGE=0 leaves it out).
# Other knobs: BENCH_CONNECTIONS (32), BENCH_MANY_SECONDS, BENCH_READY_TIMEOUT (s),
# BENCH_HAPROXY_CFG (benches/haproxy/jwt-gateway.cfg), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

SMOKE=0
case "${1:-}" in
  --smoke) SMOKE=1 ;;
  "") ;;
  *) echo "usage: benches/load.sh [--smoke]" >&2; exit 2 ;;
esac

fail() { echo "benches/load.sh: $*" >&2; exit 1; }

TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ "$SMOKE" = 1 ]; then
  SECONDS_PER_RUN=${BENCH_SECONDS:-1}
  MANY=${BENCH_MANY_CONNECTIONS:-200}
  PROBES=1            # 1 s pacing probes before each paced case
  BUSY_WINDOW=1
  BIN_DIR=$TARGET_DIR/debug
  BUILD="debug build ($BIN_DIR, as \`cargo test --all-targets\` leaves it)"
  OUT=$TARGET_DIR/bench-smoke.md
else
  SECONDS_PER_RUN=${BENCH_SECONDS:-10}
  MANY=${BENCH_MANY_CONNECTIONS:-1000}
  PROBES=2
  BUSY_WINDOW=2
  BIN_DIR=$TARGET_DIR/release
  BUILD="release build ($BIN_DIR, \`cargo build --release\`)"
  OUT=benches/RESULTS.md
fi
CONNECTIONS=${BENCH_CONNECTIONS:-32}
MANY_SECONDS=${BENCH_MANY_SECONDS:-$((SECONDS_PER_RUN < 5 ? SECONDS_PER_RUN : 5))}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-60}
HAPROXY_CFG=${BENCH_HAPROXY_CFG:-benches/haproxy/jwt-gateway.cfg}
PACE_MS=2    # per-connection pause between requests in the paced case

missing=$(missing_tools wrk haproxy curl python3 ss)
[ -z "$missing" ] || fail "$missing missing: bash scripts/setup.sh (as root) installs them"
[ -f plugins/out/claims-to-headers.wasm ] || fail "plugins/out/claims-to-headers.wasm missing: make plugins"
if [ "$SMOKE" = 1 ]; then
  if [ ! -x "$BIN_DIR/portcullis" ] || [ ! -x "$BIN_DIR/portcullis-demo-backend" ] || [ ! -x "$BIN_DIR/bare-pingora" ]; then
    cargo build --bins -q
  elif [ -n "$(find src Cargo.toml Cargo.lock -newer "$BIN_DIR/portcullis" -print -quit)" ]; then
    echo "benches/load.sh: note: sources are newer than $BIN_DIR/portcullis (cargo build --bins refreshes it)" >&2
  fi
else
  cargo build --release --bins -q
fi
[ -x "$BIN_DIR/portcullis" ] && [ -x "$BIN_DIR/portcullis-demo-backend" ] && [ -x "$BIN_DIR/bare-pingora" ] \
  || fail "no binaries in $BIN_DIR"
BUSY_BEFORE=$(cpu_busy "$BUSY_WINDOW")

# CPU accounting for the whole run: everything busy on the machine, minus our
# gateways/upstream, minus our own children (wrk, curl, python) = other work
# (busy_jiffies, all_jiffies, child_jiffies: benches/lib.sh).

UP=$(port); GW=$(port); ADMIN=$(port); HAP=$(port); BARE=$(port)
SECRET="bench-secret-0123456789-0123456789-abcdef"
ISSUER=bench # the issuer of bench_gateway_yaml, checked by HAProxy too
WORK=$(mktemp -d)

# Everything this script starts in the background is in PIDS (WRK_PID: the
# background wrk of many()); the EXIT trap ends them all, on success and on
# failure: TERM, up to 3 s to exit, then KILL.
PIDS=()
WRK_PID=
cleanup() {
  local status=$? p left
  trap - EXIT INT TERM HUP
  [ -n "$WRK_PID" ] && PIDS+=("$WRK_PID")
  for p in "${PIDS[@]}"; do gone "$p" || kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    left=0
    for p in "${PIDS[@]}"; do gone "$p" || left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do gone "$p" || kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# The gateway config every Portcullis bench runs (benches/lib.sh).
bench_gateway_yaml "$GW" "$ADMIN" "$UP" "$SECRET" > "$WORK/bench.yaml"

"$BIN_DIR/portcullis-demo-backend" --listen "127.0.0.1:$UP" --name bench >"$WORK/upstream.log" 2>&1 &
UP_PID=$!; PIDS+=("$UP_PID")
"$BIN_DIR/portcullis" run -c "$WORK/bench.yaml" >"$WORK/gw.log" 2>&1 &
GW_PID=$!; PIDS+=("$GW_PID")
HAPROXY_LISTEN="127.0.0.1:$HAP" HAPROXY_UPSTREAM="127.0.0.1:$UP" JWT_SECRET="$SECRET" JWT_ISSUER="$ISSUER" \
  haproxy -db -f "$HAPROXY_CFG" >"$WORK/haproxy.log" 2>&1 &
HAP_PID=$!; PIDS+=("$HAP_PID")
# The floor: pingora itself, same version, profile and server settings (benches/bare_pingora.rs).
"$BIN_DIR/bare-pingora" --listen "127.0.0.1:$BARE" --upstream "127.0.0.1:$UP" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!; PIDS+=("$BARE_PID")

logs() { # the tail of every server log, for a failure message
  local f
  for f in "$WORK/upstream.log" "$WORK/gw.log" "$WORK/haproxy.log" "$WORK/bare.log"; do
    [ -s "$f" ] && { echo "--- $(basename "$f"):"; tail -n 20 "$f"; }
  done >&2
  return 0
}
# alive: fails the run if a server has exited.
alive() {
  local p name
  for p in "$UP_PID:upstream" "$GW_PID:portcullis" "$HAP_PID:haproxy" "$BARE_PID:bare-pingora"; do
    name=${p#*:}
    gone "${p%%:*}" && { logs; fail "$name exited ${1:+($1)}"; }
  done
  return 0
}

BUSY0=$(busy_jiffies); ALL0=$(all_jiffies); child_jiffies; CHILD0=$CHILD

# Readiness: poll (bounded by READY_TIMEOUT), never a fixed sleep; a server that
# exits meanwhile fails the run at once.
ready=0
deadline=$((SECONDS + READY_TIMEOUT))
while [ "$SECONDS" -lt "$deadline" ]; do
  if curl -fs "http://127.0.0.1:$ADMIN/healthz" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$UP/health" >/dev/null 2>&1 \
     && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HAP/x" || true)" = 401 ] \
     && curl -fs "http://127.0.0.1:$BARE/health" >/dev/null 2>&1; then
    ready=1; break
  fi
  alive "while starting"
  sleep 0.05
done
[ "$ready" = 1 ] || { logs; fail "the servers did not become ready within ${READY_TIMEOUT}s"; }
TOKEN=$("$BIN_DIR/portcullis" token mint -c "$WORK/bench.yaml" --sub bench-user --claim role=admin \
  --claim email=bench-user@example.com --ttl 1h) || fail "portcullis token mint failed"
# Our claims under another token's signature.
OTHER=$("$BIN_DIR/portcullis" token mint -c "$WORK/bench.yaml" --sub someone-else --ttl 1h) || fail "portcullis token mint failed"
[ -n "$TOKEN" ] && [ -n "$OTHER" ] || fail "portcullis token mint printed no token"
FORGED="${TOKEN%.*}.${OTHER##*.}"
AUTH="Authorization: Bearer $TOKEN"

# Both gateways must do the same job before they are compared.
check_job() {
  local name=$1 url=$2 seen
  seen=$(curl -fsS "$url" -H "$AUTH" -H "X-User-Id: spoofed" -H "X-Auth-Role: spoofed") \
    || { logs; fail "$name: the authenticated request to $url failed"; }
  python3 - "$name" "$seen" <<'PY'
import json, sys
name, seen = sys.argv[1], json.loads(sys.argv[2])["headers"]
want = {"x-user-id": "bench-user", "x-user-role": "admin", "x-user-email": "bench-user@example.com"}
bad = {k: seen.get(k) for k, v in want.items() if seen.get(k) != v}
if bad or "x-auth-role" in seen or "x-request-id" not in seen or "x-forwarded-for" not in seen:
    sys.exit(f"{name}: not the same job, the upstream saw {seen}")
PY
  local bad
  bad=$(curl -s -o /dev/null -w '%{http_code}' "$url" -H "Authorization: Bearer $FORGED" || true)
  [ "$bad" = 401 ] || fail "$name: a bad signature got $bad, not 401"
}
check_job portcullis "http://127.0.0.1:$GW/plug/check"
check_job haproxy "http://127.0.0.1:$HAP/plug/check"

TICK=$(getconf CLK_TCK)

# wrk_parse OUTPUT -> "rps p50 p99 requests socket_errors"
wrk_parse() {
  local out=$1 errs
  errs=$(wrk_socket_errors "$out" " ")
  echo "$(wrk_summary "$out") ${errs:-none}" | tr -s ' '
}
# no_errors NAME OUTPUT: every answer 2xx (wrk counts the others), at least one
# request completed, and the servers are still up.
no_errors() {
  local name=$1 out=$2 non2xx reqs
  non2xx=$(wrk_non2xx "$out")
  if [ -n "$non2xx" ] && [ "$non2xx" != 0 ]; then
    echo "$out" >&2; logs; fail "$name: $non2xx non-2xx answers"
  fi
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  if ! [[ "$reqs" =~ ^[0-9]+$ ]] || [ "$reqs" -eq 0 ]; then
    echo "$out" >&2; logs; fail "$name: no request completed"
  fi
  alive "after $name"
}

# run NAME PID URL [HEADER] -> appends "name rps p50 p99 requests cpu_ticks" to $WORK/rows
# (PID: the gateway whose CPU is charged, "-" for none).
run() {
  local name=$1 pid=$2 url=$3 header=${4:-}
  local before=0 after=0 out args=(-t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency)
  [ -n "$header" ] && args+=(-H "$header")
  if [ "$pid" != - ]; then before=$(cpu_ticks "$pid") || fail "$name: the gateway is gone"; fi
  out=$(wrk "${args[@]}" "$url") || fail "$name: wrk failed"
  if [ "$pid" != - ]; then after=$(cpu_ticks "$pid") || fail "$name: the gateway is gone"; fi
  no_errors "$name" "$out"
  read -r rps p50 p99 reqs _ <<<"$(wrk_parse "$out")"
  local ticks=-
  if [ "$pid" != - ]; then ticks=$((after - before)); fi
  echo "$name $rps $p50 $p99 $reqs $ticks" >> "$WORK/rows"
}

# many NAME PID URL -> $MANY connections for $MANY_SECONDS; appends
# "name rps p50 p99 peak_rss_kb max_established socket_errors" to $WORK/many.
many() {
  local name=$1 pid=$2 url=$3 gwport=$4 peak=0 conns=0 r c out
  wrk -t1 -c"$MANY" -d"${MANY_SECONDS}s" --timeout 10s --latency -H "$AUTH" "$url" >"$WORK/many.out" 2>&1 &
  WRK_PID=$!
  while ! gone "$WRK_PID"; do
    r=$(rss_kb "$pid") || fail "$name: the gateway is gone"
    [ "${r:-0}" -gt "$peak" ] && peak=$r
    c=$(ss -Htn state established "( sport = :$gwport )" | wc -l) || fail "ss failed"
    [ "$c" -gt "$conns" ] && conns=$c
    sleep 0.1
  done
  wait "$WRK_PID" || { cat "$WORK/many.out" >&2; fail "$name: wrk failed"; }
  WRK_PID=
  out=$(cat "$WORK/many.out")
  no_errors "$name" "$out"
  read -r rps p50 p99 _ errs <<<"$(wrk_parse "$out")"
  echo "$name $rps $p50 $p99 $peak $conns $errs" >> "$WORK/many"
}

# idle NAME PID PORT PATH -> opens $MANY keep-alive connections, one authenticated
# request on each, keeps them all open and samples the gateway's RSS; appends
# "name rss_kb_before peak_rss_kb_open connections" to $WORK/idle.
idle() {
  local name=$1 pid=$2 gwport=$3 path=$4
  python3 - "$pid" "$gwport" "$path" "$TOKEN" "$MANY" "$name" >> "$WORK/idle" <<'PY' || { logs; fail "$name: $MANY idle connections failed"; }
import socket, sys, time
pid, port, path, token, n, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
def rss():
    with open(f"/proc/{pid}/status") as f:
        return int(next(l.split()[1] for l in f if l.startswith("VmRSS")))
before = rss()
req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit(f"{name}: connection closed before the answer")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(f"{name}: {head[:80]!r}")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit(f"{name}: connection closed mid-body")
        body += chunk
    socks.append(s)
peak = 0
for _ in range(10):  # a second with every connection open and idle
    peak = max(peak, rss())
    time.sleep(0.1)
for s in socks:
    s.close()
print(name, before, peak, len(socks))
PY
  alive "after $name idle"
}

# paced NAME URL RATE [HEADER] -> about RATE requests/s, closed loop: each
# connection pauses PACE_MS between an answer and its next request. The
# connection count is calibrated with $PROBES 1 s probes (two; one in smoke) so
# that every target gets the same rate whatever its own latency. Appends
# "name achieved_rps p50 p99 connections" to $WORK/paced.
paced() {
  local name=$1 url=$2 rate=$3 header=${4:-} conns out probe
  local hdr=()
  [ -n "$header" ] && hdr=(-H "$header")
  conns=$(awk -v r="$rate" -v d="$PACE_MS" 'BEGIN {c=int(r*d/1000+0.5); if (c<1) c=1; print c}')
  for _ in $(seq 1 "$PROBES"); do
    out=$(wrk -t1 -c"$conns" -d1s -s "$WORK/pace.lua" "${hdr[@]}" "$url") || fail "$name: wrk failed (probe)"
    no_errors "$name (probe)" "$out"
    probe=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    awk -v a="$probe" 'BEGIN {exit !(a+0 > 0)}' || fail "$name: the probe measured no rate"
    conns=$(awk -v c="$conns" -v r="$rate" -v a="$probe" 'BEGIN {n=int(c*r/a+0.5); if (n<1) n=1; print n}')
  done
  out=$(wrk -t1 -c"$conns" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/pace.lua" "${hdr[@]}" "$url") || fail "$name: wrk failed"
  no_errors "$name" "$out"
  read -r rps p50 p99 _ <<<"$(wrk_parse "$out")"
  echo "$name $rps $p50 $p99 $conns" >> "$WORK/paced"
}
echo "function delay() return $PACE_MS end" > "$WORK/pace.lua"

# Warm up connections and the token cache; every measured URL must answer 2xx.
for u in "http://127.0.0.1:$UP/api/warm" "http://127.0.0.1:$GW/open/warm" "http://127.0.0.1:$GW/api/warm" \
         "http://127.0.0.1:$GW/plug/warm" "http://127.0.0.1:$HAP/plug/warm" "http://127.0.0.1:$BARE/api/warm"; do
  curl -fsS "$u" -H "$AUTH" >/dev/null || { logs; fail "warm-up request to $u failed"; }
done
# Every case sends the same request headers, the token included: the auth: none
# route and the upstream ignore it, but it is forwarded (forward_authorization
# defaults to true) and the demo upstream echoes every header in its answer.
run upstream-direct - "http://127.0.0.1:$UP/api/x" "$AUTH"
run bare-pingora "$BARE_PID" "http://127.0.0.1:$BARE/api/x" "$AUTH"
run portcullis-auth-none "$GW_PID" "http://127.0.0.1:$GW/open/x" "$AUTH"
run portcullis-auth-jwt "$GW_PID" "http://127.0.0.1:$GW/api/x" "$AUTH"
run portcullis-jwt+plugin "$GW_PID" "http://127.0.0.1:$GW/plug/x" "$AUTH"
run haproxy-jwt_verify "$HAP_PID" "http://127.0.0.1:$HAP/plug/x" "$AUTH"
GW_RSS_KB=$(rss_kb "$GW_PID") || fail "portcullis is gone"
HAP_RSS_KB=$(rss_kb "$HAP_PID") || fail "haproxy is gone"

# need_row FILE MIN_FIELDS NAME...: each NAME has a complete row in $WORK/FILE.
need_row() {
  local file=$1 nf=$2 name; shift 2
  for name in "$@"; do
    awk -v n="$name" -v f="$nf" '$1==n && NF>=f {found=1} END {exit !found}' "$WORK/$file" 2>/dev/null \
      || { cat "$WORK/$file" >&2 2>/dev/null || true; fail "no complete '$name' row in the $file results"; }
  done
}
need_row rows 6 upstream-direct bare-pingora portcullis-auth-none portcullis-auth-jwt portcullis-jwt+plugin haproxy-jwt_verify

idle portcullis-jwt+plugin "$GW_PID" "$GW" /plug/idle
idle haproxy-jwt_verify "$HAP_PID" "$HAP" /plug/idle
many portcullis-jwt+plugin "$GW_PID" "http://127.0.0.1:$GW/plug/x" "$GW"
many haproxy-jwt_verify "$HAP_PID" "http://127.0.0.1:$HAP/plug/x" "$HAP"
need_row idle 4 portcullis-jwt+plugin haproxy-jwt_verify
need_row many 7 portcullis-jwt+plugin haproxy-jwt_verify

col() { awk -v n="$1" -v c="$2" '$1==n {print $c}' "$3"; }
PEAK=$(col portcullis-jwt+plugin 2 "$WORK/rows")
HALF=$(awk -v p="$PEAK" 'BEGIN {printf "%d", p/2}')
[ "$HALF" -gt 0 ] || fail "no peak rate to pace at (portcullis-jwt+plugin: '$PEAK' requests/s)"
paced upstream-direct "http://127.0.0.1:$UP/api/x" "$HALF" "$AUTH"
paced portcullis-jwt+plugin "http://127.0.0.1:$GW/plug/x" "$HALF" "$AUTH"
paced haproxy-jwt_verify "http://127.0.0.1:$HAP/plug/x" "$HALF" "$AUTH"
need_row paced 5 upstream-direct portcullis-jwt+plugin haproxy-jwt_verify
alive "at the end"

child_jiffies
OURS=$(( $(cpu_ticks "$GW_PID") + $(cpu_ticks "$HAP_PID") + $(cpu_ticks "$UP_PID") + CHILD - CHILD0 ))
FOREIGN=$(awk -v b="$(( $(busy_jiffies) - BUSY0 ))" -v a="$(( $(all_jiffies) - ALL0 ))" -v o="$OURS" \
  'BEGIN {f=(b-o)/a*100; if (f<0) f=0; printf "%.0f", f}')

# The edge cases, with their own servers (this script's stay up, idle):
# TLS and HTTP/2, new connections and handshakes, RSS with many TLS
# connections, and tokens from OpenID Providers (benches/edge_load.sh).
# BENCH_EDGE=0 leaves them out.
if [ "${BENCH_EDGE:-1}" != 0 ]; then
  edge_args=(--out "$WORK/edge.md")
  [ "$SMOKE" = 1 ] && edge_args+=(--smoke)
  BENCH_NO_BUILD=1 BENCH_BIN_DIR="$BIN_DIR" bash benches/edge_load.sh "${edge_args[@]}" \
    || fail "benches/edge_load.sh failed"
  alive "after benches/edge_load.sh"
fi

# Report ------------------------------------------------------------------------
cpu_us() { awk -v t="$1" -v r="$2" -v hz="$TICK" 'BEGIN {printf "%.1f", t/hz*1e6/r}'; }
meets() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {ok = (op==">=") ? v>=t : v<t; print ok ? "yes" : "**no**"}'; }

BASE=$(col upstream-direct 2 "$WORK/rows")
NONE=$(col portcullis-auth-none 2 "$WORK/rows")
JWT=$(col portcullis-auth-jwt 2 "$WORK/rows")
HAPR=$(col haproxy-jwt_verify 2 "$WORK/rows")
R_NONE=$(ratio "$PEAK" "$NONE")
R_JWT=$(ratio "$JWT" "$NONE")
R_HAP=$(ratio "$PEAK" "$HAPR")
CPU_P=$(cpu_us "$(col portcullis-jwt+plugin 6 "$WORK/rows")" "$(col portcullis-jwt+plugin 5 "$WORK/rows")")
CPU_H=$(cpu_us "$(col haproxy-jwt_verify 6 "$WORK/rows")" "$(col haproxy-jwt_verify 5 "$WORK/rows")")
CPU_N=$(cpu_us "$(col portcullis-auth-none 6 "$WORK/rows")" "$(col portcullis-auth-none 5 "$WORK/rows")")
CPU_B=$(cpu_us "$(col bare-pingora 6 "$WORK/rows")" "$(col bare-pingora 5 "$WORK/rows")")
R_CPU_B=$(ratio "$CPU_P" "$CPU_B")
MANY_RSS=$(col portcullis-jwt+plugin 5 "$WORK/many")
IDLE_RSS=$(col portcullis-jwt+plugin 3 "$WORK/idle")
IDLE_RSS_H=$(col haproxy-jwt_verify 3 "$WORK/idle")
MANY_RSS_H=$(col haproxy-jwt_verify 5 "$WORK/many")
P99_UP=$(ms "$(col upstream-direct 4 "$WORK/paced")")
P99_GW=$(ms "$(col portcullis-jwt+plugin 4 "$WORK/paced")")
P99_HAP=$(ms "$(col haproxy-jwt_verify 4 "$WORK/paced")")
ADD_GW=$(awk -v a="$P99_GW" -v b="$P99_UP" 'BEGIN {printf "%.2f", a-b}')
ADD_HAP=$(awk -v a="$P99_HAP" -v b="$P99_UP" 'BEGIN {printf "%.2f", a-b}')

{
  echo "# Benchmark results"
  echo
  if [ "$SMOKE" = 1 ]; then
    echo "Generated by \`benches/load.sh --smoke\` (\`make test\`, \`make bench-smoke\`) on $(date -u +%Y-%m-%d)."
  else
    echo "Generated by \`benches/load.sh\` (\`make bench\`) on $(date -u +%Y-%m-%d)."
  fi
  echo "Build: $BUILD."
  echo "Machine: $(machine)."
  echo "Client: wrk, 1 thread, $CONNECTIONS connections, ${SECONDS_PER_RUN}s per run, all on loopback; each gateway with 1 worker thread"
  echo "(Portcullis \`listeners.threads: 1\`, HAProxy $(haproxy -v | awk 'NR==1 {print $3}') \`nbthread 1\`); upstream: the demo backend (1 thread)."
  echo "Numbers are from one run, side by side; compare the ratios, not the absolute values across machines."
  echo "Other work on the machine (it shares the cores): ${BUSY_BEFORE}% of the CPU in the ${BUSY_WINDOW} s before the run, about ${FOREIGN}% during it."
  if [ "$SMOKE" = 1 ]; then
    echo
    echo "**Smoke run** (${SECONDS_PER_RUN}s per case, $MANY instead of 1,000 connections, one pacing probe, debug build):"
    echo "checks that the harness works; the numbers mean little and are not asserted (the targets below are"
    echo "judged on the release run, benches/RESULTS.md)."
  fi
  echo
  echo "## Loopback load"
  echo
  echo "Every case sends the same request: \`GET\` with wrk's headers and \`Authorization: Bearer <token>\`"
  echo "(the HS256 token with \`sub\`, \`role\`, \`email\`, \`exp\`, \`iss\`), on \`/api/x\` (upstream direct,"
  echo "Portcullis JWT), \`/open/x\` (Portcullis \`auth: none\`) or \`/plug/x\` (JWT + plugin, HAProxy). The"
  echo "upstream and the \`auth: none\` route ignore the token but it is forwarded like on every route, so the"
  echo "demo upstream, which echoes all request headers in its JSON answer, gets and returns the same bytes"
  echo "everywhere, apart from the headers a gateway adds."
  echo
  echo "| target | requests/s | p50 | p99 | ratio vs upstream direct | ratio vs Portcullis auth: none | gateway CPU µs/request | CPU × bare pingora |"
  echo "|---|---|---|---|---|---|---|---|"
  while read -r name rps p50 p99 reqs ticks; do
    cpu="-"; vs_bare="-"
    if [ "$ticks" != - ]; then cpu=$(cpu_us "$ticks" "$reqs"); vs_bare=$(ratio "$cpu" "$CPU_B"); fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p50" "$p99" \
      "$(ratio "$rps" "$BASE")" "$(ratio "$rps" "$NONE")" "$cpu" "$vs_bare"
  done < "$WORK/rows"
  echo
  echo "\`bare-pingora\` is [benches/bare_pingora.rs](bare_pingora.rs): the same pingora, profile and server"
  echo "settings, a \`ProxyHttp\` that only picks the upstream — the floor; \`CPU × bare pingora\` is what a row"
  echo "costs per request relative to it."
  echo
  echo "Gateway RSS after these runs: Portcullis $(mib "$GW_RSS_KB") MiB, HAProxy $(mib "$HAP_RSS_KB") MiB."
  echo
  echo "\`portcullis-jwt+plugin\` and \`haproxy-jwt_verify\` do the same job (checked before measuring: the"
  echo "upstream sees X-User-Id/X-User-Role/X-User-Email from the verified claims, the client's spoofed"
  echo "identity headers are gone, X-Request-Id and X-Forwarded-For are set, and a bad signature gets 401):"
  echo "HS256 token from \`Authorization: Bearer\`, \`alg\` must be HS256, signature, \`exp\` required and checked"
  echo "against the clock, \`iss\` checked; HAProxy config: \`$HAPROXY_CFG\`. Portcullis"
  echo "caches a verified token (the same token on every request here, as a client does within its"
  echo "access-token lifetime); HAProxy's \`jwt_verify\` checks the HMAC on every request."
  echo
  echo "## Same job, two gateways"
  echo
  echo "| | requests/s | p50 | p99 | CPU µs/request | RSS after runs | RSS, $MANY idle keep-alive connections | RSS, $MANY busy connections |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '| Portcullis JWT + claims-to-headers plugin | %s | %s | %s | %s | %s MiB | %s MiB | %s MiB |\n' "$PEAK" \
    "$(col portcullis-jwt+plugin 3 "$WORK/rows")" "$(col portcullis-jwt+plugin 4 "$WORK/rows")" "$CPU_P" \
    "$(mib "$GW_RSS_KB")" "$(mib "$IDLE_RSS")" "$(mib "$MANY_RSS")"
  printf '| HAProxy + jwt_verify | %s | %s | %s | %s | %s MiB | %s MiB | %s MiB |\n' "$HAPR" \
    "$(col haproxy-jwt_verify 3 "$WORK/rows")" "$(col haproxy-jwt_verify 4 "$WORK/rows")" "$CPU_H" \
    "$(mib "$HAP_RSS_KB")" "$(mib "$IDLE_RSS_H")" "$(mib "$MANY_RSS_H")"
  echo
  echo "## Targets"
  echo
  echo "| check | measured | target | met |"
  echo "|---|---|---|---|"
  echo "| Portcullis JWT+plugin vs Portcullis auth: none (throughput) | ${R_NONE}× | ≥ 0.85× | $(meets "$R_NONE" ">=" 0.85) |"
  echo "| Portcullis JWT+plugin vs HAProxy + jwt_verify (throughput) | ${R_HAP}× | ≥ 1.0× | $(meets "$R_HAP" ">=" 1.0) |"
  echo "| Portcullis JWT+plugin CPU per request vs bare pingora | ${R_CPU_B}× | ≤ 1.15× | $(meets "$R_CPU_B" "<" 1.1501) |"
  echo "| Portcullis RSS with $MANY open idle keep-alive connections | $(mib "$IDLE_RSS") MiB | < 64 MiB | $(meets "$(mib "$IDLE_RSS")" "<" 64) |"
  echo "| Portcullis RSS with $MANY connections under load (wrk -c$MANY, peak) | $(mib "$MANY_RSS") MiB | < 64 MiB | $(meets "$(mib "$MANY_RSS")" "<" 64) |"
  echo "| Added p99 at half of peak load (Portcullis JWT+plugin − upstream direct) | ${ADD_GW} ms | – | – |"
  echo
  echo "Portcullis JWT (no plugin) vs auth: none: ${R_JWT}×. CPU per request: Portcullis ${CPU_N} µs (auth: none),"
  echo "${CPU_P} µs (JWT + plugin); HAProxy ${CPU_H} µs (jwt_verify + the same header work)."
  echo
  echo "### $MANY open connections"
  echo
  echo "Idle: $MANY keep-alive connections opened one after another, one authenticated request on each, then"
  echo "all held open for a second while the gateway's RSS is sampled (peak shown)."
  echo
  echo "| gateway | RSS before | RSS with $MANY idle connections open |"
  echo "|---|---|---|"
  while read -r name before peak _; do
    printf '| %s | %s MiB | %s MiB |\n' "$name" "$(mib "$before")" "$(mib "$peak")"
  done < "$WORK/idle"
  echo
  echo "Busy: wrk -t1 -c$MANY -d${MANY_SECONDS}s with the token, against each gateway's JWT route; RSS sampled every"
  echo "100 ms while the connections were open (peak shown), established connections counted with \`ss\`."
  echo
  echo "| gateway | requests/s | p50 | p99 | peak RSS | connections seen open | wrk socket errors |"
  echo "|---|---|---|---|---|---|---|"
  while read -r name rps p50 p99 peak conns errs; do
    printf '| %s | %s | %s | %s | %s MiB | %s | %s |\n' "$name" "$rps" "$p50" "$p99" "$(mib "$peak")" "$conns" "$errs"
  done < "$WORK/many"
  echo
  echo "### Added latency at half of peak load"
  echo
  echo "Rate: half of Portcullis JWT+plugin's peak above, ${HALF} requests/s. wrk has no rate control (wrk2 and"
  echo "oha are not installed here), so each case is paced by a wrk Lua \`delay()\` of ${PACE_MS} ms between a"
  echo "connection's answer and its next request, with the number of connections calibrated ($PROBES × 1 s probe)"
  echo "to reach that rate. That is a closed loop: latency is measured from each request's send, with no"
  echo "coordinated-omission correction (mild at half load, where little queues). Added p99 = the gateway's"
  echo "p99 − upstream direct's p99 at the same rate."
  echo
  echo "| target | connections | achieved requests/s | p50 | p99 | added p99 |"
  echo "|---|---|---|---|---|---|"
  while read -r name rps p50 p99 conns; do
    added="-"
    case $name in
      portcullis-*) added="${ADD_GW} ms" ;;
      haproxy-*) added="${ADD_HAP} ms" ;;
    esac
    printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$conns" "$rps" "$p50" "$p99" "$added"
  done < "$WORK/paced"
  if [ -s "$WORK/edge.md" ]; then echo; cat "$WORK/edge.md"; fi
  if [ "$SMOKE" = 0 ] && [ -f benches/criterion-results.md ]; then echo; cat benches/criterion-results.md; fi
} > "$WORK/report.md"
# Only a complete run replaces the previous report.
mkdir -p "$(dirname "$OUT")"
mv "$WORK/report.md" "$OUT"
cat "$OUT"
[ "$SMOKE" = 1 ] && echo && echo "(smoke results written to $OUT)"
exit 0
