#!/usr/bin/env bash
# Makes the credentials of a local secure stack (`SLUICE_SECURE=1 make up`,
# and the security benchmark) with the openssl command line only:
#   scripts/local-credentials.sh DIR [HOST:PORT]
# writes into DIR (mode 0700, files 0600):
#   ca.crt, ca.key            a local CA (EC P-256, 10 years)
#   server.crt, server.key    signed by it for localhost, 127.0.0.1 and ::1 (1 year)
#   client.crt, client.key    signed by it: URI SAN spiffe://sluice.local/local-client (1 year)
#   jwt.key, jwt.pub.pem      an ES256 key pair: the private key signs, sluice-ingest verifies
#   token                     a JWT: sub local-dev, iss sluice-local, aud sluice, 7 days
#   api-key, api-keys.txt     an API key (principal local-api-client) and its hash file
#   policy.json               who may write which record types
#   client.env                SLUICE_ADDR, SLUICE_CA and SLUICE_TOKEN, for the client examples
# What exists is kept (a client that trusts the CA keeps trusting it), except
# a certificate that expires within a day and the token, made anew every run.
set -euo pipefail

dir=${1:?usage: local-credentials.sh DIR [HOST:PORT]}
addr=${2:-127.0.0.1:50051}
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"

TOKEN_TTL=$((7 * 24 * 3600))
ISSUER=sluice-local
AUDIENCE=sluice
PRINCIPAL=local-dev
API_PRINCIPAL=local-api-client
CLIENT_URI=spiffe://sluice.local/local-client

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
serial() { echo "0x$(openssl rand -hex 16)"; }
fresh() { [ -s "$1" ] && openssl x509 -checkend 86400 -noout -in "$1" >/dev/null 2>&1; }

# issue NAME CN EXTENSIONS: a certificate signed by the local CA.
issue() {
  local name=$1 cn=$2 ext=$3
  fresh "$name.crt" && [ -s "$name.key" ] && return 0
  new_key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -set_serial "$(serial)" \
    -days 365 -sha256 -extfile <(printf '%s\n' "$ext") -out "$name.crt" 2>/dev/null
  rm -f "$name.csr"
}

if ! fresh ca.crt || [ ! -s ca.key ]; then
  new_key ca.key
  openssl req -x509 -new -key ca.key -subj "/CN=Sluice local CA" -days 3650 -sha256 \
    -set_serial "$(serial)" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
  rm -f server.crt client.crt # signed by the CA that was replaced
fi
issue server localhost "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
issue client local-client "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=URI:$CLIENT_URI"

if [ ! -s jwt.key ] || [ ! -s jwt.pub.pem ]; then
  new_key jwt.key
  openssl pkey -in jwt.key -pubout -out jwt.pub.pem
fi

# ---- the JWT: header.payload signed with ES256 -------------------------------
# openssl signs ECDSA as DER SEQUENCE { INTEGER r, INTEGER s }; a JWS wants
# r and s as 32 bytes each, big-endian, back to back (RFC 7518, 3.4).
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
hex_to_bin() { local h; h=$(sed 's/../\\x&/g'); printf "$h"; }
es256_sign() { # stdin: the signing input; stdout: the signature, base64url
  local der ints r s
  der=$(mktemp)
  openssl dgst -sha256 -sign jwt.key -out "$der"
  ints=$(openssl asn1parse -inform DER -in "$der" | awk -F: '/INTEGER/ {print $NF}')
  rm -f "$der"
  r=$(sed -n 1p <<<"$ints")
  s=$(sed -n 2p <<<"$ints")
  { printf '%064s' "$r" | tr ' ' 0 | hex_to_bin; printf '%064s' "$s" | tr ' ' 0 | hex_to_bin; } | b64url
}
now=$(date +%s)
header=$(printf '{"alg":"ES256","typ":"JWT"}' | b64url)
payload=$(printf '{"sub":"%s","iss":"%s","aud":"%s","iat":%d,"exp":%d}' \
  "$PRINCIPAL" "$ISSUER" "$AUDIENCE" "$now" "$((now + TOKEN_TTL))" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | es256_sign)
printf '%s.%s.%s\n' "$header" "$payload" "$signature" > token.new
mv token.new token

# ---- an API key, of which the service keeps only the hash ---------------------
[ -s api-key ] || echo "sk-local-$(openssl rand -hex 24)" > api-key
{
  echo "# principal  sha256 of the key (the key itself is in api-key, never with the service)"
  echo "$API_PRINCIPAL $(tr -d '\n' < api-key | openssl dgst -sha256 -r | cut -d' ' -f1)"
} > api-keys.txt

[ -s policy.json ] || cat > policy.json <<JSON
{
  "$PRINCIPAL": [">"],
  "$API_PRINCIPAL": ["order.>"],
  "$CLIENT_URI": ["order.>", "user.>"]
}
JSON

cat > client.env <<ENV
# For the client examples and scripts/demo.sh: set -a; . $PWD/client.env; set +a
SLUICE_ADDR=$addr
SLUICE_CA=$PWD/ca.crt
SLUICE_TOKEN=$(cat token)
ENV
