#!/usr/bin/env bash
# Installs the pinned npm dependencies of client.mjs once (npm ci, keyed by package-lock.json),
# then runs it with the given arguments. Used by tests/e2e/fhirclient_test.cpp.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
stamp="$here/node_modules/.telehub-installed"
if [ ! -f "$stamp" ] || ! cmp -s "$here/package-lock.json" "$stamp"; then
  (
    exec 9>"$here/.install.lock"
    flock 9
    if [ ! -f "$stamp" ] || ! cmp -s "$here/package-lock.json" "$stamp"; then
      (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
      cp "$here/package-lock.json" "$stamp"
    fi
  )
fi
exec node "$here/client.mjs" "$@"
