#!/usr/bin/env bash
# Installs what building and testing Portcullis needs on a Debian machine, once.
# Idempotent and quiet when everything is present. Run as root (CI and `make`
# do); as another user it only reports what is missing.
set -euo pipefail

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)        # pingora's zlib-ng build
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)          # make run's printed examples
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# Session-store tests start a throwaway Postgres cluster (initdb, pg_ctl).
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
# tests/observability.rs lints /metrics and the alert rules with promtool.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# benches/load.sh (its smoke run is part of `make test`; make bench, make bench-refresh):
# the wrk client, HAProxy 2.6 as the jwt_verify peer, python3 and ss for its probes.
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v ss >/dev/null 2>&1 || need_apt+=(iproute2)
# benches/edge_load.sh (run by benches/load.sh, so by make test's smoke run too):
# h2load for HTTP/2 and full-handshake rates.
command -v h2load >/dev/null 2>&1 || need_apt+=(nghttp2-client)
# tests/common/oidc.rs starts a real OpenID Provider (the npm package
# oidc-provider, installed into tests/fixtures/oidc-provider below).
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# tests/grpc.rs: a real gRPC client and server (grpcio), for Debian's own
# python3 (the tests run /usr/bin/python3, whatever else is first on PATH).
/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || need_apt+=(python3-grpcio)

# Packages whose install would start a daemon: Prometheus listens on :9090, the
# admin listener's default port; HAProxy's packaged service (its own config, and
# whatever that binds, e.g. :80) is not ours either: load.sh starts its own.
services=(prometheus haproxy)

# Stops (and disables) a packaged daemon we only want the binaries of.
stop_service() {
  local svc=$1
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  else
    if command -v update-rc.d >/dev/null 2>&1 && [ -e "/etc/init.d/$svc" ]; then
      update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
    if command -v service >/dev/null 2>&1 && [ -e "/etc/init.d/$svc" ]; then
      service "$svc" stop >/dev/null 2>&1 || true
    fi
  fi
  # Whatever started it (an init system we did not detect): end that daemon only.
  local pidfile pid
  for pidfile in "/run/$svc.pid" "/run/$svc/$svc.pid"; do
    if [ -s "$pidfile" ]; then
      pid=$(cat "$pidfile")
      if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$svc" ]; then
        kill "$pid" >/dev/null 2>&1 || true
      fi
    fi
  done
}

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${need_apt[*]} (run as root, or: apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]}"
  apt-get update -qq
  # Deny service starts during the install (invoke-rc.d honours policy-rc.d),
  # unless the machine already has its own policy.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  # --no-install-recommends: prometheus recommends prometheus-node-exporter (another daemon).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Belt and braces (an init that ignores policy-rc.d): nothing of theirs stays running or enabled.
  for pkg in "${need_apt[@]}"; do
    for svc in "${services[@]}"; do
      if [ "$pkg" = "$svc" ]; then stop_service "$svc"; fi
    done
  done
fi

# The OpenID Provider fixture's packages, exactly as its lock file pins them.
# npm ci writes node_modules/.package-lock.json last: when that is older than
# the lock file (or package.json), the tree is stale or half-installed.
oidc_fixture="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/fixtures/oidc-provider"
oidc_marker="$oidc_fixture/node_modules/.package-lock.json"
if [ ! -e "$oidc_marker" ] \
  || [ "$oidc_fixture/package-lock.json" -nt "$oidc_marker" ] \
  || [ "$oidc_fixture/package.json" -nt "$oidc_marker" ]; then
  echo "setup: installing the OpenID Provider test fixture (npm ci in tests/fixtures/oidc-provider)"
  (cd "$oidc_fixture" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$oidc_marker"
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no cargo found. Portcullis needs Rust 1.94+ (rustup stable); Debian's cargo is too old for the gateway." >&2
  exit 1
fi
