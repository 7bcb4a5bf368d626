#!/usr/bin/env bash
# A real full disk, by hand (not part of the test suite: it needs root to mount a filesystem).
# Runs `telehub serve` (embedded Mosquitto) with its data directory on a small tmpfs, lets
# telehub-gateway processes fill it, shows what the hub says meanwhile (log, /metrics), then
# grows the filesystem and checks that every reading arrives exactly once. The gateways keep
# their outboxes outside the small filesystem, as gateways do.
#   BUILD_DIR=dir   build directory (default build)
#   SIZE=2m         size of the tmpfs at the start
#   GATEWAYS=3      gateway processes
#   MESSAGES=1000   messages per gateway (5-6 readings each)
#   HOLD_S=10       seconds to stay full after the hub stalls
# Exit status 0 when all checks pass.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "disk_full_check: needs root (mount -t tmpfs)" >&2; exit 2; }
BIN=${BUILD_DIR:-build}/apps
SIZE=${SIZE:-2m}
GATEWAYS=${GATEWAYS:-3}
MESSAGES=${MESSAGES:-1000}
HOLD_S=${HOLD_S:-10}
[ -x "$BIN/telehub" ] && [ -x "$BIN/telehub-gateway" ] || { echo "disk_full_check: build telehub and telehub-gateway first" >&2; exit 2; }

WORK=$(mktemp -d)
SMALL=$WORK/small
DATA=$SMALL/data
mkdir -p "$SMALL"
mount -t tmpfs -o size="$SIZE",mode=0700 tmpfs "$SMALL"
hub_pid=""
gw_pids=()
cleanup() {
  for p in "${gw_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  [ -n "$hub_pid" ] && kill -TERM "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null || true
  umount "$SMALL" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "disk_full_check: FAIL: $*" >&2; exit 1; }
TELEHUB_KEK=$(openssl rand -hex 32)
export TELEHUB_KEK

# Plain HTTP on loopback with the local care setting: /metrics without a token (development mode,
# docs/security.md).
"$BIN/telehub" serve --data "$DATA" --http-port 0 --insecure-http --care-local >"$WORK/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 100); do grep -q "serving; FHIR API" "$WORK/hub.log" && break; sleep 0.1; done
BASE=$(grep -o 'FHIR API at http://[^ ]*/fhir' "$WORK/hub.log" | head -1 | sed 's/FHIR API at //')
[ -n "$BASE" ] || { cat "$WORK/hub.log"; fail "hub did not start"; }
METRICS=${BASE%/fhir}/metrics
metric() { curl -s "$METRICS" | awk -v m="$1" '$1 == m { print $2 }'; }

for g in $(seq "$GATEWAYS"); do
  out=$("$BIN/telehub" device enroll --subject "disk-full-$g" --data "$DATA")
  prov=$(echo "$out" | sed -n 's/.*provisioning: \([^ ]*\).*/\1/p')
  cp "$prov" "$WORK/gateway-$g.json"
done
for g in $(seq "$GATEWAYS"); do
  "$BIN/telehub-gateway" --provisioning "$WORK/gateway-$g.json" --count "$MESSAGES" --interval-ms 10 \
    --seed "$g" --receipt-wait-ms 300000 >"$WORK/gateway-$g.log" 2>&1 &
  gw_pids+=($!)
done

echo "disk_full_check: $GATEWAYS gateways x $MESSAGES messages into $DATA ($SIZE tmpfs)"
for _ in $(seq 1200); do [ "$(metric telehub_ingest_stalled)" = 1 ] && break; sleep 0.1; done
[ "$(metric telehub_ingest_stalled)" = 1 ] || fail "the hub never stalled (is $SIZE too big for $MESSAGES messages?)"
stored=$(metric telehub_ingest_readings_stored_total)
echo "disk_full_check: stalled with $stored readings stored; filesystem:"
df -h "$SMALL" | tail -1
sleep "$HOLD_S"
[ "$(metric telehub_ingest_readings_stored_total)" = "$stored" ] || fail "readings were stored while the disk was full"
pending=$(find "$WORK" -path '*.outbox/*.env' | wc -l)
echo "disk_full_check: after ${HOLD_S} s still stalled: $stored readings stored, $pending messages waiting in gateway outboxes"
echo "disk_full_check: /metrics:"
curl -s "$METRICS" | grep -E '^telehub_(ingest_stalled|ingest_retries_total|mqtt_connected|ingest_readings_stored_total) '
echo "disk_full_check: hub log (first lines of the stall):"
grep -E 'stalled|cannot commit' "$WORK/hub.log" | head -4
echo "disk_full_check: broker log (the embedded Mosquitto saves its queue into the same directory):"
grep -E 'Error' "$DATA/broker/mosquitto.log" | head -2 || true

mount -o remount,size=256m "$SMALL"
echo "disk_full_check: filesystem grown to 256m"
for _ in $(seq 600); do [ "$(metric telehub_ingest_stalled)" = 0 ] && break; sleep 0.1; done
[ "$(metric telehub_ingest_stalled)" = 0 ] || fail "the hub did not resume"
grep -E 'resumed' "$WORK/hub.log" | head -1
for i in "${!gw_pids[@]}"; do
  wait "${gw_pids[$i]}" || fail "gateway $((i + 1)) exited with $? (outbox not drained)"
done
gw_pids=()
kill -TERM "$hub_pid"
wait "$hub_pid" || fail "hub exit status $?"
hub_pid=""

sent=$(cat "$WORK"/gateway-*.log | sed -n 's/^published sequence [0-9]* (\([0-9]*\) readings)$/\1/p' | awk '{ s += $1 } END { print s }')
db=$DATA/telehub.db
stored=$(sqlite3 "$db" 'SELECT coalesce(sum(readings), 0) FROM messages')
messages=$(sqlite3 "$db" 'SELECT count(*) FROM messages')
complete=$(sqlite3 "$db" "SELECT count(*) FROM (SELECT device_id FROM messages GROUP BY device_id HAVING count(*) = $MESSAGES AND min(sequence) = 1 AND max(sequence) = $MESSAGES)")
integrity=$(sqlite3 "$db" 'PRAGMA integrity_check')
echo "disk_full_check: sent $sent readings in $((GATEWAYS * MESSAGES)) messages; stored $stored readings in $messages messages; $complete of $GATEWAYS devices complete; integrity_check: $integrity"
[ "$stored" = "$sent" ] && [ "$messages" = $((GATEWAYS * MESSAGES)) ] && [ "$complete" = "$GATEWAYS" ] &&
  [ "$integrity" = ok ] || fail "lost or doubled readings"
echo "disk_full_check: OK"
