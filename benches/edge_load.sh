#!/usr/bin/env bash
# Edge benchmarks, measured side by side in one run (issues #13 and #14):
#
# Issue #13, TLS and HTTP/2 at the edge. The JWT + claims-to-headers route of
# benches/load.sh (same upstream, request, headers and 32 connections) on
# Portcullis' plain listener (`listeners.h2c: true`) and on its TLS listener
# (`listeners.tls`), beside bare pingora (benches/bare_pingora.rs with --h2c
# and --tls-listen: the floor, per transport) and HAProxy 2.6 doing the same
# job (benches/haproxy/jwt-gateway.cfg with its optional TLS bind), all three
# serving one certificate made for the run (ECDSA P-256, as scripts/dev-tls.sh
# makes), and for the handshake cases a second set of the three serving an
# RSA 2048 certificate:
#   - keep-alive throughput: HTTP/1.1 with wrk, HTTP/2 with h2load (one stream
#     per connection), plain text and TLS;
#   - new connections: every request on a new connection (`Connection:
#     close`), plain TCP (h2load --h1), full TLS handshakes (h2load --h1: it
#     never resumes a session) and resumed ones (wrk: it keeps each
#     connection's TLS session and offers it again on reconnect), with the
#     ECDSA and the RSA certificate; the gateway's CPU per connection shows
#     what the handshake costs;
#   - whether each server resumes a session (openssl s_client -sess_out /
#     -sess_in), and still does after BENCH_RESUME_OTHERS (300) other full
#     handshakes (python ssl): how many sessions it keeps;
#   - RSS with BENCH_MANY_CONNECTIONS (1,000) idle keep-alive TLS connections
#     (one request each, then held open) and with as many busy ones (wrk).
# Issue #14, tokens from an OpenID Provider: two real oidc-provider instances
# (tests/fixtures/oidc-provider, RS256 and ES256) on loopback, configured as
# `jwt.issuers` with discovery; their tokens through the same JWT + plugin
# route against an HS256 token of the gateway's own key with the same claims:
#   - with the verified-token cache (the default), and on a second gateway with
#     `jwt.cache_entries: 0` (every request verifies the signature): the
#     difference in CPU per request is the verification cost of each algorithm;
#   - memory per cached token: on a third gateway that serves nothing else,
#     RSS before and after BENCH_CACHE_TOKENS (10,000) distinct tokens of each
#     algorithm (benches/oidc_tokens.mjs signs them with the provider's own
#     key), and after as many requests with tokens already cached (control).
#
# Every measured case runs BENCH_ROUNDS (5) times, the order rotated each
# round; the report gives medians, the spread of requests/s, the gateway's CPU
# per request, and the other load on the machine during each case (all CPU
# time busy minus this script's processes).
#
#   benches/edge_load.sh [--smoke] [--out FILE]
#
# benches/load.sh (make bench) runs it and puts its sections into
# benches/RESULTS.md. Alone, it replaces its own sections in benches/RESULTS.md
# (between the `edge_load.sh` markers), or writes FILE with --out.
# --smoke (make test, through `benches/load.sh --smoke`): the debug binaries,
# 1 s per case, one round, 100 connections, 200 tokens; checks that the
# harness works (writes $CARGO_TARGET_DIR/edge-smoke.md unless --out), numbers
# not asserted. Either mode exits non-zero when the harness breaks.
# Other knobs: BENCH_SECONDS (10), BENCH_HANDSHAKE_SECONDS (5),
# BENCH_CONNECTIONS (32), BENCH_MANY_SECONDS, BENCH_QUIET_WAIT (s to wait for
# other load to settle before each round: 30, 0 in smoke), BENCH_READY_TIMEOUT,
# BENCH_BIN_DIR, BENCH_NO_BUILD=1 (load.sh has built), CARGO_TARGET_DIR.
# Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

SMOKE=0
OUT=
usage() { echo "usage: benches/edge_load.sh [--smoke] [--out FILE]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) SMOKE=1 ;;
    --out) [ $# -ge 2 ] || usage; OUT=$2; shift ;;
    *) usage ;;
  esac
  shift
done
fail() { echo "benches/edge_load.sh: $*" >&2; exit 1; }

TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ "$SMOKE" = 1 ]; then
  SECONDS_PER_RUN=${BENCH_SECONDS:-1}
  HS_SECONDS=${BENCH_HANDSHAKE_SECONDS:-1}
  ROUNDS=${BENCH_ROUNDS:-1}
  MANY=${BENCH_MANY_CONNECTIONS:-100}
  CACHE_TOKENS=${BENCH_CACHE_TOKENS:-200}
  QUIET_WAIT=${BENCH_QUIET_WAIT:-0}
  BUSY_WINDOW=1
  BIN_DIR=${BENCH_BIN_DIR:-$TARGET_DIR/debug}
  WARM_REQUESTS=200
else
  SECONDS_PER_RUN=${BENCH_SECONDS:-10}
  HS_SECONDS=${BENCH_HANDSHAKE_SECONDS:-5}
  ROUNDS=${BENCH_ROUNDS:-5}
  MANY=${BENCH_MANY_CONNECTIONS:-1000}
  CACHE_TOKENS=${BENCH_CACHE_TOKENS:-10000}
  QUIET_WAIT=${BENCH_QUIET_WAIT:-30}
  BUSY_WINDOW=2
  BIN_DIR=${BENCH_BIN_DIR:-$TARGET_DIR/release}
  WARM_REQUESTS=2000
fi
CONNECTIONS=${BENCH_CONNECTIONS:-32}
MANY_SECONDS=${BENCH_MANY_SECONDS:-$((SECONDS_PER_RUN < 5 ? SECONDS_PER_RUN : 5))}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-60}
HAPROXY_CFG=${BENCH_HAPROXY_CFG:-benches/haproxy/jwt-gateway.cfg}
RESUME_OTHERS=${BENCH_RESUME_OTHERS:-$([ "$SMOKE" = 1 ] && echo 20 || echo 300)}
# One TLS 1.3 suite for every client: h2load prefers AES-128 and wrk/openssl
# AES-256, and HAProxy (server order) and rustls (client order) choose
# differently; forced here, every TLS row uses TLS_AES_256_GCM_SHA384.
TLS13_CIPHER=TLS_AES_256_GCM_SHA384
FIXTURE=tests/fixtures/oidc-provider
RESOURCE=https://api.portcullis.test
TICK=$(getconf CLK_TCK)

missing=$(missing_tools wrk h2load haproxy curl python3 ss openssl node)
[ -z "$missing" ] || fail "$missing missing: bash scripts/setup.sh (as root) installs them"
[ -f plugins/out/claims-to-headers.wasm ] || fail "plugins/out/claims-to-headers.wasm missing: make plugins"
[ -d "$FIXTURE/node_modules/oidc-provider" ] || fail "the OpenID Provider fixture is not installed: bash scripts/setup.sh"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  if [ "$SMOKE" = 1 ]; then
    if [ ! -x "$BIN_DIR/portcullis" ] || [ ! -x "$BIN_DIR/portcullis-demo-backend" ] || [ ! -x "$BIN_DIR/bare-pingora" ]; then
      cargo build --bins -q
    fi
  else
    cargo build --release --bins -q
  fi
fi
[ -x "$BIN_DIR/portcullis" ] && [ -x "$BIN_DIR/portcullis-demo-backend" ] && [ -x "$BIN_DIR/bare-pingora" ] \
  || fail "no binaries in $BIN_DIR"
case $BIN_DIR in
  */release) BUILD="release build ($BIN_DIR, \`cargo build --release\`)" ;;
  */debug) BUILD="debug build ($BIN_DIR)" ;;
  *) BUILD="the binaries in $BIN_DIR" ;;
esac
phase() { echo "benches/edge_load.sh: $* (${SECONDS}s)" >&2; }
BUSY_BEFORE=$(cpu_busy "$BUSY_WINDOW")

WORK=$(mktemp -d)
# Everything started in the background is in PIDS (WRK_PID: a background wrk);
# the EXIT trap ends them all: TERM, up to 3 s to exit, then KILL.
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

# Distinct loopback ports, free a moment ago (all bound at once, so no two are equal).
read -r UP GWP GWT ADM GWC ADMC GWM ADMM HAP HAPT BARE BARET IDP_RS IDP_ES GWRP GWRT ADMR HAPRP HAPRT BARERP BARERT \
  <<<"$(python3 -c '
import socket
socks = [socket.socket() for _ in range(21)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
SECRET="bench-secret-0123456789-0123456789-abcdef"
ISSUER=bench

# The certificates the TLS servers serve (self-signed; no client verifies):
# ECDSA P-256 for every case, RSA 2048 for the second set (handshakes).
mkdir -p "$WORK/tls"
for kind in ec rsa; do
  case $kind in
    ec) key_args=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    rsa) key_args=(-newkey rsa:2048) ;;
  esac
  openssl req -x509 "${key_args[@]}" -nodes -keyout "$WORK/tls/$kind.key" -out "$WORK/tls/$kind.crt" -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=serverAuth" 2>/dev/null \
    || fail "openssl could not make the test certificate ($kind)"
  cat "$WORK/tls/$kind.crt" "$WORK/tls/$kind.key" > "$WORK/tls/$kind-haproxy.pem"
done

# The two OpenID Providers first: the gateways fetch their keys at start.
node "$FIXTURE/provider.mjs" --port "$IDP_RS" --alg RS256 --state-dir "$WORK/idp-rs" >"$WORK/idp-rs.out" 2>"$WORK/idp-rs.log" &
IDP_RS_PID=$!; PIDS+=("$IDP_RS_PID")
node "$FIXTURE/provider.mjs" --port "$IDP_ES" --alg ES256 --state-dir "$WORK/idp-es" >"$WORK/idp-es.out" 2>"$WORK/idp-es.log" &
IDP_ES_PID=$!; PIDS+=("$IDP_ES_PID")

