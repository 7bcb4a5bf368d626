#!/usr/bin/env bash
# The ingest benchmark: installs what is missing (scripts/setup.sh), builds telehub and the
# bench/ programs in Release (build-release/, ccache, -j2), installs the Node.js peer's pinned
# npm packages (better-sqlite3 built from source), then runs bench/run.mjs, which prints one
# table (also saved to build-release/bench-work/table.txt), then, as a separate step, the FHIR
# API benchmark telehub-bench-fhir (issue [7/8]; BENCH_SKIP_FHIR=1 skips it). Takes a few
# minutes with the defaults. Parameters are environment variables, see docs/benchmarks.md, e.g.
#   BENCH_RUNS=5 BENCH_MESSAGES=100000 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(cd .. && pwd)}
export BENCH_BUILD_DIR=${BENCH_BUILD_DIR:-build-release}
cmake -S . -B "$BENCH_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTELEHUB_BENCH=ON -DTELEHUB_BUILD_TESTS=OFF >/dev/null
cmake --build "$BENCH_BUILD_DIR" -j "${BENCH_JOBS:-2}" --target telehub telehub-bench-seal telehub-bench-publish \
  telehub-bench-paho-sub telehub-bench-raw-sub telehub-bench-sqlite-append telehub-bench-storage-scale \
  telehub-bench-enroll telehub-bench-soak-publish telehub-bench-fhir

# The naive Node.js peer's packages, pinned in bench/node/package-lock.json. better-sqlite3 has
# no prebuilt binary we may download, so node-gyp compiles it against the installed Node's
# headers (about a minute, once). If that fails the benchmark still runs and its table says
# the peer was not measured.
node_ready() { (cd bench/node && node -e "require('better-sqlite3')(':memory:').close(); require('mqtt')") >/dev/null 2>&1; }
if ! node_ready || [ bench/node/package-lock.json -nt bench/node/node_modules/.package-lock.json ]; then
  echo "bench: installing the Node.js peer's packages (npm ci, building better-sqlite3 from source)"
  nodedir=""
  if [ -f /usr/include/node/node_version.h ]; then nodedir=/usr; fi
  if ! (cd bench/node && npm_config_nodedir=$nodedir npm_config_build_from_source=true \
        npm ci --no-audit --no-fund --loglevel=error) || ! node_ready; then
    export BENCH_SKIP_NODE=1
    export BENCH_SKIP_NODE_REASON="npm ci in bench/node failed (better-sqlite3 did not build); see the output above"
    echo "bench: $BENCH_SKIP_NODE_REASON" >&2
  fi
fi

exec node bench/run.mjs
