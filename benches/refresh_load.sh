#!/usr/bin/env bash
# Session performance, end to end on loopback, everything on this machine's
# cores (gateway, database, wrk and the demo backend share them):
#   - POST /api/auth/refresh throughput and latency with wrk, on SQLite (the
#     default pool of 1 connection, and a pool of 8), on Postgres (a throwaway
#     cluster with the server's default durability) and on Postgres with
#     `synchronous_commit = off`; each with `rotation: false` (every client
#     re-presents its token) and `rotation: true` (every answer's successor is
#     presented next; benches/refresh.lua);
#   - the cost of the revoked-sid check on a proxied request: an `auth:
#     required` route with a token without `sid` (`portcullis token mint`)
#     against a session token with `sid`, while the revoked set holds
#     $BENCH_REVOKED sessions, runs interleaved in one gateway;
#   - and, unless BENCH_CRITERION=0 or --smoke, `cargo bench --bench session`
#     (the revoked-set lookup against the cached verification, and the store
#     level exchange), whose estimates are read from target/criterion.
# Other builds and tests on the machine disturb every number: each run first
# waits up to BENCH_QUIET_WAIT seconds (60; 0 with --smoke) for the load this
# script does not cause to drop below 10%, and the report says how much there
# was just before and after each run.
# Writes benches/SESSION-RESULTS.md; --smoke (2 s per run, no criterion run)
# writes to a temp file and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
if [ "$SMOKE" = 1 ]; then
  SECONDS_PER_RUN=${BENCH_SECONDS:-2}
  OUT=$(mktemp --suffix=-session-results.md)
  REPEATS=${BENCH_REPEATS:-1}
  RUN_CRITERION=${BENCH_CRITERION:-0}
  QUIET_WAIT=${BENCH_QUIET_WAIT:-0}
else
  SECONDS_PER_RUN=${BENCH_SECONDS:-10}
  OUT=benches/SESSION-RESULTS.md
  REPEATS=${BENCH_REPEATS:-5}
  RUN_CRITERION=${BENCH_CRITERION:-1}
  QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
fi
CONNECTIONS=${BENCH_CONNECTIONS:-32}
SESSIONS=${BENCH_SESSIONS:-200}
REVOKED=${BENCH_REVOKED:-1000}
THREADS=${BENCH_THREADS:-$(nproc)}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

missing=$(missing_tools wrk curl python3)
if [ -n "$missing" ]; then
  echo "$missing missing: bash scripts/setup.sh (as root) installs them" >&2
  exit 1
fi
if [ "$SESSIONS" -le "$CONNECTIONS" ]; then
  echo "BENCH_SESSIONS ($SESSIONS) must exceed BENCH_CONNECTIONS ($CONNECTIONS): the rotation run keeps a token per connection in flight" >&2
  exit 1
fi

# Context first: what else is running shapes every number below. Other load
# is measured, not guessed from process names: the share of both cores busy
# over one second while this script's own processes idle (between runs).
busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
other_load() {
  local b0 t0 b1 t1
  read -r b0 t0 <<<"$(busy_ticks)"; sleep 1; read -r b1 t1 <<<"$(busy_ticks)"
  awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" 'BEGIN {printf "%.0f", t ? 100*b/t : 0}'
}
# quiet: waits up to $QUIET_WAIT s for other load to drop below 10%.
quiet() {
  local waited=0
  while [ "$(other_load)" -ge 10 ] && [ "$waited" -lt "$QUIET_WAIT" ]; do waited=$((waited + 1)); done
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
OTHER_LOAD=$(other_load)
OTHER_PG=$(ps -eo comm= | grep -cx 'postgres' || true)

CRITERION_OTHERS="not run by this script"
if [ "$RUN_CRITERION" = 1 ]; then
  quiet
  criterion_start=$(other_load)
  cargo bench --bench session
  CRITERION_OTHERS="other load before/after: $criterion_start%/$(other_load)%"
fi
cargo build --release --bins -q

WORK=$(mktemp -d)
chmod 755 "$WORK" # the postgres OS user must reach its cluster inside
PIDS=()
PG_STARTED=0
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "$PG_STARTED" = 1 ] && pg_server pg_ctl -D "$WORK/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