# gw_config PROXY ADMIN CACHE_ENTRIES [TLS_PORT CERT_KIND] -> YAML; with a TLS
# port: h2c on the plain listener and the TLS listener with that certificate.
gw_config() {
  local proxy=$1 admin=$2 cache=$3 tls_port=${4:-} cert=${5:-}
  cat <<YAML
listeners:
  proxy: "127.0.0.1:$proxy"
  admin: "127.0.0.1:$admin"
  threads: 1
  grace_period: 0s   # stop at once when the run ends
  drain_window: 0s
YAML
  if [ -n "$tls_port" ]; then
    cat <<YAML
  h2c: true
  tls:
    listen: "127.0.0.1:$tls_port"
    cert_file: $WORK/tls/$cert.crt
    key_file: $WORK/tls/$cert.key
YAML
  fi
  cat <<YAML
log:
  level: warn
  access: false
jwt:
  issuer: $ISSUER
  cache_entries: $cache
  keys:
    - kid: bench
      algorithms: [HS256]
      secret: "$SECRET"
      sign: true
  issuers:
    - name: idp-rs256
      issuer: "http://127.0.0.1:$IDP_RS"
      discovery: true
      allow_http: loopback
      audiences: ["$RESOURCE"]
    - name: idp-es256
      issuer: "http://127.0.0.1:$IDP_ES"
      discovery: true
      allow_http: loopback
      audiences: ["$RESOURCE"]
upstreams:
  demo:
    targets: ["127.0.0.1:$UP"]
plugins:
  identity:
    module: $PWD/plugins/out/claims-to-headers.wasm
    allow_headers: [X-User-Id, X-User-Role, X-User-Email]
    config:
      headers:
        - { header: X-User-Id, claim: sub, required: true }
        - { header: X-User-Role, claim: role }
        - { header: X-User-Email, claim: email }
routes:
  - name: open
    match: { path_prefix: /open }
    upstream: demo
    auth: none
  - name: authed-plugin
    match: { path_prefix: /plug }
    upstream: demo
    plugins: [identity]
YAML
}
gw_config "$GWP" "$ADM" 100000 "$GWT" ec > "$WORK/edge.yaml"      # cache on: the default size
gw_config "$GWRP" "$ADMR" 100000 "$GWRT" rsa > "$WORK/rsa.yaml"    # handshakes with RSA
gw_config "$GWC" "$ADMC" 0 > "$WORK/cold.yaml"                     # every request verifies
gw_config "$GWM" "$ADMM" 100000 > "$WORK/memory.yaml"              # only the memory measure

