#!/usr/bin/env bash
# `make run`: starts the demo backend and the gateway with config/portcullis.yaml,
# prints ready-to-paste curl commands, and stops both on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${PORTCULLIS_BIN_DIR:-target/release}
CONFIG=${PORTCULLIS_CONFIG:-config/portcullis.yaml}
PROXY=${PORTCULLIS_LISTEN:-127.0.0.1:8080}
TLS=${PORTCULLIS_TLS_LISTEN:-127.0.0.1:8443}
ADMIN=${PORTCULLIS_ADMIN_LISTEN:-127.0.0.1:9090}
BACKEND=${DEMO_BACKEND:-127.0.0.1:3000}
export PORTCULLIS_LISTEN=$PROXY PORTCULLIS_TLS_LISTEN=$TLS PORTCULLIS_ADMIN_LISTEN=$ADMIN DEMO_BACKEND=$BACKEND
# The certificate is for localhost (and 127.0.0.1): address the TLS port by that name.
HTTPS="https://localhost:${TLS##*:}"

# A development CA and a localhost certificate in data/tls/ (first run only).
bash scripts/dev-tls.sh

"$BIN/portcullis" check -c "$CONFIG"

"$BIN/portcullis-demo-backend" --listen "$BACKEND" --name demo &
backend_pid=$!
"$BIN/portcullis" run -c "$CONFIG" &
gateway_pid=$!
trap 'kill $gateway_pid $backend_pid 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

# Wait for readiness (bounded), not a fixed sleep.
for _ in $(seq 1 200); do
  if curl -fs "http://$ADMIN/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 $gateway_pid 2>/dev/null; then echo "gateway exited; see the log above" >&2; exit 1; fi
  sleep 0.05
done

ADMIN_TOKEN=$("$BIN/portcullis" token mint -c "$CONFIG" --sub u-1 --claim role=admin --claim email=alice@example.com)
USER_TOKEN=$("$BIN/portcullis" token mint -c "$CONFIG" --sub u-2 --claim role=patient)
cat <<MSG

Portcullis is up: proxy http://$PROXY and $HTTPS (TLS), admin http://$ADMIN, demo backend http://$BACKEND
Paste these into another terminal:

  # no token -> 401 JSON with WWW-Authenticate
  curl -i http://$PROXY/api/profile

  # a dev token (minted by: $BIN/portcullis token mint -c $CONFIG --sub u-2 --claim role=patient)
  TOKEN=$USER_TOKEN
  curl -s http://$PROXY/api/profile -H "Authorization: Bearer \$TOKEN"    # backend echoes x-user-id: u-2

  # the same over TLS and HTTP/2 (the demo's certificate is signed by the dev CA in data/tls/)
  curl -s --http2 --cacert data/tls/ca.crt $HTTPS/api/profile -H "Authorization: Bearer \$TOKEN" -w '\nHTTP/%{http_version}\n'

  # a client cannot spoof identity: the gateway strips X-User-Id and sets the verified one
  curl -s http://$PROXY/api/profile -H "Authorization: Bearer \$TOKEN" -H "X-User-Id: u-1"

  # claim requirement: /api/admin needs role=admin -> 403 for u-2, 200 for u-1
  curl -i http://$PROXY/api/admin/stats -H "Authorization: Bearer \$TOKEN"
  ADMIN_TOKEN=$ADMIN_TOKEN
  curl -s http://$PROXY/api/admin/stats -H "Authorization: Bearer \$ADMIN_TOKEN"

  # sessions: log in through the backend; the gateway opens a session and returns its own tokens
  curl -s http://$PROXY/api/auth/login -H 'Content-Type: application/json' -d '{"email":"alice@example.com","password":"password123","deviceInfo":"laptop"}' | tee /tmp/portcullis-login.json
  ACCESS=\$(sed -E 's/.*"accessToken":"([^"]+)".*/\1/' /tmp/portcullis-login.json)
  REFRESH=\$(sed -E 's/.*"refreshToken":"([^"]+)".*/\1/' /tmp/portcullis-login.json)
  curl -s http://$PROXY/api/profile -H "Authorization: Bearer \$ACCESS"                  # the API sees x-user-id: u-1
  curl -s http://$PROXY/api/auth/refresh -H 'Content-Type: application/json' -d "{\"refreshToken\":\"\$REFRESH\"}" | tee /tmp/portcullis-refresh.json
  REFRESH=\$(sed -E 's/.*"refreshToken":"([^"]+)".*/\1/' /tmp/portcullis-refresh.json)   # rotated
  curl -s http://$PROXY/api/auth/sessions -H "Authorization: Bearer \$ACCESS"             # data.sessions[], current: true
  curl -s http://$PROXY/api/auth/logout -H 'Content-Type: application/json' -d "{\"refreshToken\":\"\$REFRESH\"}"
  curl -s -o /dev/null -w '%{http_code}\\n' http://$PROXY/api/profile -H "Authorization: Bearer \$ACCESS"   # 401: revoked at once

  # metrics, health, reload
  curl -s http://$ADMIN/metrics | grep '^portcullis_'
  kill -HUP $gateway_pid    # re-reads $CONFIG and the TLS certificates; an invalid file is rejected and the old one kept

Ctrl-C stops both.
MSG
wait $gateway_pid
