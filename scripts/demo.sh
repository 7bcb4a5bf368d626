#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts the hub (embedded Mosquitto, ingest,
# FHIR API in development mode: plain HTTP on 127.0.0.1:8080) and three simulated patients' gateways, waits until readings
# are stored, and shows how to look at them. Ctrl-C stops everything cleanly.
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

echo "starting the hub (log: $LOG) ..."
# Development mode: --insecure-http serves plain HTTP (allowed on 127.0.0.1 only; serve's
# default is HTTPS), and --care-local lets this machine act as the care team's system without a
# token, so the demo can show a re-identified (and audited) Patient; docs/privacy.md.
"$BIN" serve --data "$DATA" --http-port "$PORT" --insecure-http --care-local >"$LOG" 2>&1 &
hub_pid=$!
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$PORT/fhir/metadata" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$hub_pid" 2>/dev/null; then echo "the hub did not start:"; tail -20 "$LOG"; exit 1; fi
  sleep 0.2
done
curl -sf "http://127.0.0.1:$PORT/fhir/metadata" >/dev/null || { echo "FHIR API not reachable"; tail -20 "$LOG"; exit 1; }

echo "starting 3 simulated patients' gateways (log: $SIMLOG) ..."
"$BIN" simulate --data "$DATA" --patients 3 --history-hours 24 --interval-ms 5000 >"$SIMLOG" 2>&1 &
sim_pid=$!

patient=""
for _ in $(seq 1 150); do
  patient=$(grep -o 'Patient/[0-9a-f]\{32\}' "$SIMLOG" | head -1 | cut -d/ -f2 || true)
  if [ -n "$patient" ] && curl -sf "http://127.0.0.1:$PORT/fhir/Observation?patient=$patient&_count=1" | grep -q '"entry"'; then
    break
  fi
  if ! kill -0 "$sim_pid" 2>/dev/null; then echo "the simulator stopped:"; tail -20 "$SIMLOG"; exit 1; fi
  sleep 0.2
done
[ -n "$patient" ] || { echo "no readings arrived"; tail -20 "$SIMLOG"; tail -20 "$LOG"; exit 1; }

cat <<MSG

telehub is running: readings from 3 simulated patients are arriving.

  FHIR API         http://127.0.0.1:$PORT/fhir/metadata
  one patient      curl -s 'http://127.0.0.1:$PORT/fhir/Patient/$patient'   (care context: name and BSN; audited)
  who looked       $BIN audit show --patient $patient --data $DATA
  audit chain      $BIN audit verify --data $DATA
  heart rate       curl -s 'http://127.0.0.1:$PORT/fhir/Observation?patient=$patient&code=http://loinc.org|8867-4&_count=5'
  blood pressure   curl -s 'http://127.0.0.1:$PORT/fhir/Observation?patient=$patient&code=85354-9&date=ge$(date -u +%Y-%m-%d)'
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