SECRET="bench-secret-0123456789-0123456789-abcdef"
REFRESH_SECRET="bench-refresh-secret-0123456789-0123456789"
ADMIN_TOKEN="bench-admin-token-0123456789"

# Postgres: a throwaway cluster, run as the postgres OS user when we are root
# (initdb refuses root), stopped and deleted by the EXIT trap. -------------------
PG_BIN=${PG_BINDIR:-}
if [ -z "$PG_BIN" ]; then
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -nr) $(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)"); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/psql" ]; then PG_BIN=$dir; break; fi
  done
fi
pg_server() { # run a server binary as the cluster's owner
  local program=$1; shift
  if [ "$(id -u)" = 0 ]; then
    (cd "$WORK" && runuser -u postgres -- "$PG_BIN/$program" "$@")
  else
    (cd "$WORK" && "$PG_BIN/$program" "$@")
  fi
}
PG_SKIP=""
PG_PORT=""
start_postgres() {
  [ -n "$PG_BIN" ] || { PG_SKIP="no Postgres binaries (initdb, pg_ctl, psql) in \$PG_BINDIR, /usr/lib/postgresql/*/bin or \$PATH"; return; }
  mkdir -p "$WORK/pg/data" "$WORK/pg/socket"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$WORK/pg"
  if ! pg_server initdb -D "$WORK/pg/data" -A trust -U postgres -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1; then
    PG_SKIP="initdb failed: $(tail -3 "$WORK/initdb.log" | tr '\n' ' ')"; return
  fi
  PG_PORT=$(port)
  PG_STARTED=1
  if ! pg_server pg_ctl -D "$WORK/pg/data" -l "$WORK/pg/server.log" \
       -o "-p $PG_PORT -k $WORK/pg/socket -c listen_addresses=127.0.0.1" -w -t 60 start >"$WORK/pg_ctl.log" 2>&1; then
    PG_SKIP="pg_ctl start failed: $(tail -3 "$WORK/pg/server.log" 2>/dev/null | tr '\n' ' ')"; return
  fi
  local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres)
  "${psql[@]}" -c "CREATE DATABASE portcullis" -c "CREATE DATABASE portcullis_async" \
    -c "ALTER DATABASE portcullis_async SET synchronous_commit = off" >/dev/null
  PG_SETTINGS=$("${psql[@]}" -At -c "SELECT 'Postgres ' || current_setting('server_version') || ': fsync=' || current_setting('fsync') || ', synchronous_commit=' || current_setting('synchronous_commit') || ', wal_sync_method=' || current_setting('wal_sync_method') || ', shared_buffers=' || current_setting('shared_buffers')")
}
start_postgres
[ -n "$PG_SKIP" ] && echo "skipping the Postgres runs: $PG_SKIP" >&2

# What one commit's flush costs on this disk (SQLite and Postgres both pay it
# per durable commit): mean of 200 4 KiB write + fdatasync.
FSYNC_US=$(python3 - "$WORK/fsync-probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"\0" * 4096 * 16); os.fsync(fd)
start = time.perf_counter()
for i in range(200):
    os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
    os.fdatasync(fd)
print(f"{(time.perf_counter() - start) / 200 * 1e6:.0f}")
PY
)

# The admin session API over one keep-alive connection: creating and revoking
# a thousand sessions one curl process at a time would take longer than the runs.
cat > "$WORK/admin.py" <<'PY'
import http.client, json, sys
port, token, command, count, prefix = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
def call(method, path, body=None):
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body)
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    answer = conn.getresponse()
    return answer.status, answer.read()
