#!/bin/sh
# Runs every fuzz target in turn for SECS seconds (default 420), one
# process each (the machine is shared), growing fuzz/corpus-work/<target>
# from the kept corpus; logs go to fuzz/logs/<target>.log, crashes to
# fuzz/artifacts/<target>/.
set -u
cd "$(dirname "$0")"
secs=${1:-420}
mkdir -p logs
for t in ${TARGETS:-frames hello reassembly mesh}; do
    mkdir -p "corpus-work/$t"
    cp -n corpus/"$t"/* "corpus-work/$t/" 2>/dev/null
    cargo +nightly fuzz run -O -a "$t" "corpus-work/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=1024 -print_final_stats=1 \
        >"logs/$t.log" 2>&1
    echo "$t: exit $? after ${secs}s" >>logs/summary.log
done