logs() { # the tail of every server log, for a failure message
  local f
  for f in "$WORK"/*.log; do
    [ -s "$f" ] && { echo "--- $(basename "$f"):"; tail -n 20 "$f"; }
  done >&2
  return 0
}
NAMES=()
alive() { # fails the run if a server has exited
  local i
  for i in "${!NAMES[@]}"; do
    gone "${SERVERS[$i]}" && { logs; fail "${NAMES[$i]} exited ${1:+($1)}"; }
  done
  return 0
}
SERVERS=()
serve() { NAMES+=("$1"); SERVERS+=("$2"); PIDS+=("$2"); }
NAMES+=(oidc-provider-rs256 oidc-provider-es256); SERVERS+=("$IDP_RS_PID" "$IDP_ES_PID")

deadline=$((SECONDS + READY_TIMEOUT))
until grep -q '^ready ' "$WORK/idp-rs.out" && grep -q '^ready ' "$WORK/idp-es.out"; do
  alive "while starting"
  [ "$SECONDS" -lt "$deadline" ] || { logs; fail "the OpenID Providers did not start within ${READY_TIMEOUT}s"; }
  sleep 0.05
done

"$BIN_DIR/portcullis-demo-backend" --listen "127.0.0.1:$UP" --name bench >"$WORK/upstream.log" 2>&1 &
UP_PID=$!; serve upstream "$UP_PID"
"$BIN_DIR/portcullis" run -c "$WORK/edge.yaml" >"$WORK/portcullis.log" 2>&1 &
GW_PID=$!; serve portcullis "$GW_PID"
"$BIN_DIR/portcullis" run -c "$WORK/rsa.yaml" >"$WORK/portcullis-rsa.log" 2>&1 &
GWR_PID=$!; serve portcullis-rsa "$GWR_PID"
"$BIN_DIR/portcullis" run -c "$WORK/cold.yaml" >"$WORK/portcullis-cold.log" 2>&1 &
GWC_PID=$!; serve portcullis-cold "$GWC_PID"
"$BIN_DIR/portcullis" run -c "$WORK/memory.yaml" >"$WORK/portcullis-memory.log" 2>&1 &
GWM_PID=$!; serve portcullis-memory "$GWM_PID"
HAPROXY_LISTEN="127.0.0.1:$HAP" HAPROXY_UPSTREAM="127.0.0.1:$UP" JWT_SECRET="$SECRET" JWT_ISSUER="$ISSUER" \
  HAPROXY_TLS_LISTEN="127.0.0.1:$HAPT" HAPROXY_TLS_PEM="$WORK/tls/ec-haproxy.pem" \
  haproxy -db -f "$HAPROXY_CFG" >"$WORK/haproxy.log" 2>&1 &
HAP_PID=$!; serve haproxy "$HAP_PID"
HAPROXY_LISTEN="127.0.0.1:$HAPRP" HAPROXY_UPSTREAM="127.0.0.1:$UP" JWT_SECRET="$SECRET" JWT_ISSUER="$ISSUER" \
  HAPROXY_TLS_LISTEN="127.0.0.1:$HAPRT" HAPROXY_TLS_PEM="$WORK/tls/rsa-haproxy.pem" \
  haproxy -db -f "$HAPROXY_CFG" >"$WORK/haproxy-rsa.log" 2>&1 &
HAPR_PID=$!; serve haproxy-rsa "$HAPR_PID"
"$BIN_DIR/bare-pingora" --listen "127.0.0.1:$BARE" --upstream "127.0.0.1:$UP" --h2c \
  --tls-listen "127.0.0.1:$BARET" --cert "$WORK/tls/ec.crt" --key "$WORK/tls/ec.key" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!; serve bare-pingora "$BARE_PID"
"$BIN_DIR/bare-pingora" --listen "127.0.0.1:$BARERP" --upstream "127.0.0.1:$UP" \
  --tls-listen "127.0.0.1:$BARERT" --cert "$WORK/tls/rsa.crt" --key "$WORK/tls/rsa.key" >"$WORK/bare-rsa.log" 2>&1 &
BARER_PID=$!; serve bare-pingora-rsa "$BARER_PID"

# CPU accounting: machine-wide busy time minus every server above and this
# script's finished children (wrk, h2load, curl, python) = other work.
server_ticks() {
  local p t=0 v
  for p in "${SERVERS[@]}"; do v=$(cpu_ticks "$p" 2>/dev/null) || v=0; t=$((t + v)); done
  echo "$t"
}
BUSY0=$(busy_jiffies); ALL0=$(all_jiffies); SRV0=$(server_ticks); child_jiffies; CHILD0=$CHILD

code() { curl -sk -o /dev/null -w '%{http_code}' "$@" || true; }
ready=0
while [ "$SECONDS" -lt "$deadline" ]; do
  if curl -fs "http://127.0.0.1:$UP/health" >/dev/null 2>&1 \
     && curl -fs "http://127.0.0.1:$ADM/readyz" >/dev/null 2>&1 \
     && curl -fs "http://127.0.0.1:$ADMC/readyz" >/dev/null 2>&1 \
     && curl -fs "http://127.0.0.1:$ADMR/readyz" >/dev/null 2>&1 \
     && [ "$(code "https://127.0.0.1:$GWRT/plug/x")" = 401 ] && [ "$(code "https://127.0.0.1:$HAPRT/x")" = 401 ] \
     && [ "$(code "https://127.0.0.1:$BARERT/health")" = 200 ] \
     && curl -fs "http://127.0.0.1:$ADMM/readyz" >/dev/null 2>&1 \
     && [ "$(code "https://127.0.0.1:$GWT/plug/x")" = 401 ] \
     && [ "$(code "http://127.0.0.1:$HAP/x")" = 401 ] && [ "$(code "https://127.0.0.1:$HAPT/x")" = 401 ] \
     && [ "$(code "http://127.0.0.1:$BARE/health")" = 200 ] && [ "$(code "https://127.0.0.1:$BARET/health")" = 200 ]; then
    ready=1; break
  fi
  alive "while starting"
  sleep 0.05
done
[ "$ready" = 1 ] || { logs; fail "the servers did not become ready within ${READY_TIMEOUT}s"; }

# Tokens with the same claims (iss and signature aside): HS256 with the
# gateway's own key, RS256 and ES256 from the providers' /test/sign.
NOW=$(date +%s)
claims() { # ISS JTI -> the claims JSON
  printf '{"iss":"%s","aud":"%s","sub":"bench-user","role":"admin","email":"bench-user@example.com","iat":%s,"exp":%s,"jti":"%s"}' \
    "$1" "$RESOURCE" "$NOW" $((NOW + 3600)) "$2"
}
idp_sign() { # PORT JTI -> a token signed by that provider
  curl -fsS -X POST -H 'content-type: application/json' -d "{\"claims\": $(claims "http://127.0.0.1:$1" "$2")}" \
    "http://127.0.0.1:$1/test/sign" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}
hs_sign() { # JTI COUNT [LENGTH] -> COUNT tokens of the gateway's own key (about LENGTH characters)
  node benches/oidc_tokens.mjs --secret "$SECRET" --kid bench --iss "$ISSUER" --aud "$RESOURCE" --count "$2" --jti "$1" \
    --length "${3:-0}"
}
HS_TOKEN=$(hs_sign hs256 1) || fail "HS256 signing failed"
RS_TOKEN=$(idp_sign "$IDP_RS" rs256) || { logs; fail "/test/sign (RS256) failed"; }
ES_TOKEN=$(idp_sign "$IDP_ES" es256) || { logs; fail "/test/sign (ES256) failed"; }
# The size control: HS256 with its JWS header padded to the RS256 token's length.
HS_LONG=$(hs_sign hs256-long 1 "${#RS_TOKEN}") || fail "HS256 signing failed"
forged() { # TOKEN OTHER -> TOKEN's header and claims under OTHER's signature
  echo "${1%.*}.${2##*.}"
}
HS_FORGED=$(forged "$HS_TOKEN" "$(hs_sign other 1)")
RS_FORGED=$(forged "$RS_TOKEN" "$(idp_sign "$IDP_RS" other)")
ES_FORGED=$(forged "$ES_TOKEN" "$(idp_sign "$IDP_ES" other)")
AUTH="Authorization: Bearer $HS_TOKEN"

# check_job NAME URL TOKEN FORGED PROTO [curl args...]: the upstream sees the
# identity headers from the verified claims (not the client's spoofed ones),
# X-Request-Id, X-Forwarded-For and X-Forwarded-Proto PROTO; a bad signature
# gets 401.
check_job() {
  local name=$1 url=$2 token=$3 bad=$4 proto=$5 seen status
  shift 5
  seen=$(curl -fsSk "$@" "$url" -H "Authorization: Bearer $token" -H "X-User-Id: spoofed" -H "X-Auth-Role: spoofed") \
    || { logs; fail "$name: the authenticated request to $url failed"; }
  python3 - "$name" "$seen" "$proto" <<'PY'
import json, sys
name, seen, proto = sys.argv[1], json.loads(sys.argv[2])["headers"], sys.argv[3]
want = {"x-user-id": "bench-user", "x-user-role": "admin", "x-user-email": "bench-user@example.com",
        "x-forwarded-proto": proto}
bad = {k: seen.get(k) for k, v in want.items() if seen.get(k) != v}
if bad or "x-auth-role" in seen or "x-request-id" not in seen or "x-forwarded-for" not in seen:
    sys.exit(f"{name}: not the same job, the upstream saw {seen}")
PY
  status=$(code "$@" "$url" -H "Authorization: Bearer $bad")
  [ "$status" = 401 ] || fail "$name: a bad signature got $status, not 401"
}
check_job "portcullis (plain)" "http://127.0.0.1:$GWP/plug/check" "$HS_TOKEN" "$HS_FORGED" http
check_job "portcullis (TLS)" "https://127.0.0.1:$GWT/plug/check" "$HS_TOKEN" "$HS_FORGED" https
check_job "portcullis (TLS, HTTP/2)" "https://127.0.0.1:$GWT/plug/check" "$HS_TOKEN" "$HS_FORGED" https --http2
check_job "portcullis (h2c)" "http://127.0.0.1:$GWP/plug/check" "$HS_TOKEN" "$HS_FORGED" http --http2-prior-knowledge
check_job "haproxy (plain)" "http://127.0.0.1:$HAP/plug/check" "$HS_TOKEN" "$HS_FORGED" http
check_job "haproxy (TLS)" "https://127.0.0.1:$HAPT/plug/check" "$HS_TOKEN" "$HS_FORGED" https
check_job "portcullis (TLS, RSA)" "https://127.0.0.1:$GWRT/plug/check" "$HS_TOKEN" "$HS_FORGED" https
check_job "haproxy (TLS, RSA)" "https://127.0.0.1:$HAPRT/plug/check" "$HS_TOKEN" "$HS_FORGED" https
for gw in "$GWP" "$GWC" "$GWM"; do
  check_job "portcullis :$gw (RS256)" "http://127.0.0.1:$gw/plug/check" "$RS_TOKEN" "$RS_FORGED" http
  check_job "portcullis :$gw (ES256)" "http://127.0.0.1:$gw/plug/check" "$ES_TOKEN" "$ES_FORGED" http
  check_job "portcullis :$gw (HS256)" "http://127.0.0.1:$gw/plug/check" "$HS_TOKEN" "$HS_FORGED" http
done
check_job "portcullis (HS256, padded)" "http://127.0.0.1:$GWP/plug/check" "$HS_LONG" "$(forged "$HS_LONG" "$HS_TOKEN")" http
# Each HTTP/2 URL really speaks HTTP/2.
for u in "https://127.0.0.1:$GWT/plug/x --http2" "http://127.0.0.1:$GWP/plug/x --http2-prior-knowledge" \
         "https://127.0.0.1:$HAPT/plug/x --http2" "http://127.0.0.1:$HAP/plug/x --http2-prior-knowledge" \
         "https://127.0.0.1:$BARET/api/x --http2" "http://127.0.0.1:$BARE/api/x --http2-prior-knowledge"; do
  read -r url flag <<<"$u"
  v=$(curl -fsSk -o /dev/null -w '%{http_version}' "$flag" -H "$AUTH" "$url") || { logs; fail "HTTP/2 request to $url failed"; }
  [ "$v" = 2 ] || fail "$url answered HTTP/$v, not HTTP/2"
done

# Cases -------------------------------------------------------------------------
# Every case appends "id round rps lat_a lat_b requests gateway_ticks other_load%"
# to $WORK/cases (lat_a/lat_b: p50/p99 from wrk, mean/max from h2load, in ms).
declare -A KIND PIDOF URL HDR PIN
case_def() { KIND[$1]=$2; PIDOF[$1]=$3; URL[$1]=$4; HDR[$1]=$5; }
# A case whose gateway runs alone on CPU 0 while the client and the upstream
# run on CPU 1: throughput then measures the gateway, not the client's TLS.
pinned_case_def() { case_def "$@"; PIN[$1]=1; }
ALL_CPUS=0-$(( $(nproc) - 1 ))
pin() { # GATEWAY_PID: the gateway (every thread) on CPU 0, the upstream on CPU 1
  taskset -a -cp 0 "$1" >/dev/null && taskset -a -cp 1 "$UP_PID" >/dev/null || fail "taskset could not pin the gateway"
}
unpin() { # GATEWAY_PID
  taskset -a -cp "$ALL_CPUS" "$1" >/dev/null && taskset -a -cp "$ALL_CPUS" "$UP_PID" >/dev/null || fail "taskset could not unpin"
}

case_begin() { # PID: the gateway charged
  C_ALL=$(all_jiffies); C_BUSY=$(busy_jiffies); C_SRV=$(server_ticks); child_jiffies; C_CHILD=$CHILD
  C_GW=$(cpu_ticks "$1") || fail "the gateway (pid $1) is gone"
}
case_end() { # PID -> CASE_TICKS, CASE_OTHER
  local gw all busy ours
  gw=$(cpu_ticks "$1") || fail "the gateway (pid $1) is gone"
  child_jiffies
  all=$(( $(all_jiffies) - C_ALL )); busy=$(( $(busy_jiffies) - C_BUSY ))
  ours=$(( $(server_ticks) - C_SRV + CHILD - C_CHILD ))
  CASE_TICKS=$((gw - C_GW))
  CASE_OTHER=$(awk -v b="$busy" -v o="$ours" -v a="$all" 'BEGIN {f=a ? (b-o)/a*100 : 0; if (f<0) f=0; printf "%.0f", f}')
}
# wrk_check NAME OUTPUT: every answer 2xx, at least one request, servers up.
wrk_check() {
  local name=$1 out=$2 non2xx reqs
  non2xx=$(wrk_non2xx "$out")
  if [ -n "$non2xx" ] && [ "$non2xx" != 0 ]; then echo "$out" >&2; logs; fail "$name: $non2xx non-2xx answers"; fi
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  if ! [[ "$reqs" =~ ^[0-9]+$ ]] || [ "$reqs" -eq 0 ]; then echo "$out" >&2; logs; fail "$name: no request completed"; fi
  alive "after $name"
}
# h2load_check NAME OUTPUT PROTOCOL: all answers 2xx, none failed or errored,
# the protocol negotiated is PROTOCOL; the TLS lines are kept for the report.
h2load_check() {
  local name=$1 out=$2 proto=$3 ok bad
  read -r ok bad <<<"$(awk '/^status codes:/ {print $3, $5+$7+$9}' <<<"$out")"
  if ! [[ "${ok:-}" =~ ^[0-9]+$ ]] || [ "$ok" -eq 0 ] || [ "${bad:-1}" != 0 ] \
     || ! grep -Eq '^requests: .* 0 errored, 0 timeout' <<<"$out"; then
    echo "$out" >&2; logs; fail "$name: h2load saw failures or no 2xx answers"
  fi
  grep -q "^Application protocol: $proto\$" <<<"$out" || { echo "$out" >&2; fail "$name: not $proto"; }
  grep -E '^(TLS Protocol|Cipher|Server Temp Key):' <<<"$out" | paste -sd ';' > "$WORK/tlsinfo-$name" || true
  alive "after $name"
}
h2load_rps() { awk '/^finished in/ {for (i = 2; i <= NF; i++) if ($i ~ /^req\/s/) print $(i-1)}' <<<"$1"; }
h2load_done() { awk '/^status codes:/ {print $3}' <<<"$1"; }
h2load_lat() { awk '/^time for request:/ {print $6, $5}' <<<"$1"; } # mean max

run_case() { # ID
  local id=$1 pid=${PIDOF[$1]} url=${URL[$1]} hdr=${HDR[$1]} out rps a b reqs n probe client=()
  if [ -n "${PIN[$id]:-}" ]; then pin "$pid"; client=(taskset -c 1); fi
  case ${KIND[$id]} in
    wrk | wrk-close)
      local secs=$SECONDS_PER_RUN args=(-t1 -c"$CONNECTIONS" --latency -H "$hdr")
      [ "${KIND[$id]}" = wrk-close ] && { secs=$HS_SECONDS; args+=(-H "Connection: close"); }
      case_begin "$pid"
      out=$("${client[@]}" wrk "${args[@]}" -d"${secs}s" "$url" 2>&1) || { echo "$out" >&2; fail "$id: wrk failed"; }
      case_end "$pid"
      wrk_check "$id" "$out"
      read -r rps a b reqs _ <<<"$(wrk_summary "$out")"
      a=$(ms "$a"); b=$(ms "$b")
      ;;
    h2 | h2c)
      local tls=()
      [ "${KIND[$id]}" = h2 ] && tls=(--tls13-ciphers="$TLS13_CIPHER")
      case_begin "$pid"
      out=$("${client[@]}" h2load -t1 -c"$CONNECTIONS" -m1 -D "$SECONDS_PER_RUN" "${tls[@]}" -H "$hdr" "$url" 2>&1) \
        || { echo "$out" >&2; fail "$id: h2load failed"; }
      case_end "$pid"
      h2load_check "$id" "$out" "${KIND[$id]}"
      rps=$(h2load_rps "$out"); reqs=$(h2load_done "$out")
      read -r a b <<<"$(h2load_lat "$out")"; a=$(ms "$a"); b=$(ms "$b")
      ;;
    h1-close | h1-close-tls)
      # A new connection per request; h2load never resumes a TLS session.
      # It runs a request count, not a duration: calibrated once per case
      # with a probe to last about BENCH_HANDSHAKE_SECONDS.
      local args=(-t1 -c"$CONNECTIONS" --h1 -H "Connection: close" -H "$hdr" --tls13-ciphers="$TLS13_CIPHER")
      if [ "$SMOKE" = 1 ]; then
        echo $((CONNECTIONS * 8)) > "$WORK/n-$id"
      elif [ ! -s "$WORK/n-$id" ]; then
        out=$(h2load "${args[@]}" -n $((CONNECTIONS * 8)) "$url" 2>&1) || { echo "$out" >&2; fail "$id: h2load probe failed"; }
        h2load_check "$id (probe)" "$out" http/1.1
        probe=$(h2load_rps "$out")
        awk -v r="$probe" -v s="$HS_SECONDS" -v c="$CONNECTIONS" 'BEGIN {n=int(r*s); if (n<c*4) n=c*4; print n}' > "$WORK/n-$id"
      fi
      n=$(cat "$WORK/n-$id")
      case_begin "$pid"
      out=$(h2load "${args[@]}" -n "$n" "$url" 2>&1) || { echo "$out" >&2; fail "$id: h2load failed"; }
      case_end "$pid"
      h2load_check "$id" "$out" http/1.1
      rps=$(h2load_rps "$out"); reqs=$(h2load_done "$out")
      read -r a b <<<"$(h2load_lat "$out")"; a=$(ms "$a"); b=$(ms "$b")
      ;;
    *) fail "unknown case kind ${KIND[$id]}" ;;
  esac
  [ -n "${PIN[$id]:-}" ] && unpin "$pid"
  [ -n "$rps" ] && [ -n "$reqs" ] || fail "$id: no result"
  echo "$id $ROUND $rps $a $b $reqs $CASE_TICKS $CASE_OTHER" >> "$WORK/cases"
}

B_H=http://127.0.0.1:$BARE; B_S=https://127.0.0.1:$BARET
P_H=http://127.0.0.1:$GWP;  P_S=https://127.0.0.1:$GWT
H_H=http://127.0.0.1:$HAP;  H_S=https://127.0.0.1:$HAPT
# Keep-alive throughput (issue #13).
case_def bare-h1 wrk "$BARE_PID" "$B_H/api/x" "$AUTH"
case_def bare-h1-tls wrk "$BARE_PID" "$B_S/api/x" "$AUTH"
case_def pc-h1 wrk "$GW_PID" "$P_H/plug/x" "$AUTH"
case_def pc-h1-tls wrk "$GW_PID" "$P_S/plug/x" "$AUTH"
case_def hap-h1 wrk "$HAP_PID" "$H_H/plug/x" "$AUTH"
case_def hap-h1-tls wrk "$HAP_PID" "$H_S/plug/x" "$AUTH"
case_def bare-h2c h2c "$BARE_PID" "$B_H/api/x" "$AUTH"
case_def bare-h2-tls h2 "$BARE_PID" "$B_S/api/x" "$AUTH"
case_def pc-h2c h2c "$GW_PID" "$P_H/plug/x" "$AUTH"
case_def pc-h2-tls h2 "$GW_PID" "$P_S/plug/x" "$AUTH"
case_def hap-h2c h2c "$HAP_PID" "$H_H/plug/x" "$AUTH"
case_def hap-h2-tls h2 "$HAP_PID" "$H_S/plug/x" "$AUTH"
# The same on a core of its own (two or more CPUs only).
pinned_case_def bare-h1-pin wrk "$BARE_PID" "$B_H/api/x" "$AUTH"
pinned_case_def bare-h1-tls-pin wrk "$BARE_PID" "$B_S/api/x" "$AUTH"
pinned_case_def pc-h1-pin wrk "$GW_PID" "$P_H/plug/x" "$AUTH"
pinned_case_def pc-h1-tls-pin wrk "$GW_PID" "$P_S/plug/x" "$AUTH"
pinned_case_def bare-h2c-pin h2c "$BARE_PID" "$B_H/api/x" "$AUTH"
pinned_case_def bare-h2-tls-pin h2 "$BARE_PID" "$B_S/api/x" "$AUTH"
pinned_case_def pc-h2c-pin h2c "$GW_PID" "$P_H/plug/x" "$AUTH"
pinned_case_def pc-h2-tls-pin h2 "$GW_PID" "$P_S/plug/x" "$AUTH"
THROUGHPUT=(bare-h1 bare-h1-tls pc-h1 pc-h1-tls hap-h1 hap-h1-tls bare-h2c bare-h2-tls pc-h2c pc-h2-tls hap-h2c hap-h2-tls)
PINNED=()
[ "$(nproc)" -ge 2 ] && PINNED=(bare-h1-pin bare-h1-tls-pin pc-h1-pin pc-h1-tls-pin bare-h2c-pin bare-h2-tls-pin pc-h2c-pin pc-h2-tls-pin)
# A new connection per request (issue #13).
case_def bare-close h1-close "$BARE_PID" "$B_H/api/x" "$AUTH"
case_def bare-full h1-close-tls "$BARE_PID" "$B_S/api/x" "$AUTH"
case_def bare-resumed wrk-close "$BARE_PID" "$B_S/api/x" "$AUTH"
case_def pc-close h1-close "$GW_PID" "$P_H/plug/x" "$AUTH"
case_def pc-full h1-close-tls "$GW_PID" "$P_S/plug/x" "$AUTH"
case_def pc-resumed wrk-close "$GW_PID" "$P_S/plug/x" "$AUTH"
case_def hap-close h1-close "$HAP_PID" "$H_H/plug/x" "$AUTH"
case_def hap-full h1-close-tls "$HAP_PID" "$H_S/plug/x" "$AUTH"
case_def hap-resumed wrk-close "$HAP_PID" "$H_S/plug/x" "$AUTH"
case_def bare-full-rsa h1-close-tls "$BARER_PID" "https://127.0.0.1:$BARERT/api/x" "$AUTH"
case_def bare-resumed-rsa wrk-close "$BARER_PID" "https://127.0.0.1:$BARERT/api/x" "$AUTH"
case_def pc-full-rsa h1-close-tls "$GWR_PID" "https://127.0.0.1:$GWRT/plug/x" "$AUTH"
case_def pc-resumed-rsa wrk-close "$GWR_PID" "https://127.0.0.1:$GWRT/plug/x" "$AUTH"
case_def hap-full-rsa h1-close-tls "$HAPR_PID" "https://127.0.0.1:$HAPRT/plug/x" "$AUTH"
case_def hap-resumed-rsa wrk-close "$HAPR_PID" "https://127.0.0.1:$HAPRT/plug/x" "$AUTH"
CONNECTS=(bare-close bare-full bare-resumed bare-full-rsa bare-resumed-rsa pc-close pc-full pc-resumed pc-full-rsa
  pc-resumed-rsa hap-close hap-full hap-resumed hap-full-rsa hap-resumed-rsa)
# Token algorithms (issue #14): cached (the default) and cache off.
case_def hs256 wrk "$GW_PID" "$P_H/plug/x" "Authorization: Bearer $HS_TOKEN"
case_def rs256 wrk "$GW_PID" "$P_H/plug/x" "Authorization: Bearer $RS_TOKEN"
case_def es256 wrk "$GW_PID" "$P_H/plug/x" "Authorization: Bearer $ES_TOKEN"
case_def hs256-long wrk "$GW_PID" "$P_H/plug/x" "Authorization: Bearer $HS_LONG"
case_def hs256-cold wrk "$GWC_PID" "http://127.0.0.1:$GWC/plug/x" "Authorization: Bearer $HS_TOKEN"
case_def rs256-cold wrk "$GWC_PID" "http://127.0.0.1:$GWC/plug/x" "Authorization: Bearer $RS_TOKEN"
case_def es256-cold wrk "$GWC_PID" "http://127.0.0.1:$GWC/plug/x" "Authorization: Bearer $ES_TOKEN"
TOKENS=(hs256 rs256 es256 hs256-long hs256-cold rs256-cold es256-cold)

# Warm-up: connections, caches, the plugin instance.
for id in "${THROUGHPUT[@]}" "${PINNED[@]}" "${CONNECTS[@]}" "${TOKENS[@]}"; do
  curl -fsSk "${URL[$id]}" -H "${HDR[$id]}" >/dev/null || { logs; fail "warm-up request to ${URL[$id]} failed"; }
done
phase "servers ready, same-job checks passed; $ROUNDS round(s) of ${#THROUGHPUT[@]} + ${#PINNED[@]} + ${#CONNECTS[@]} + ${#TOKENS[@]} cases"

# quiet: waits up to $QUIET_WAIT s for other load (all busy CPU: nothing of
# ours runs between rounds) to drop below 10%.
quiet() {
  local waited=0
  while [ "$waited" -lt "$QUIET_WAIT" ] && [ "$(cpu_busy 1)" -ge 10 ]; do waited=$((waited + 1)); done
  return 0
}
rotated() { # K ITEM... -> the items rotated left by K
  local k=$1; shift
  local n=$#; k=$((k % n))
  local items=("$@")
  echo "${items[@]:k}" "${items[@]:0:k}"
}
for ROUND in $(seq 1 "$ROUNDS"); do
  quiet
  phase "round $ROUND of $ROUNDS"
  for id in $(rotated $((ROUND - 1)) "${THROUGHPUT[@]}") ${PINNED[@]+$(rotated $((ROUND - 1)) "${PINNED[@]}")} \
            $(rotated $((ROUND - 1)) "${CONNECTS[@]}") \
            $(rotated $((ROUND - 1)) "${TOKENS[@]}"); do
    run_case "$id"
  done
done

# Results per case: medians over the rounds.
# med ID FIELD -> the median of column FIELD (3 rps, 4 lat_a, 5 lat_b, 8 other load)
med() { median $(awk -v id="$1" -v f="$2" '$1==id {print $f}' "$WORK/cases"); }
cpu_us() { # ID -> median gateway CPU µs per request
  median $(awk -v id="$1" -v hz="$TICK" '$1==id {printf "%.2f\n", $7/hz*1e6/$6}' "$WORK/cases")
}
spread() { # ID -> "min–max" requests/s
  awk -v id="$1" '$1==id {if (min=="" || $3<min) min=$3; if ($3>max) max=$3} END {printf "%.0f–%.0f", min, max}' "$WORK/cases"
}
for id in "${THROUGHPUT[@]}" "${PINNED[@]}" "${CONNECTS[@]}" "${TOKENS[@]}"; do
  [ "$(awk -v id="$id" '$1==id' "$WORK/cases" | wc -l)" = "$ROUNDS" ] || fail "no complete results for $id"
done

# Session resumption -----------------------------------------------------------
# s_resume PORT -> "Reused" or "New": a session saved from one connection (after
# its answer, so TLS 1.3 tickets have arrived) offered on the next.
s_resume() {
  local port=$1
  # (printf straight into the pipe: $(...) would drop the request's last \n.)
  request() { printf 'GET /plug/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' "$HS_TOKEN"; }
  request | timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
    -sess_out "$WORK/sess-$port.pem" -quiet >/dev/null 2>&1 || true
  [ -s "$WORK/sess-$port.pem" ] || { echo none; return; }
  request | timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
    -sess_in "$WORK/sess-$port.pem" 2>/dev/null | awk '/^(Reused|New),/ {sub(",", "", $1); print $1; exit}'
}
# resume_after PORT K -> "yes" when a session still resumes after K other full handshakes.
resume_after() {
  python3 - "$1" "$2" "$HS_TOKEN" <<'PY'
import socket, ssl, sys
port, others, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
req = f"GET /plug/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode()
def one(session=None):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost", session=session)
    s.sendall(req)
    while s.recv(65536):
        pass
    reused, kept = s.session_reused, s.session
    s.close()
    return kept, reused
first, _ = one()
_, again = one(first)
first, _ = one()
for _ in range(others):
    one()
_, reused = one(first)
print("yes" if again else "no", "yes" if reused else "no")
PY
}
phase "resumption probes"
for p in "pc $GWT" "hap $HAPT" "bare $BARET"; do
  read -r name port <<<"$p"
  echo "$name $(s_resume "$port") $(resume_after "$port" "$RESUME_OTHERS")" >> "$WORK/resume" \
    || fail "$name: the resumption probe failed"
done
alive "after the resumption probes"

# Many connections ---------------------------------------------------------------
# idle NAME PID PORT PATH TLS(0|1) -> $MANY keep-alive connections, one
# authenticated request on each, all held open for a second while the
# gateway's RSS is sampled; appends "name rss_before peak_rss connections".
idle() {
  local name=$1 pid=$2 port=$3 path=$4 tls=$5
  python3 - "$pid" "$port" "$path" "$HS_TOKEN" "$MANY" "$name" "$tls" >> "$WORK/idle" <<'PY' || { logs; fail "$name: $MANY idle connections failed"; }
import socket, ssl, sys, time
pid, port, path, token, n, name, tls = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7] == "1"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def rss():
    with open(f"/proc/{pid}/status") as f:
        return int(next(l.split()[1] for l in f if l.startswith("VmRSS")))
before = rss()
req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        s = ctx.wrap_socket(s, server_hostname="localhost")
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
# busy NAME PID URL PORT -> wrk -c$MANY for $MANY_SECONDS; appends
# "name rps p50 p99 peak_rss max_established socket_errors".
busy() {
  local name=$1 pid=$2 url=$3 gwport=$4 peak=0 conns=0 r c out errs
  wrk -t1 -c"$MANY" -d"${MANY_SECONDS}s" --timeout 10s --latency -H "$AUTH" "$url" >"$WORK/busy.out" 2>&1 &
  WRK_PID=$!
  while ! gone "$WRK_PID"; do
    r=$(rss_kb "$pid") || fail "$name: the gateway is gone"
    [ "${r:-0}" -gt "$peak" ] && peak=$r
    c=$(ss -Htn state established "( sport = :$gwport )" | wc -l) || fail "ss failed"
    [ "$c" -gt "$conns" ] && conns=$c
    sleep 0.1
  done
  wait "$WRK_PID" || { cat "$WORK/busy.out" >&2; fail "$name: wrk failed"; }
  WRK_PID=
  out=$(cat "$WORK/busy.out")
  wrk_check "$name" "$out"
  errs=$(wrk_socket_errors "$out" " ")
  read -r rps p50 p99 _ <<<"$(wrk_summary "$out")"
  echo "$name $rps $p50 $p99 $peak $conns ${errs:-none}" | tr -s ' ' >> "$WORK/busy"
}
phase "$MANY idle and busy connections"
# Each Portcullis measure is the first on its process (memory freed by one
# measure would be reused by the next): TLS on the gateway of every TLS case,
# plain on the second one (same config, RSA certificate, handshake cases only).
idle pc-tls "$GW_PID" "$GWT" /plug/idle 1
idle pc-plain "$GWR_PID" "$GWRP" /plug/idle 0
idle hap-tls "$HAP_PID" "$HAPT" /plug/idle 1
idle bare-tls "$BARE_PID" "$BARET" /api/idle 1
busy pc-tls "$GW_PID" "$P_S/plug/x" "$GWT"
busy hap-tls "$HAP_PID" "$H_S/plug/x" "$HAPT"

# Memory per cached token (issue #14) ----------------------------------------------
phase "memory per cached token"
# On the gateway that served nothing else: warm up with one token, then
# $CACHE_TOKENS distinct tokens of each algorithm (each verified and cached
# once), then as many requests with tokens already cached (control).
node benches/oidc_tokens.mjs --secret "$SECRET" --kid bench --iss "$ISSUER" --aud "$RESOURCE" \
  --count "$CACHE_TOKENS" --jti hs-cache > "$WORK/tokens-hs256" || fail "signing HS256 tokens failed"
node benches/oidc_tokens.mjs --keys "$WORK/idp-rs/keys.json" --iss "http://127.0.0.1:$IDP_RS" --aud "$RESOURCE" \
  --count "$CACHE_TOKENS" --jti rs-cache > "$WORK/tokens-rs256" || fail "signing RS256 tokens failed"
node benches/oidc_tokens.mjs --keys "$WORK/idp-es/keys.json" --iss "http://127.0.0.1:$IDP_ES" --aud "$RESOURCE" \
  --count "$CACHE_TOKENS" --jti es-cache > "$WORK/tokens-es256" || fail "signing ES256 tokens failed"
python3 - "$GWM_PID" "$GWM" "$WORK" "$HS_TOKEN" "$WARM_REQUESTS" > "$WORK/memory" <<'PY' || { logs; fail "the cached-token memory measure failed"; }
import http.client, sys, time
pid, port, work, warm, warm_requests = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
def rss():
    with open(f"/proc/{pid}/status") as f:
        return int(next(l.split()[1] for l in f if l.startswith("VmRSS")))
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
def send(token):
    conn.request("GET", "/plug/m", headers={"Authorization": f"Bearer {token}"})
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"a cached-token request got {r.status}")
for _ in range(warm_requests):
    send(warm)
seen = []
for alg in ("hs256", "rs256", "es256"):
    tokens = open(f"{work}/tokens-{alg}").read().split()
    before = rss()
    t = time.monotonic()
    for token in tokens:
        send(token)
    elapsed = time.monotonic() - t
    after = rss()
    seen.append(tokens)
    print(alg, len(tokens), before, after, f"{len(tokens) / elapsed:.0f}", sum(map(len, tokens)) // len(tokens))
# Control: the same number of requests, every token already cached.
before = rss()
t = time.monotonic()
for i in range(len(seen[0])):
    send(seen[i % 3][i])
elapsed = time.monotonic() - t
print("cached", len(seen[0]), before, rss(), f"{len(seen[0]) / elapsed:.0f}", 0)
PY
alive "after the memory measure"
for alg in hs256 rs256 es256 cached; do
  awk -v a="$alg" '$1==a && NF==6 {f=1} END {exit !f}' "$WORK/memory" || fail "no memory result for $alg"
done
alive "at the end"

child_jiffies
FOREIGN=$(awk -v b="$(( $(busy_jiffies) - BUSY0 ))" -v a="$(( $(all_jiffies) - ALL0 ))" \
  -v o="$(( $(server_ticks) - SRV0 + CHILD - CHILD0 ))" 'BEGIN {f=(b-o)/a*100; if (f<0) f=0; printf "%.0f", f}')

# Report ------------------------------------------------------------------------
meets() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {ok = (op==">=") ? v>=t : v<t; print ok ? "yes" : "**no**"}'; }
fmt0() { awk -v v="$1" 'BEGIN {printf "%.0f", v}'; }
fmt1() { awk -v v="$1" 'BEGIN {printf "%.1f", v}'; }
fmt2() { awk -v v="$1" 'BEGIN {printf "%.2f", v}'; }
declare -A LABEL=(
  [bare-h1]="bare pingora | HTTP/1.1 plain" [bare-h1-tls]="bare pingora | HTTP/1.1 TLS"
  [pc-h1]="Portcullis JWT+plugin | HTTP/1.1 plain" [pc-h1-tls]="Portcullis JWT+plugin | HTTP/1.1 TLS"
  [hap-h1]="HAProxy jwt_verify | HTTP/1.1 plain" [hap-h1-tls]="HAProxy jwt_verify | HTTP/1.1 TLS"
  [bare-h2c]="bare pingora | HTTP/2 h2c" [bare-h2-tls]="bare pingora | HTTP/2 TLS"
  [pc-h2c]="Portcullis JWT+plugin | HTTP/2 h2c" [pc-h2-tls]="Portcullis JWT+plugin | HTTP/2 TLS"
  [hap-h2c]="HAProxy jwt_verify | HTTP/2 h2c" [hap-h2-tls]="HAProxy jwt_verify | HTTP/2 TLS"
  [bare-h1-pin]="bare pingora | HTTP/1.1 plain" [bare-h1-tls-pin]="bare pingora | HTTP/1.1 TLS"
  [pc-h1-pin]="Portcullis JWT+plugin | HTTP/1.1 plain" [pc-h1-tls-pin]="Portcullis JWT+plugin | HTTP/1.1 TLS"
  [bare-h2c-pin]="bare pingora | HTTP/2 h2c" [bare-h2-tls-pin]="bare pingora | HTTP/2 TLS"
  [pc-h2c-pin]="Portcullis JWT+plugin | HTTP/2 h2c" [pc-h2-tls-pin]="Portcullis JWT+plugin | HTTP/2 TLS"
  [bare-close]="bare pingora | plain TCP" [bare-full]="bare pingora | TLS, full handshake"
  [bare-resumed]="bare pingora | TLS, resumed"
  [pc-close]="Portcullis JWT+plugin | plain TCP" [pc-full]="Portcullis JWT+plugin | TLS, full handshake"
  [pc-resumed]="Portcullis JWT+plugin | TLS, resumed"
  [hap-close]="HAProxy jwt_verify | plain TCP" [hap-full]="HAProxy jwt_verify | TLS, full handshake"
  [hap-resumed]="HAProxy jwt_verify | TLS, resumed"
  [bare-full-rsa]="bare pingora | TLS RSA, full handshake" [bare-resumed-rsa]="bare pingora | TLS RSA, resumed"
  [pc-full-rsa]="Portcullis JWT+plugin | TLS RSA, full handshake" [pc-resumed-rsa]="Portcullis JWT+plugin | TLS RSA, resumed"
  [hap-full-rsa]="HAProxy jwt_verify | TLS RSA, full handshake" [hap-resumed-rsa]="HAProxy jwt_verify | TLS RSA, resumed"
)
client_of() {
  case ${KIND[$1]} in
    wrk) echo wrk ;; wrk-close) echo "wrk, Connection: close" ;;
    h2 | h2c) echo "h2load -m1" ;; h1-close | h1-close-tls) echo "h2load --h1, Connection: close" ;;
  esac
}
latency_of() { # ID -> "p50 / p99" (wrk) or "mean" (h2load), medians
  case ${KIND[$1]} in
    wrk | wrk-close) echo "$(fmt2 "$(med "$1" 4)") / $(fmt2 "$(med "$1" 5)") ms" ;;
    *) echo "mean $(fmt2 "$(med "$1" 4)") ms" ;;
  esac
}
bare_of() { # ID -> the bare-pingora case with the same transport
  case $1 in
    pc-* | hap-*) echo "bare-${1#*-}" ;;
    *) echo "$1" ;;
  esac
}
rps_of() { med "$1" 3; }
# round_ratio A B -> "median (min–max)" of A's requests/s ÷ B's, round by round.
round_ratio() {
  awk -v a="$1" -v b="$2" '$1==a {x[$2]=$3} $1==b {y[$2]=$3}
    END {for (r in x) if (y[r] > 0) print x[r]/y[r]}' "$WORK/cases" | sort -g \
    | awk '{v[NR]=$1} END {m = NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.2f (%.2f–%.2f)", m, v[1], v[NR]}'
}
# cpu_ratio A B -> B's median CPU per request ÷ A's: A's throughput relative to
# B's for a gateway that is the bottleneck (CPU-bound).
cpu_ratio() { ratio "$(cpu_us "$2")" "$(cpu_us "$1")"; }
R_H1=$(ratio "$(rps_of pc-h1-tls)" "$(rps_of pc-h1)")
R_H2=$(ratio "$(rps_of pc-h2-tls)" "$(rps_of pc-h2c)")
R_FULL=$(ratio "$(rps_of pc-full)" "$(rps_of hap-full)")
R_RES=$(ratio "$(rps_of pc-resumed)" "$(rps_of hap-resumed)")
R_FULL_RSA=$(ratio "$(rps_of pc-full-rsa)" "$(rps_of hap-full-rsa)")
R_RES_RSA=$(ratio "$(rps_of pc-resumed-rsa)" "$(rps_of hap-resumed-rsa)")
cpu_diff() { # ID OTHER -> the median CPU µs per request of ID minus OTHER's
  awk -v a="$(cpu_us "$1")" -v b="$(cpu_us "$2")" 'BEGIN {printf "%.1f", a-b}'
}
col() { awk -v n="$1" -v c="$2" '$1==n {print $c}' "$3"; }
throughput_row() { # ID -> its row of a keep-alive table
  local id=$1 base=${1%-pin} pin= plain=- vs_bare=-
  [ "$base" != "$id" ] && pin=-pin
  case $base in
    *-h1-tls) plain=$(ratio "$(rps_of "$id")" "$(rps_of "${base%-tls}$pin")") ;;
    *-h2-tls) plain=$(ratio "$(rps_of "$id")" "$(rps_of "${base%-h2-tls}-h2c$pin")") ;;
  esac
  case $id in bare-*) ;; *) vs_bare=$(ratio "$(cpu_us "$id")" "$(cpu_us "$(bare_of "$id")")") ;; esac
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s%% |\n' "${LABEL[$id]}" "$(client_of "$id")" \
    "$(fmt0 "$(rps_of "$id")")" "$(spread "$id")" "$(latency_of "$id")" "$(fmt1 "$(cpu_us "$id")")" "$vs_bare" \
    "$plain" "$(med "$id" 8)"
}

{
  echo "<!-- edge_load.sh: generated by benches/edge_load.sh; it replaces everything up to the end marker -->"
  echo "## Edge transport: TLS and HTTP/2 (issue #13)"
  echo
  if [ "$SMOKE" = 1 ]; then
    echo "Generated by \`benches/edge_load.sh --smoke\` on $(date -u +%Y-%m-%d): **smoke run** (1 s per"
    echo "case, one round, $MANY connections, $CACHE_TOKENS tokens); checks that the harness works, the numbers mean little."
  else
    echo "Generated by \`benches/edge_load.sh\` (\`make bench\`, after \`benches/load.sh\`'s cases) on $(date -u +%Y-%m-%d)."
  fi
  echo "Build: $BUILD. Machine: $(machine)."
  echo "Each gateway with 1 worker thread (HAProxy $(haproxy -v | awk 'NR==1 {print $3}') \`nbthread 1\`), upstream: the demo backend;"
  echo "$CONNECTIONS connections, ${SECONDS_PER_RUN}s per keep-alive case and ${HS_SECONDS}s per new-connection case (a request count"
  echo "calibrated to that for h2load), **$ROUNDS rounds**, the order of the cases rotated each round; the tables give"
  echo "**medians** over the rounds and the min–max of requests/s. Certificate: ECDSA P-256, self-signed, the same file"
  echo "for every server (and RSA 2048 on a second set of the three for the \`TLS RSA\` handshake rows); TLS 1.3 with"
  echo "\`$TLS13_CIPHER\` on every client. h2load's TLS lines per server:"
  for f in pc-h2-tls hap-h2-tls bare-h2-tls; do
    [ -s "$WORK/tlsinfo-$f" ] && echo "${LABEL[$f]%% |*}: $(sed 's/;/, /g' "$WORK/tlsinfo-$f")."
  done
  echo
  echo "Other work on the machine (it shares the 2 cores): ${BUSY_BEFORE}% of the CPU in the ${BUSY_WINDOW} s before the run,"
  echo "about ${FOREIGN}% during it; the \`other load\` column is the median share of CPU time busy but not charged"
  echo "to this script's processes while the case ran (other builds and tests, and kernel network work done in"
  echo "interrupt context, which no process is charged for). Rows with much other load are less comparable; the"
  echo "gateway's CPU per request varies less with it than requests/s do."
  echo
  echo "Same request everywhere as in the loopback load above: \`GET\` with \`Authorization: Bearer <HS256 token>\`"
  echo "(\`sub\`, \`role\`, \`email\`, \`iss\`, \`aud\`, \`iat\`, \`exp\`, \`jti\`), on \`/plug/x\` (Portcullis JWT + claims-to-headers"
  echo "plugin, HAProxy \`jwt_verify\` + the same headers) or \`/api/x\` (bare pingora, which only proxies). Before"
  echo "measuring, the script checks on every listener (plain, TLS, HTTP/2) that the upstream sees the same identity"
  echo "headers and \`X-Forwarded-Proto\`, and that a bad signature gets 401."
  echo
  echo "### Keep-alive throughput, plain text and TLS"
  echo
  echo "| gateway | transport | client | requests/s | min–max | latency | gateway CPU µs/request | CPU × bare pingora (same transport) | TLS / plain requests/s | other load |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for id in "${THROUGHPUT[@]}"; do throughput_row "$id"; done
  echo
  echo "HTTP/2: one stream per connection (\`h2load -c$CONNECTIONS -m1\`), so every row has $CONNECTIONS requests in flight;"
  echo "h2c is HTTP/2 with prior knowledge on the plain listener (Portcullis \`listeners.h2c: true\`, bare pingora"
  echo "\`--h2c\`, HAProxy detects the preface on its plain bind). h2load reports the mean latency, not percentiles."
  echo "TLS costs Portcullis $(cpu_diff pc-h1-tls pc-h1) µs of CPU per HTTP/1.1 request and $(cpu_diff pc-h2-tls pc-h2c) µs per HTTP/2 request"
  echo "(bare pingora $(cpu_diff bare-h1-tls bare-h1) / $(cpu_diff bare-h2-tls bare-h2c) µs, HAProxy $(cpu_diff hap-h1-tls hap-h1) / $(cpu_diff hap-h2-tls hap-h2c) µs)."
  echo
  if [ "${#PINNED[@]}" -gt 0 ]; then
    echo "### Keep-alive throughput, the gateway on a core of its own"
    echo
    echo "The same cases with the gateway (every thread) pinned to CPU 0 and the client and the upstream to CPU 1"
    echo "(\`taskset\`), so the client's own TLS work does not take CPU from the gateway; HAProxy is not in these rows."
    echo
    echo "| gateway | transport | client | requests/s | min–max | latency | gateway CPU µs/request | CPU × bare pingora (same transport) | TLS / plain requests/s | other load |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for id in "${PINNED[@]}"; do throughput_row "$id"; done
    echo
  fi
  echo "### New connections: full and resumed TLS handshakes"
  echo
  echo "Every request on a new connection (\`Connection: close\`): plain TCP, TLS with a full handshake (h2load, which"
  echo "never offers a session again), TLS resumed (wrk keeps each connection's session and offers it on reconnect;"
  echo "TLS 1.3 PSK resumption with (EC)DHE, what OpenSSL clients offer and rustls accepts: it skips the certificate"
  echo "and its signature but still does the X25519 exchange, so it saves only what the signature costs). Each connection"
  echo "carries one authenticated request through the gateway to the upstream. \`TLS RSA\`: the same on a second"
  echo "Portcullis, HAProxy and bare pingora that serve an RSA 2048 certificate instead of the ECDSA P-256 one."
  echo
  echo "| gateway | connection | client | connections/s | min–max | latency | gateway CPU µs/connection | TLS CPU µs/connection (− plain TCP) | other load |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for id in "${CONNECTS[@]}"; do
    tax=-
    case $id in *-full* | *-resumed*) tax=$(cpu_diff "$id" "${id%%-*}-close") ;; esac
    printf '| %s | %s | %s | %s | %s | %s | %s | %s%% |\n' "${LABEL[$id]}" "$(client_of "$id")" \
      "$(fmt0 "$(rps_of "$id")")" "$(spread "$id")" "$(latency_of "$id")" "$(fmt1 "$(cpu_us "$id")")" "$tax" "$(med "$id" 8)"
  done
  echo
  echo "Session resumption, probed directly: \`openssl s_client -sess_out\` then \`-sess_in\` (the saved session offered"
  echo "on the next connection), and with Python's \`ssl\`: a session offered again right away, and after"
  echo "$RESUME_OTHERS other full handshakes by other clients (how many sessions the server keeps)."
  echo
  echo "| server | s_client, next connection | resumed right away | resumed after $RESUME_OTHERS other handshakes |"
  echo "|---|---|---|---|"
  while read -r name s now later; do
    case $name in pc) n="Portcullis" ;; hap) n="HAProxy" ;; bare) n="bare pingora" ;; esac
    printf '| %s | %s | %s | %s |\n' "$n" "$s" "$now" "$later"
  done < "$WORK/resume"
  echo
  echo "### $MANY TLS connections"
  echo
  echo "Idle: $MANY keep-alive connections opened one after another (each with a full handshake and one authenticated"
  echo "request), then all held open for a second while the gateway's RSS is sampled (peak shown)."
  echo
  echo "| gateway | listener | RSS before | RSS with $MANY idle connections open | per connection |"
  echo "|---|---|---|---|---|"
  while read -r name before peak n; do
    case $name in
      pc-plain) l="Portcullis JWT+plugin (the RSA instance) | plain" ;; pc-tls) l="Portcullis JWT+plugin | TLS" ;;
      hap-tls) l="HAProxy jwt_verify | TLS" ;; bare-tls) l="bare pingora | TLS" ;;
    esac
    printf '| %s | %s MiB | %s MiB | %s KiB |\n' "$l" "$(mib "$before")" "$(mib "$peak")" \
      "$(awk -v a="$peak" -v b="$before" -v n="$n" 'BEGIN {printf "%.1f", (a-b)/n}')"
  done < "$WORK/idle"
  echo
  echo "Busy: \`wrk -t1 -c$MANY -d${MANY_SECONDS}s\` over TLS with the token; RSS sampled every 100 ms (peak shown),"
  echo "established connections counted with \`ss\`."
  echo
  echo "| gateway | requests/s | p50 | p99 | peak RSS | connections seen open | wrk socket errors |"
  echo "|---|---|---|---|---|---|---|"
  while read -r name rps p50 p99 peak conns errs; do
    case $name in pc-tls) l="Portcullis JWT+plugin, TLS" ;; hap-tls) l="HAProxy jwt_verify, TLS" ;; esac
    printf '| %s | %s | %s | %s | %s MiB | %s | %s |\n' "$l" "$rps" "$p50" "$p99" "$(mib "$peak")" "$conns" "$errs"
  done < "$WORK/busy"
  echo
  echo "### Targets (issue #13)"
  echo
  echo "The measured ratio is that of the medians in the tables above; beside it the median of the same ratio"
  echo "taken round by round (min–max over the rounds), and the ratio the gateway's CPU per request implies"
  echo "(what the throughput ratio would be if the gateway alone were the bottleneck)."
  echo
  echo "| check | measured | round by round | from CPU per request | target | met |"
  echo "|---|---|---|---|---|---|"
  echo "| Portcullis JWT+plugin, HTTP/1.1 keep-alive: TLS vs plain (requests/s) | ${R_H1}× | $(round_ratio pc-h1-tls pc-h1) | $(cpu_ratio pc-h1-tls pc-h1)× | ≥ 0.9× | $(meets "$R_H1" ">=" 0.9) |"
  echo "| Portcullis JWT+plugin, HTTP/2: TLS vs h2c (requests/s) | ${R_H2}× | $(round_ratio pc-h2-tls pc-h2c) | $(cpu_ratio pc-h2-tls pc-h2c)× | ≥ 0.9× | $(meets "$R_H2" ">=" 0.9) |"
  if [ "${#PINNED[@]}" -gt 0 ]; then
    echo "| Portcullis JWT+plugin, HTTP/1.1 keep-alive, the gateway on a core of its own: TLS vs plain (requests/s) | $(ratio "$(rps_of pc-h1-tls-pin)" "$(rps_of pc-h1-pin)")× | $(round_ratio pc-h1-tls-pin pc-h1-pin) | $(cpu_ratio pc-h1-tls-pin pc-h1-pin)× | ≥ 0.9× | $(meets "$(ratio "$(rps_of pc-h1-tls-pin)" "$(rps_of pc-h1-pin)")" ">=" 0.9) |"
    echo "| Portcullis JWT+plugin, HTTP/2, the gateway on a core of its own: TLS vs h2c (requests/s) | $(ratio "$(rps_of pc-h2-tls-pin)" "$(rps_of pc-h2c-pin)")× | $(round_ratio pc-h2-tls-pin pc-h2c-pin) | $(cpu_ratio pc-h2-tls-pin pc-h2c-pin)× | ≥ 0.9× | $(meets "$(ratio "$(rps_of pc-h2-tls-pin)" "$(rps_of pc-h2c-pin)")" ">=" 0.9) |"
  fi
  echo "| Full handshakes: Portcullis vs HAProxy (connections/s) | ${R_FULL}× | $(round_ratio pc-full hap-full) | $(cpu_ratio pc-full hap-full)× | ≥ 1.0× | $(meets "$R_FULL" ">=" 1.0) |"
  echo "| Resumed handshakes: Portcullis vs HAProxy (connections/s) | ${R_RES}× | $(round_ratio pc-resumed hap-resumed) | $(cpu_ratio pc-resumed hap-resumed)× | ≥ 1.0× | $(meets "$R_RES" ">=" 1.0) |"
  echo "| Full handshakes, RSA 2048 certificate: Portcullis vs HAProxy (connections/s) | ${R_FULL_RSA}× | $(round_ratio pc-full-rsa hap-full-rsa) | $(cpu_ratio pc-full-rsa hap-full-rsa)× | ≥ 1.0× | $(meets "$R_FULL_RSA" ">=" 1.0) |"
  echo "| Resumed handshakes, RSA 2048 certificate: Portcullis vs HAProxy (connections/s) | ${R_RES_RSA}× | $(round_ratio pc-resumed-rsa hap-resumed-rsa) | $(cpu_ratio pc-resumed-rsa hap-resumed-rsa)× | ≥ 1.0× | $(meets "$R_RES_RSA" ">=" 1.0) |"
  echo "| Portcullis RSS with $MANY idle TLS connections | $(mib "$(col pc-tls 3 "$WORK/idle")") MiB | | | – (HAProxy: $(mib "$(col hap-tls 3 "$WORK/idle")") MiB) | – |"
  echo
  echo "Gateway CPU per connection, Portcullis ÷ HAProxy (lower is better for Portcullis): full handshake"
  echo "$(ratio "$(cpu_us pc-full)" "$(cpu_us hap-full)")× (RSA $(ratio "$(cpu_us pc-full-rsa)" "$(cpu_us hap-full-rsa)")×), resumed $(ratio "$(cpu_us pc-resumed)" "$(cpu_us hap-resumed)")× (RSA $(ratio "$(cpu_us pc-resumed-rsa)" "$(cpu_us hap-resumed-rsa)")×),"
  echo "plain TCP $(ratio "$(cpu_us pc-close)" "$(cpu_us hap-close)")×."
  echo
  echo "## Tokens from an OpenID Provider: RS256 and ES256 vs HS256 (issue #14)"
  echo
  echo "Two real OpenID Providers (\`oidc-provider\`, [tests/fixtures/oidc-provider](../tests/fixtures/oidc-provider/README.md)),"
  echo "one signing RS256 (RSA 2048) and one ES256 (P-256), are \`jwt.issuers\` of the gateway (discovery over"
  echo "loopback, \`allow_http: loopback\`, keys fetched at start); their tokens come from the providers' \`/test/sign\`."
  echo "The HS256 token is of the gateway's own \`jwt.keys\`. All three carry the same claims (\`iss\` aside) and go"
  echo "through the same JWT + claims-to-headers route, plain HTTP/1.1, wrk with $CONNECTIONS connections, ${SECONDS_PER_RUN}s,"
  echo "medians of $ROUNDS rounds. *Cached*: the gateway above, verified-token cache on (\`jwt.cache_entries\`"
  echo "100000, the default), so each token's signature is checked once. *Cache off*: a second gateway with"
  echo "\`jwt.cache_entries: 0\`, where every request verifies the signature; its extra CPU per request is the"
  echo "verification cost. The tokens differ in length (the signature), so requests and the echoed answers do too."
  echo
  echo "| token | bytes | cached: requests/s | min–max | p50 / p99 | CPU µs/request | vs HS256 | cache off: requests/s | CPU µs/request | verification CPU µs (off − cached) | other load |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for alg in hs256 rs256 es256; do
    case $alg in hs256) tok=$HS_TOKEN ;; rs256) tok=$RS_TOKEN ;; es256) tok=$ES_TOKEN ;; esac
    printf '| %s | %s | %s | %s | %s | %s | %s× | %s | %s | %s | %s%% / %s%% |\n' "${alg^^}" "${#tok}" \
      "$(fmt0 "$(rps_of "$alg")")" "$(spread "$alg")" "$(latency_of "$alg")" "$(fmt1 "$(cpu_us "$alg")")" \
      "$(ratio "$(rps_of "$alg")" "$(rps_of hs256)")" "$(fmt0 "$(rps_of "$alg-cold")")" "$(fmt1 "$(cpu_us "$alg-cold")")" \
      "$(cpu_diff "$alg-cold" "$alg")" "$(med "$alg" 8)" "$(med "$alg-cold" 8)"
  done
  printf '| %s | %s | %s | %s | %s | %s | %s× | – | – | – | %s%% |\n' "HS256, header padded" "${#HS_LONG}" \
    "$(fmt0 "$(rps_of hs256-long)")" "$(spread hs256-long)" "$(latency_of hs256-long)" "$(fmt1 "$(cpu_us hs256-long)")" \
    "$(ratio "$(rps_of hs256-long)" "$(rps_of hs256)")" "$(med hs256-long 8)"
  echo
  echo "\`HS256, header padded\`: the HS256 token with an unknown JWS header parameter that makes it as long as"
  echo "the RS256 token (same claims, same key): what the length alone costs on the cached path."
  R_RS=$(ratio "$(rps_of rs256)" "$(rps_of hs256)")
  R_ES=$(ratio "$(rps_of es256)" "$(rps_of hs256)")
  echo
  echo "Memory per cached token, on a third gateway that served nothing else: its RSS before and after"
  echo "$CACHE_TOKENS requests, each with a distinct token (distinct \`jti\`; RS256/ES256 signed with the providers'"
  echo "own keys by [benches/oidc_tokens.mjs](oidc_tokens.mjs), the same JWS as \`/test/sign\`), one keep-alive"
  echo "connection; each token is verified once and cached. The control row sends as many requests with tokens"
  echo "already cached. RSS, not heap: it includes allocator slack, and the first batch also grows the cache's hash"
  echo "tables (each batch lands in tables sized for the tokens before it)."
  echo
  echo "| tokens | count | bytes each | RSS before | RSS after | RSS delta | per 10,000 tokens | requests/s (verify + cache each) |"
  echo "|---|---|---|---|---|---|---|---|"
  while read -r alg n before after rate len; do
    name=${alg^^}; [ "$alg" = cached ] && name="control: already cached"
    printf '| %s | %s | %s | %s MiB | %s MiB | %s MiB | %s MiB | %s |\n' "$name" "$n" "$( [ "$len" = 0 ] && echo - || echo "$len")" \
      "$(mib "$before")" "$(mib "$after")" "$(mib $((after - before)))" \
      "$(awk -v d="$((after - before))" -v n="$n" 'BEGIN {printf "%.1f", d/1024*10000/n}')" "$rate"
  done < "$WORK/memory"
  echo
  echo "### Targets (issue #14)"
  echo
  echo "| check | measured | round by round | from CPU per request | target | met |"
  echo "|---|---|---|---|---|---|"
  echo "| RS256 vs HS256 through JWT + plugin, cache on (requests/s) | ${R_RS}× | $(round_ratio rs256 hs256) | $(cpu_ratio rs256 hs256)× | ≥ 0.95× | $(meets "$R_RS" ">=" 0.95) |"
  echo "| ES256 vs HS256 through JWT + plugin, cache on (requests/s) | ${R_ES}× | $(round_ratio es256 hs256) | $(cpu_ratio es256 hs256)× | ≥ 0.95× | $(meets "$R_ES" ">=" 0.95) |"
  echo "| HS256 padded to RS256's length vs HS256 (size alone, requests/s) | $(ratio "$(rps_of hs256-long)" "$(rps_of hs256)")× | $(round_ratio hs256-long hs256) | $(cpu_ratio hs256-long hs256)× | – | – |"
  echo "<!-- edge_load.sh: end -->"
} > "$WORK/edge.md"

if [ -n "$OUT" ]; then
  mkdir -p "$(dirname "$OUT")"
  mv "$WORK/edge.md" "$OUT"
elif [ "$SMOKE" = 1 ]; then
  OUT=$TARGET_DIR/edge-smoke.md
  mkdir -p "$(dirname "$OUT")"
  mv "$WORK/edge.md" "$OUT"
  cat "$OUT"
  echo; echo "(smoke results written to $OUT)"
else
  # Alone: replace this script's sections of benches/RESULTS.md (before the
  # criterion summary when they are not there yet).
  OUT=benches/RESULTS.md
  python3 - "$OUT" "$WORK/edge.md" <<'PY'
import re, sys
path, fragment = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmark results\n"
begin, end = "<!-- edge_load.sh: generated", "<!-- edge_load.sh: end -->"
if begin in text and end in text:
    a = text.index(begin)
    b = text.index(end) + len(end)
    text = text[:a] + fragment + text[b:]
elif "\n## Micro-benchmarks" in text:
    a = text.index("\n## Micro-benchmarks")
    text = text[:a] + "\n" + fragment + "\n" + text[a:]
else:
    text = text.rstrip("\n") + "\n\n" + fragment + "\n"
open(path, "w").write(text)
PY
  cat "$WORK/edge.md"
  echo; echo "(written into $OUT)"
fi
exit 0