def create(i):
    status, body = call("POST", "/admin/sessions", {"subject": f"{prefix}-{i}", "claims": {"role": "user"}, "deviceInfo": "bench"})
    if status != 201:
        sys.exit(f"POST /admin/sessions answered {status}: {body[:200]!r}")
    return json.loads(body)["data"]
if command == "create":  # refresh tokens to argv[6], access tokens to argv[7]
    with open(sys.argv[6], "w") as refresh, open(sys.argv[7], "w") as access:
        for i in range(count):
            data = create(i)
            refresh.write(data["refreshToken"] + "\n")
            access.write(data["accessToken"] + "\n")
elif command == "revoke":  # open and revoke; prints one revoked access token
    last = None
    for i in range(count):
        data = create(i)
        status, body = call("DELETE", f"/admin/sessions/{data['sessionId']}")
        if status != 200:
            sys.exit(f"DELETE /admin/sessions answered {status}: {body[:200]!r}")
        last = data["accessToken"]
    print(last)
PY

# gateway STORE ROTATION [POOL]: starts the gateway; sets GW, ADMIN, GW_PID, CONFIG.
gateway() {
  local store=$1 rotation=$2 pool=${3:-8} ready=0
  GW=$(port); ADMIN=$(port)
  CONFIG="$WORK/gw-$GW.yaml"
  cat > "$CONFIG" <<YAML
listeners:
  proxy: "127.0.0.1:$GW"
  admin: "127.0.0.1:$ADMIN"
  threads: $THREADS
  grace_period: 1s
  drain_window: 0s   # the script stops each gateway and waits for it
log:
  level: warn
  access: false
jwt:
  issuer: bench
  audience: api
  keys:
    - kid: bench
      algorithms: [HS256]
      secret: "$SECRET"
      sign: true
upstreams:
  demo:
    targets: ["127.0.0.1:$UP"]
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: demo
    auth: required
sessions:
  store: "$store"
  rotation: $rotation
  refresh_secret: "$REFRESH_SECRET"
  admin_token: "$ADMIN_TOKEN"
  rate_limit: { per_ip: 0, per_token: 0 }
  pool: { max_connections: $pool }
YAML
  target/release/portcullis run -c "$CONFIG" >"$WORK/gw-$GW.log" 2>&1 &
  GW_PID=$!; PIDS+=("$GW_PID")
  for _ in $(seq 1 400); do
    if curl -fs "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$GW_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [ "$ready" != 1 ]; then
    echo "the gateway on $store did not become ready" >&2; cat "$WORK/gw-$GW.log" >&2; exit 1
  fi
}
stop_gateway() {
  kill "$GW_PID" 2>/dev/null || true
  wait "$GW_PID" 2>/dev/null || true
}

TICK=$(getconf CLK_TCK)

# wrk_parse OUTPUT -> "rps p50 p99 requests non2xx socket_errors"
wrk_parse() {
  local out=$1 errs non2xx
  errs=$(wrk_socket_errors "$out" ",")
  non2xx=$(wrk_non2xx "$out")
  echo "$(wrk_summary "$out") ${non2xx:-0} ${errs:-none}" | tr -s ' '
}

# measure ROWS NAME [wrk args…] -> appends "name rps p50 p99 requests non2xx
# socket_errors gateway_cpu_us_per_request machine_busy_% other_load_before/after" to ROWS.
measure() {
  local rows=$1 name=$2; shift 2
  local before after b0 t0 b1 t1 out o0 o1
  quiet
  o0=$(other_load)
  before=$(cpu_ticks "$GW_PID"); read -r b0 t0 <<<"$(busy_ticks)"
  out=$(wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "$@")
  after=$(cpu_ticks "$GW_PID"); read -r b1 t1 <<<"$(busy_ticks)"
  o1=$(other_load)
  read -r rps p50 p99 reqs non2xx errs <<<"$(wrk_parse "$out")"
  if [ "$non2xx" != 0 ] || [ "$errs" != none ]; then
    echo "WARNING: $name: $non2xx non-2xx answers, socket errors: $errs" >&2
    echo "$out" >&2
  fi
  local cpu busy
  cpu=$(awk -v t="$((after - before))" -v r="$reqs" -v hz="$TICK" 'BEGIN {printf "%.0f", r ? t/hz*1e6/r : 0}')
  busy=$(awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" 'BEGIN {printf "%.0f", t ? 100*b/t : 0}')
  echo "$name $rps $p50 $p99 $reqs $non2xx $errs $cpu $busy $o0%/$o1%" >> "$rows"
}

UP=$(port)
target/release/portcullis-demo-backend --listen "127.0.0.1:$UP" --name bench >/dev/null 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 400); do curl -fs "http://127.0.0.1:$UP/health" >/dev/null 2>&1 && break; sleep 0.05; done

