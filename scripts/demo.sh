#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts the hub (embedded Mosquitto, ingest,
# FHIR API over HTTPS on 127.0.0.1:8080), registers a hospital system (a SMART Backend Services
# client), starts three simulated patients' gateways, waits until the hospital system reads their
# readings with an access token, and shows how to look at them. Ctrl-C stops everything cleanly.
#   DEMO_DATA=dir    data directory (default ./data)
#   DEMO_PORT=port   FHIR API port (default 8080)
#   DEMO_SECONDS=n   stop by itself after n seconds (default: run until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target telehub telehub-gateway

DATA=${DEMO_DATA:-data}
PORT=${DEMO_PORT:-8080}
BIN="$BUILD_DIR/apps/telehub"
mkdir -p "$DATA"
LOG="$DATA/demo-hub.log"
SIMLOG="$DATA/demo-simulator.log"

hub_pid=""; sim_pid=""
cleanup() {
  trap - EXIT INT TERM
  [ -n "$sim_pid" ] && kill -TERM "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null || true
  [ -n "$hub_pid" ] && kill -TERM "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null || true
  echo "demo stopped; data kept in $DATA (hub log: $LOG)"
}
trap cleanup EXIT INT TERM

# Environmental context for the simulated patients' home areas (postcodes 3500..3519): a
# synthetic hourly series from two days ago to tomorrow (docs/environment.md).
node config/environment/generate.mjs --csv "$(date -u -d '2 days ago' +%Y-%m-%d)" 4 >"$DATA/demo-environment.csv"
"$BIN" env import --data "$DATA" "$DATA/demo-environment.csv" >/dev/null

CA="$DATA/ca/ca.pem"
API="https://127.0.0.1:$PORT/fhir"
echo "starting the hub (log: $LOG) ..."
# HTTPS (certificate from the development CA in $DATA/ca, the broker's CA) with authentication:
# the demo acts as a hospital system below (docs/security.md).
"$BIN" serve --data "$DATA" --http-port "$PORT" >"$LOG" 2>&1 &
hub_pid=$!
for _ in $(seq 1 100); do
  if [ -f "$CA" ] && curl -sf --cacert "$CA" "$API/metadata" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$hub_pid" 2>/dev/null; then echo "the hub did not start:"; tail -20 "$LOG"; exit 1; fi
  sleep 0.2
done
curl -sf --cacert "$CA" "$API/metadata" >/dev/null || { echo "FHIR API not reachable"; tail -20 "$LOG"; exit 1; }

# The hospital system "demo-hospital": a key pair, registered with the hub as a care client of
# organisation demo-hospital (once per data directory).
if [ ! -f "$DATA/demo-client/registered" ]; then
  rm -rf "$DATA/demo-client"
  "$BIN" client keygen --out "$DATA/demo-client" >/dev/null
  "$BIN" client register --data "$DATA" --id demo-hospital --jwks "$DATA/demo-client/jwks.json" \
    --scopes "system/Observation.rs system/Patient.rs system/Device.rs" --role care --organisation demo-hospital
  touch "$DATA/demo-client/registered"
fi

echo "starting 3 simulated patients' gateways (log: $SIMLOG) ..."
# --care-organisation: the programme enrols these patients for demo-hospital's care team.
"$BIN" simulate --data "$DATA" --patients 3 --history-hours 24 --interval-ms 5000 \
  --care-organisation demo-hospital >"$SIMLOG" 2>&1 &
sim_pid=$!

TOKEN=$(DEMO_DATA="$DATA" BUILD_DIR="$BUILD_DIR" bash scripts/demo_token.sh "$DATA")
patient=""
for _ in $(seq 1 150); do
  patient=$(grep -o 'Patient/[0-9a-f]\{32\}' "$SIMLOG" | head -1 | cut -d/ -f2 || true)
  if [ -n "$patient" ] && curl -sf --cacert "$CA" -H "Authorization: Bearer $TOKEN" \
       "$API/Observation?patient=$patient&_count=1" | grep -q '"entry"'; then
    break
  fi
  if ! kill -0 "$sim_pid" 2>/dev/null; then echo "the simulator stopped:"; tail -20 "$SIMLOG"; exit 1; fi
  sleep 0.2
done
[ -n "$patient" ] || { echo "no readings arrived"; tail -20 "$SIMLOG"; tail -20 "$LOG"; exit 1; }
curl -sf --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$API/Patient/$patient" | grep -q '"name"' ||
  { echo "the care client cannot read its patient"; tail -20 "$LOG"; exit 1; }

cat <<MSG

telehub is running: readings from 3 simulated patients are arriving.

  FHIR API         curl --cacert $CA $API/metadata
  access token     TOKEN=\$(scripts/demo_token.sh $DATA)     (the hospital system demo-hospital; valid 300 s)
  one patient      curl --cacert $CA -H "Authorization: Bearer \$TOKEN" $API/Patient/$patient
                   (care relation of demo-hospital: name and BSN; audited)
  heart rate       curl --cacert $CA -H "Authorization: Bearer \$TOKEN" '$API/Observation?patient=$patient&code=http://loinc.org|8867-4&_count=5'
  blood pressure   curl --cacert $CA -H "Authorization: Bearer \$TOKEN" '$API/Observation?patient=$patient&code=85354-9&date=ge$(date -u +%Y-%m-%d)'
  the dossier      curl --cacert $CA -H "Authorization: Bearer \$TOKEN" '$API/Patient/$patient/\$everything?_count=200'
                   (Patient, Devices, home readings, then the air quality and weather of the home area)
  without a token  curl --cacert $CA $API/Patient/$patient        (401)
  who looked       $BIN audit show --patient $patient --data $DATA
  audit chain      $BIN audit verify --data $DATA
  quarantine       $BIN quarantine list --data $DATA

Patient ids are pseudonyms. The simulated patients' synthetic identities (BSN, name, address)
are only in the identity vault ($DATA/identity.db, every field encrypted); the measurement store
holds pseudonyms only.
Press Ctrl-C to stop (the hub flushes its writer and stops its broker).
MSG

if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait "$hub_pid"
fi
