#!/usr/bin/env bash
# Development TLS material for `make run`: a dev CA and a certificate for
# localhost (and 127.0.0.1) signed by it, in data/tls/ (git-ignored):
#   data/tls/ca.crt          the CA to trust: curl --cacert data/tls/ca.crt
#   data/tls/ca.key          its key (stays here; never use this CA elsewhere)
#   data/tls/localhost.crt   the gateway's certificate (listeners.tls.cert_file)
#   data/tls/localhost.key   its key (listeners.tls.key_file)
# Made on first run with openssl; the certificate is made again when it expires
# within 14 days (the CA lasts ten years). Quiet when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=data/tls
mkdir -p "$dir"
umask 077

if [ ! -s "$dir/ca.crt" ] || [ ! -s "$dir/ca.key" ]; then
  echo "dev-tls: making a development CA in $dir/ca.crt"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 3650 \
    -subj "/CN=Portcullis development CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  rm -f "$dir/localhost.crt"
fi

if [ ! -s "$dir/localhost.crt" ] || [ ! -s "$dir/localhost.key" ] ||
  ! openssl x509 -checkend $((14 * 86400)) -noout -in "$dir/localhost.crt" >/dev/null 2>&1; then
  echo "dev-tls: making a certificate for localhost in $dir/localhost.crt"
  ext=$(mktemp)
  trap 'rm -f "$ext" "$dir/localhost.csr"' EXIT
  cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/localhost.key" -out "$dir/localhost.csr" -subj "/CN=localhost" 2>/dev/null
  openssl x509 -req -in "$dir/localhost.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -out "$dir/localhost.crt" -days 397 -extfile "$ext" 2>/dev/null
fi
chmod 644 "$dir/ca.crt" "$dir/localhost.crt"