# Refresh throughput ----------------------------------------------------------------
# "name url pool": SQLite with its default pool of 1 — writers queue in the
# pool — and with 8, where they queue in SQLite's busy handler instead, which
# retries a locked BEGIN IMMEDIATE after sleeps of up to 100 ms (the reason
# the default is 1); Postgres with its default of 8.
STORES=("sqlite_pool_8 sqlite:$WORK/s.db 8" "sqlite sqlite:$WORK/s1.db 1")
if [ -z "$PG_SKIP" ]; then
  STORES+=("postgres postgres://postgres@127.0.0.1:$PG_PORT/portcullis 8")
  STORES+=("postgres_async_commit postgres://postgres@127.0.0.1:$PG_PORT/portcullis_async 8")
fi
for entry in "${STORES[@]}"; do
  read -r name url pool <<<"$entry"
  # rotation: false — each of $SESSIONS sessions' token is presented again and again.
  gateway "$url" false "$pool"
  python3 "$WORK/admin.py" "$ADMIN" "$ADMIN_TOKEN" create "$SESSIONS" "u-$name" "$WORK/$name.refresh" "$WORK/$name.access"
  first=$(head -1 "$WORK/$name.refresh")
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW/api/auth/refresh" \
    -H 'Content-Type: application/json' -d "{\"refreshToken\":\"$first\"}")
  [ "$code" = 200 ] || { echo "$name: a refresh answered $code before measuring" >&2; cat "$WORK/gw-$GW.log" >&2; exit 1; }
  REFRESH_MODE=kept REFRESH_TOKENS="$WORK/$name.refresh" \
    measure "$WORK/refresh" "$name kept" -s benches/refresh.lua "http://127.0.0.1:$GW/api/auth/refresh"
  stop_gateway
  # rotation: true — the same sessions, their tokens still current.
  gateway "$url" true "$pool"
  REFRESH_MODE=rotated REFRESH_TOKENS="$WORK/$name.refresh" \
    measure "$WORK/refresh" "$name rotated" -s benches/refresh.lua "http://127.0.0.1:$GW/api/auth/refresh"
  stop_gateway
done

# The revoked-sid check on a proxied request ------------------------------------------
gateway "sqlite:$WORK/revoked.db" false
REVOKED_TOKEN=$(python3 "$WORK/admin.py" "$ADMIN" "$ADMIN_TOKEN" revoke "$REVOKED" u-revoked)
python3 "$WORK/admin.py" "$ADMIN" "$ADMIN_TOKEN" create 1 u-live "$WORK/live.refresh" "$WORK/live.access"
SID_TOKEN=$(head -1 "$WORK/live.access")
PLAIN_TOKEN=$(target/release/portcullis token mint -c "$CONFIG" --sub u-live-0 --claim role=user --ttl 1h)
REVOKED_IN_SET=$(curl -fs "http://127.0.0.1:$ADMIN/metrics" | awk '/^portcullis_sessions_revoked_total\{reason="admin"\}/ {print $2}')
has_sid() { python3 -c 'import base64,json,sys; p=sys.argv[1].split(".")[1]; print("sid" in json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4))))' "$1"; }
[ "$(has_sid "$SID_TOKEN")" = True ] && [ "$(has_sid "$PLAIN_TOKEN")" = False ] \
  || { echo "the session token must carry sid and the minted one must not" >&2; exit 1; }
