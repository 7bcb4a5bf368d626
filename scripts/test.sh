#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), builds everything and runs all tests.
# This is the README's test command and what .ci/run calls. The tests start their own
# Mosquitto brokers on free loopback ports; no service needs to be running.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTELEHUB_WERROR=ON >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
# fhir-validate installs its npm dependencies on first use; do it once up front so the
# first test that validates does not pay for it inside its timeout.
../shared/tools/fhir-validate/fhir-validate -q ../shared/fhir-r4-examples/Patient-example.json >/dev/null
cd "$BUILD_DIR"
ctest --output-on-failure -j 2 --timeout 600
