#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang-14, ASan + UBSan) into build-fuzz/ and runs each one
# for a while on a fresh copy of the seed corpus. See docs/fuzzing.md.
#
#   tests/fuzz/run.sh [seconds-per-target]     (default 60)
#
# Environment: CXX_FUZZ (default clang++-14), FUZZ_TARGETS (default "envelope_open
# payload_decode store_codec senml_decode mapping_apply search_params fhir_patient router env_import study_parse"), FUZZ_MAX_LEN (default 4096), FUZZ_BUILD_ONLY=1 to build and stop,
# FUZZ_KEEP_GOING=1 to go on after a crash (libFuzzer fork mode).
# Exits non-zero when a harness finds a crash, leak, timeout or invariant violation; the input
# is copied to tests/fuzz/regressions/ so the normal test run (envelope_tests "[fuzz]")
# replays it.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/build-fuzz"
cxx="${CXX_FUZZ:-clang++-14}"
targets="${FUZZ_TARGETS:-envelope_open payload_decode store_codec senml_decode mapping_apply search_params fhir_patient router env_import study_parse}"
max_len="${FUZZ_MAX_LEN:-4096}"

if ! command -v "$cxx" >/dev/null; then
  echo "run.sh: $cxx not found (scripts/setup.sh installs clang-14 and libclang-rt-14-dev)" >&2
  exit 2
fi

flags=(-std=c++20 -g -O1 -fno-omit-frame-pointer
       -fsanitize=address,undefined -fno-sanitize-recover=undefined
       -fsanitize-ignorelist="$root/tests/fuzz/ubsan-ignorelist.txt"
       -Wall -Wextra -Wpedantic
       -I"$root/core/include" -I"$root/envelope/include" -I"$root/formats/include" -I"$root/privacy/include"
       -I"$root/sqlite/include" -I"$root/storage/include" -I"$root/fhir/include" -I"$root/auth/include" -I"$root/clinical/include" -I"$root/environment/include" -I"$root/research/include" -I"$root/storage/src" -I"$root/fhir/src"
       -I/usr/include)

# 1. Build: the telehub sources with coverage instrumentation, then one binary per harness.
# Every harness links the same objects: all of core, envelope, formats, privacy, sqlite, clinical, auth,
# storage and fhir except fhir's HTTP server (Boost.Beast; the router harness calls
# Router::handle() directly), so every harness links -lsqlite3 -lcrypto.
mkdir -p "$out/obj"
rm -f "$out"/obj/fhir_http_server.o
sources=()
for src in "$root"/{core,envelope,formats,privacy,sqlite,storage,clinical,environment,research,auth,fhir}/src/*.cpp; do
  [ "$(basename "$src")" = http_server.cpp ] && continue
  sources+=("$src")
done
echo "run.sh: compiling ${#sources[@]} telehub sources with $cxx into $out"
pids=()
for src in "${sources[@]}"; do
  obj="$out/obj/$(basename "$(dirname "$(dirname "$src")")")_$(basename "${src%.cpp}").o"
  # Up to date: newer than its source and than every header of the modules.
  if [ "$obj" -nt "$src" ] && [ "$obj" -nt "$0" ] &&
     [ -z "$(find "$root"/{core,envelope,formats,privacy,sqlite,storage,clinical,environment,research,auth,fhir}/{include,src} -name '*.h' -newer "$obj" -print -quit)" ]; then
    continue
  fi
  "$cxx" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" &
  pids+=($!)
  if [ "${#pids[@]}" -ge 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
for t in $targets; do
  "$cxx" "${flags[@]}" -fsanitize=fuzzer "$root/tests/fuzz/fuzz_$t.cpp" "$out"/obj/*.o -lsqlite3 -lcrypto -pthread -o "$out/fuzz_$t"
done
echo "run.sh: built $(for t in $targets; do printf 'build-fuzz/fuzz_%s ' "$t"; done)"
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit 0

# Every UBSan report is fatal (-fno-sanitize-recover); the few third-party reports we cannot
# fix are left out at compile time by ubsan-ignorelist.txt.
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

# 2. Run each harness for $seconds on a copy of its seeds plus the saved regression inputs.
# Seeds include the regression inputs saved before this run (not those a harness finds now).
regressions_dir="$out/regressions-at-start"
rm -rf "$regressions_dir"
mkdir -p "$regressions_dir"
find "$root/tests/fuzz/regressions" -maxdepth 1 -type f ! -name 'README*' -exec cp {} "$regressions_dir"/ \;
# FUZZ_KEEP_GOING=1: libFuzzer's fork mode, which saves each crash and carries on until the
# time is up (useful while a known bug is open); otherwise the first crash ends the run.
keep_going=()
[ "${FUZZ_KEEP_GOING:-0}" = 1 ] && keep_going=(-fork=1 -ignore_crashes=1)
status=0
summary=()
for t in $targets; do
  case "$t" in
    fhir_patient) seeds=fhir_json ;;
    env_import) seeds=env ;;
    study_parse) seeds=study ;;
    *) seeds="${t%%_*}" ;;  # envelope_open -> envelope, search_params -> search, router -> router
  esac
  corpus="$out/corpus-$t"
  artifacts="$out/artifacts-$t"
  rm -rf "$corpus" "$artifacts"
  mkdir -p "$corpus" "$artifacts"
  cp "$root/tests/fuzz/corpus/$seeds"/* "$corpus"/
  cp "$regressions_dir"/* "$corpus"/ 2>/dev/null || true
  dict=()
  [ -f "$root/tests/fuzz/payload.dict" ] && dict=(-dict="$root/tests/fuzz/payload.dict")
  echo "run.sh: fuzzing $t for ${seconds}s (corpus $corpus)"
  rc=0
  "$out/fuzz_$t" "$corpus" "${dict[@]}" "${keep_going[@]}" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$artifacts/" -print_final_stats=1 >"$out/$t.log" 2>&1 || rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/$t.log" | tail -1)"
  if [ -z "$execs" ]; then  # fork mode prints "#<execs>: cov: .. exec/s: .." lines instead
    last="$(grep -E '^#[0-9]+: cov:' "$out/$t.log" | tail -1 || true)"
    execs="$(sed -n 's/^#\([0-9]*\):.*/\1/p' <<<"$last")"
    rate="$(sed -n 's/.*exec\/s:\? \([0-9]*\).*/\1/p' <<<"$last")"
  fi
  cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$out/$t.log" | tail -1 || true)"
  found=0
  for f in "$artifacts"/*; do
    [ -e "$f" ] || continue
    found=$((found + 1))
    cp "$f" "$root/tests/fuzz/regressions/${t}-$(basename "$f")"
    echo "run.sh: $t: saved tests/fuzz/regressions/${t}-$(basename "$f")"
  done
  line="$t: ${seconds}s, ${execs:-?} executions, ${rate:-?} exec/s, ${cov:-cov ?}, corpus $(ls "$corpus" | wc -l) files, exit $rc, artifacts $found"
  summary+=("$line")
  if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
    status=1
    grep -E 'invariant violated|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' "$out/$t.log" | head -5 >&2 || true
    echo "run.sh: $t FAILED, log: $out/$t.log" >&2
  fi
done

echo "run.sh: summary"
printf '  %s\n' "${summary[@]}"
exit "$status"