for check in "$PLAIN_TOKEN 200" "$SID_TOKEN 200" "$REVOKED_TOKEN 401"; do
  read -r token want <<<"$check"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW/api/x" -H "Authorization: Bearer $token")
  [ "$code" = "$want" ] || { echo "proxied request answered $code, expected $want" >&2; exit 1; }
done
for run in $(seq 1 "$REPEATS"); do
  measure "$WORK/revoked" "without_sid $run" -H "Authorization: Bearer $PLAIN_TOKEN" "http://127.0.0.1:$GW/api/x"
  measure "$WORK/revoked" "with_sid $run" -H "Authorization: Bearer $SID_TOKEN" "http://127.0.0.1:$GW/api/x"
done
stop_gateway

# Report -----------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b ? a/b : 0}'; }
col() { awk -v n="$1" -v c="$2" '$1" "$2==n {print $c}' "$3"; }
# median_of KIND COLUMN FORMAT: median of a column over the repeated runs of KIND in
# $WORK/revoked ("kind run rps p50 p99 requests non2xx errors cpu busy others"),
# wrk durations in milliseconds. The median, so that one run disturbed by
# another build does not decide the ratio.
median_of() {
  awk -v k="$1" -v c="$2" '$1==k {v=$c; n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; print n}' "$WORK/revoked" \
    | sort -g | awk '{v[NR]=$1} END {m = NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf fmt, m}' fmt="$3"
}
SQLITE_KEPT=$(col "sqlite kept" 3 "$WORK/refresh")
SQLITE_ROT=$(col "sqlite rotated" 3 "$WORK/refresh")
PLAIN_RPS=$(median_of without_sid 3 %.0f); SID_RPS=$(median_of with_sid 3 %.0f)
PLAIN_P99=$(median_of without_sid 5 %.2f); SID_P99=$(median_of with_sid 5 %.2f)
PLAIN_CPU=$(median_of without_sid 9 %.0f); SID_CPU=$(median_of with_sid 9 %.0f)
SPREAD=$(awk '$1=="without_sid" {if (!min || $3<min) min=$3; if ($3>max) max=$3} END {printf "%.1f", min ? 100*(max-min)/min : 0}' "$WORK/revoked")

