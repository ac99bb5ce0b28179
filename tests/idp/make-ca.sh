#!/bin/sh
# Creates a throw-away test CA and a server certificate it signs, for loopback TLS in tests and the demo:
#   OUTDIR/ca.pem, OUTDIR/ca-key.pem            the CA (give ca.pem to clients as their trust anchor)
#   OUTDIR/server.pem, OUTDIR/server-key.pem    the server (SAN IP:127.0.0.1, IP:::1, DNS:localhost)
# EC P-256 keys, no prompts, valid for 30 days. Usage: make-ca.sh OUTDIR
set -eu

if [ "$#" -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$1
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ca-key.pem" 2>/dev/null
openssl req -x509 -new -key "$out/ca-key.pem" -sha256 -days 30 -subj "/CN=ssogate test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$out/ca.pem"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/server-key.pem" 2>/dev/null
openssl req -new -key "$out/server-key.pem" -subj "/CN=localhost" -out "$work/server.csr"
cat > "$work/server.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost
EXT
openssl x509 -req -in "$work/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" -CAcreateserial \
  -CAserial "$work/ca.srl" -days 30 -sha256 -extfile "$work/server.ext" -out "$out/server.pem" 2>/dev/null
chmod 600 "$out/ca-key.pem" "$out/server-key.pem"
