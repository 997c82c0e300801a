#!/usr/bin/env bash
# A whole group sends files and exits together: N nodes on 127.0.0.1, each
# joining through a random earlier one, each piping LINES numbered lines of
# 200 bytes with --exit-on-eof --wait-members N-1. Checks that every node
# exits 0 and prints every other node's lines once each, in order.
#
#   scripts/group-exit.sh [N] [LINES] [BASEPORT]     (defaults: 20 30000 29600)
#
# PEERCAT_BIN picks the binary (default: a release build, made here, in
# $CARGO_TARGET_DIR or the checkout's target/); PEERCAT_ARGS adds options
# to every node (e.g. "--stall-timeout 60").
set -euo pipefail
n=${1:-20}
lines=${2:-30000}
base=${3:-29600}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${PEERCAT_BIN:-}" ]; then
  bin=$PEERCAT_BIN
else
  (cd "$root" && cargo build --release --quiet)
  target=${CARGO_TARGET_DIR:-target}
  case $target in /*) ;; *) target=$root/$target ;; esac
  bin=$target/release/peercat
fi
[ -x "$bin" ] || { echo "group-exit: no peercat binary at $bin (set PEERCAT_BIN)" >&2; exit 1; }
read -r -a extra <<< "${PEERCAT_ARGS:-}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for ((i = 0; i < n; i++)); do
  awk -v i="$i" -v lines="$lines" 'BEGIN {
    pad = sprintf("%200s", ""); gsub(/ /, "z", pad)
    for (s = 1; s <= lines; s++) {
      head = sprintf("n%d-%d-", i, s)
      print head substr(pad, 1, 200 - length(head))
    }
  }' > "$dir/in$i"
done
for ((i = 0; i < n; i++)); do
  peer=()
  if ((i > 0)); then peer=("127.0.0.1:$((base + RANDOM % i))"); fi
  (
    rc=0
    timeout 120 "$bin" -l "127.0.0.1:$((base + i))" -n "n$i" --exit-on-eof \
      --wait-members $((n - 1)) "${extra[@]}" "${peer[@]}" < "$dir/in$i" 2> "$dir/log$i" || rc=$?
    echo "$rc" > "$dir/rc$i"
  ) | awk -F- '{ n[$1]++; if ($2 != last[$1] + 1) bad[$1]++; last[$1] = $2 }
      END { for (k in n) print k, n[k], last[k], bad[k] + 0 }' > "$dir/got$i" &
done
wait
imperfect=0
for ((i = 0; i < n; i++)); do
  rc=$(cat "$dir/rc$i")
  senders=$(wc -l < "$dir/got$i")
  wrong=$(awk -v l="$lines" '$2 != l || $3 != l || $4 != 0' "$dir/got$i" | wc -l)
  if [[ $rc != 0 || $wrong != 0 || $senders != $((n - 1)) ]]; then
    imperfect=$((imperfect + 1))
    echo "n$i: exit $rc, lines from $senders senders, $wrong of them incomplete or out of order"
  fi
done
echo "$n nodes x $lines lines: $imperfect not perfect"
((imperfect == 0))