criterion_report() { # the estimates of `cargo bench --bench session`, if any
  python3 - "$TARGET_DIR/criterion" "$SID_CPU" <<'PY'
import json, os, sys, time
root, request_cpu_us = sys.argv[1], float(sys.argv[2])
def mean(*parts):
    path = os.path.join(root, *parts, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["mean"]["point_estimate"], os.path.getmtime(path)
    except (OSError, KeyError, ValueError):
        return None, None
def fmt(ns):
    if ns is None: return "–"
    if ns >= 1e6: return f"{ns/1e6:.2f} ms"
    if ns >= 1e3: return f"{ns/1e3:.1f} µs"
    return f"{ns:.1f} ns"
verify_sid, when = mean("revoked_check", "verify_cached_hs256_with_sid")
if verify_sid is None:
    print("No criterion estimates in target/criterion: run `cargo bench --bench session` (this script does unless BENCH_CRITERION=0 or --smoke).")
    sys.exit()
print(f"Estimates of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(when))}: mean per iteration, one thread.")
print()
print("### Revoked-set lookup against the cached verification")
print()
print("| benchmark | time | ratio to cached HS256 verify (token with sid) |")
print("|---|---|---|")
rows = [("cached HS256 verify, token with `sid`", ("verify_cached_hs256_with_sid",)),
        ("cached HS256 verify, token without `sid`", ("verify_cached_hs256_without_sid",))]
for size in ("0", "1000", "100000"):
    rows.append((f"`RevokedSet::contains`, {int(size):,} revoked, miss", ("contains_miss", size)))
    if size != "0":
        rows.append((f"`RevokedSet::contains`, {int(size):,} revoked, hit", ("contains_hit", size)))
rows.append(("cached verify + `contains` (1,000 revoked, miss) — `access::check` for a session token", ("verify_cached_then_contains_1000",)))
for label, parts in rows:
    ns, _ = mean("revoked_check", *parts)
    ratio = f"{ns / verify_sid:.3f}" if ns is not None else "–"
    print(f"| {label} | {fmt(ns)} | {ratio} |")
miss_1k, _ = mean("revoked_check", "contains_miss", "1000")
miss_100k, _ = mean("revoked_check", "contains_miss", "100000")
if miss_1k is not None and miss_100k is not None and request_cpu_us > 0:
    print()
    print(f"So the check adds {miss_1k:.0f} ns to a proxied request with a `sid` while 1,000 sessions are revoked")
    print(f"({miss_100k:.0f} ns with 100,000): {100 * miss_1k / verify_sid:.1f}% of the cached verification, and")
    print(f"{100 * miss_1k / (request_cpu_us * 1000):.3f}% of the {request_cpu_us:.0f} µs of gateway CPU such a request took in the wrk run above.")
print()
print("### Refresh exchange at the store level")
print()
print("Tag check + successor mint + `exchange_refresh_token` + access-token signing, one session, one")
print("caller (no concurrency): latency of a lone refresh without HTTP. Rotated: every iteration presents")
print("the token the previous one returned; kept: `rotation: false`.")
print()
print("| store | rotated | kept | rotated, refreshes/s for one caller | ratio rotated vs SQLite |")
print("|---|---|---|---|---|")
sqlite_rot, _ = mean("refresh_exchange", "sqlite", "rotated")
for store in ("sqlite", "postgres", "postgres_async_commit"):
    rot, _ = mean("refresh_exchange", store, "rotated")
    kept, _ = mean("refresh_exchange", store, "kept")
    if rot is None and kept is None:
        print(f"| {store} | skipped (see the bench's output) | | | |")
        continue
    per_s = f"{1e9 / rot:,.0f}" if rot else "–"
    vs = f"{sqlite_rot / rot:.2f}" if rot and sqlite_rot else "–"
    print(f"| {store} | {fmt(rot)} | {fmt(kept)} | {per_s} | {vs} |")
PY
}

{
  echo "# Session benchmark results"
  echo
  echo "Generated by \`benches/refresh_load.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo "Machine: $(machine);"
  echo "disk: ${FSYNC_US} µs per 4 KiB write + fdatasync (mean of 200, in the run's temp directory) — what a durable commit waits for."
  echo "When the script started: load average ${LOAD_BEFORE}, other load ${OTHER_LOAD}% of both cores, ${OTHER_PG} postgres"
  echo "processes of other test clusters. Other engineers' builds and tests share this machine; each row says how busy"
  echo "it was just before and after the run (compare the ratios, measured side by side in one run, not absolute values)."
  [ -n "$PG_SKIP" ] || echo "${PG_SETTINGS} (a throwaway cluster with the server's defaults; \`portcullis_async\` sets \`synchronous_commit = off\`)."
  [ "$SMOKE" = 1 ] && echo && echo "**Smoke run** (${SECONDS_PER_RUN}s per case): checks the harness works; the numbers mean little."
  echo
  echo "## Refresh end to end"
  echo
  echo "\`POST /api/auth/refresh\` with wrk -t1 -c$CONNECTIONS -d${SECONDS_PER_RUN}s on loopback, cycling over $SESSIONS sessions opened"
  echo "through the admin API. Gateway: \`listeners.threads: $THREADS\`, session runtime of 2 threads, store pool at its default"
  echo "(1 connection for SQLite, 8 for Postgres; \`sqlite_pool_8\`: \`pool.max_connections: 8\`), rate limits off. Gateway, database, wrk"
  echo "and the demo backend share the $(nproc) cores. SQLite runs inside the gateway process, so its gateway CPU includes"
  echo "the database's work; Postgres' own CPU shows only in machine busy."
  echo "Kept: \`rotation: false\`, each token presented again. Rotated: \`rotation: true\` (the default), each 200"
  echo "answer's successor is presented next (\`benches/refresh.lua\`, which also parses every answer body)."
  echo "Machine busy = all cores, user + system, during the run (100% = both cores saturated). Other load = the same"
  echo "over one second just before and just after the run, while this script's processes idle: work of other builds"
  echo "and tests. Each run first waits up to ${QUIET_WAIT}s for it to drop below 10%; rows where it did not are disturbed."
  echo
  echo "| store | rotation | refreshes/s | p50 | p99 | non-2xx | socket errors | gateway CPU µs/refresh | machine busy | other load (before/after) | ratio vs SQLite (same rotation) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  while read -r name kind rps p50 p99 reqs non2xx errs cpu busy others; do
    base=$SQLITE_KEPT; [ "$kind" = rotated ] && base=$SQLITE_ROT
    flag=""; [ "$non2xx" != 0 ] && flag=" ⚠"
    printf '| %s | %s | %s | %s | %s | %s%s | %s | %s | %s%% | %s | %s |\n' "$name" "$kind" "$rps" "$p50" "$p99" \
      "$non2xx" "$flag" "$errs" "$cpu" "$busy" "$others" "$(ratio "$rps" "$base")"
  done < "$WORK/refresh"
  [ -n "$PG_SKIP" ] && echo && echo "Postgres skipped: $PG_SKIP"
  echo
  echo "## Revoked-sid check on a proxied request"
  echo
  echo "\`GET /api/x\` on an \`auth: required\` route proxied to the demo backend, wrk -t1 -c$CONNECTIONS -d${SECONDS_PER_RUN}s, the"
  echo "two tokens in alternating runs on one gateway (SQLite store) while the revoked set holds ${REVOKED_IN_SET:-?} sessions"
  echo "(revoked through the admin API; a revoked session's access token was checked to get 401). Without \`sid\`:"
  echo "\`portcullis token mint\` (the check is skipped); with \`sid\`: a live session's access token from the admin API"
  echo "(verified from the cache, then looked up in the revoked set: a miss)."
  echo
  echo "| token | run | requests/s | p50 | p99 | non-2xx | gateway CPU µs/request | machine busy | other load (before/after) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  while read -r kind run rps p50 p99 reqs non2xx errs cpu busy others; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s%% | %s |\n' "$kind" "$run" "$rps" "$p50" "$p99" "$non2xx" "$cpu" "$busy" "$others"
  done < "$WORK/revoked"
  echo
  echo "Medians over the runs: without \`sid\` ${PLAIN_RPS} requests/s, p99 ${PLAIN_P99} ms, ${PLAIN_CPU} µs CPU/request;"
  echo "with \`sid\` ${SID_RPS} requests/s, p99 ${SID_P99} ms, ${SID_CPU} µs CPU/request."
  echo "**Throughput ratio with/without \`sid\`: $(ratio "$SID_RPS" "$PLAIN_RPS")×**; p99 ratio $(ratio "$SID_P99" "$PLAIN_P99")×."
  [ "$REPEATS" -gt 1 ] && echo "Run-to-run spread of the same case (without \`sid\`, max − min): ${SPREAD}% — differences below it are noise."
  echo "The precise cost of the lookup is in the criterion table below (nanoseconds against a request's microseconds)."
  echo
  echo "## Criterion"
  echo
  echo "\`cargo bench --bench session\` ($CRITERION_OTHERS)."
  echo
  criterion_report
} > "$OUT"
cat "$OUT"
[ "$SMOKE" = 1 ] && echo && echo "(smoke results written to $OUT)"
exit 0
