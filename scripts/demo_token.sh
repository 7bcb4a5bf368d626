#!/usr/bin/env bash
# Prints a fresh access token (valid 300 s) for the demo's care client "demo-hospital": signs a
# SMART Backend Services assertion with the client's private key (telehub client assertion) and
# posts it to the hub's token endpoint (docs/security.md). Usage:
#   TOKEN=$(scripts/demo_token.sh [DATA_DIR])
#   curl --cacert DATA_DIR/ca/ca.pem -H "Authorization: Bearer $TOKEN" https://127.0.0.1:8080/fhir/...
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-${DEMO_DATA:-data}}
BIN=${BIN:-${BUILD_DIR:-build}/apps/telehub}
base=$(sed -n 's/.*"fhir": *"\([^"]*\)".*/\1/p' "$DATA/hub.json")
[ -n "$base" ] || { echo "demo_token: no FHIR base in $DATA/hub.json (is the hub running?)" >&2; exit 1; }
token_url="${base%/fhir}/auth/token"
assertion=$("$BIN" client assertion --id demo-hospital --key "$DATA/demo-client/client-key.pem" --aud "$token_url")
answer=$(curl -sS --cacert "$DATA/ca/ca.pem" "$token_url" \
  --data-urlencode grant_type=client_credentials \
  --data-urlencode "scope=system/Observation.rs system/Patient.rs system/Device.rs" \
  --data-urlencode client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  --data-urlencode "client_assertion=$assertion")
token=$(printf '%s' "$answer" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "demo_token: the token endpoint refused: $answer" >&2; exit 1; }
printf '%s\n' "$token"
