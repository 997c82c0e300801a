#!/usr/bin/env bash
# The benchmark suite: peercat side by side with ncat on this machine.
#   scripts/bench.sh            full run (a few minutes), markdown table on stdout
#   scripts/bench.sh --quick    30-second smoke run (CI runs this)
#   scripts/bench.sh --runs 9   more runs per scenario
#   scripts/bench.sh --only 7,8,9,10   the mesh scenarios: a relay chain of 5,
#       fan-out to 8 through a degree-3 mesh, one line to 16 members, bytes
#       read per byte delivered in a degree-4 mesh (BENCHMARKS.md says more)
#   scripts/bench.sh --only 11  encrypted (--secret-file) against unencrypted:
#       one hop, 1 MiB messages, fan-out to 4, latency
# Installs ncat when it is missing; builds peercat in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ncat >/dev/null 2>&1; then
  echo "ncat is missing: installing it" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ncat
fi

# `cargo bench` builds peercat and the suite with the release profile.
exec cargo bench --bench suite -- "$@"
