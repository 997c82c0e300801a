#!/usr/bin/env bash
# The mesh on a simulated LAN: N network namespaces ("hosts") on one bridge,
# one peercat per host on its own address, every link lossy and rate-capped.
# Needs root, iproute2 (ip, tc) and nftables (installed when missing).
#
#   scripts/netns-lab.sh [--bin PATH] [--hosts N] [--loss PCT] [--rate RATE]
#                        [--keepalive SECS] [--partition SECS] [--keep]
#                        [--no-discover]
#
# Scenarios, in order, each checked (exit 1 with the reason and the logs'
# tails on the first failure; exit 0 and "lab: passed" when all hold):
#   1. discovery: every node started with --discover and no PEER finds the
#      whole group;
#   2. delivery: every node sends lines through random loss (nftables
#      `numgen random`) and a rate cap (tc tbf) on every link, plus netem
#      delay where the kernel has netem; every node gets every line;
#   3. a link cut (`ip link set down` on the bridge port of one host): its
#      neighbours notice within 3 x keepalive, the others route around it,
#      and it comes back when the link does;
#   4. a host killed (SIGKILL) and restarted with only its --peer-cache (no
#      PEER, no --discover) rejoins;
#   5. a partition into two halves for --partition seconds, then healed: the
#      group is whole again within 30 s, and lines sent after the heal reach
#      everyone;
#   and over the whole run: per origin, each node printed each line at most
#   once and in order, and every line it skipped is reported in a `gap`
#   event (delivered or reported: never a silent hole).
# The namespaces and processes are removed on exit, however it ends; the
# logs and outputs too, unless it failed or was interrupted (then it prints
# where they are; --keep keeps them always). --bin PATH runs that binary;
# without it, a release build is made ($CARGO_TARGET_DIR or target/).
# --no-discover joins every node through h0 instead of discovery (to try
# the rest on a build whose discovery does not work).
set -euo pipefail
here=$PWD
cd "$(dirname "$0")/.."

BIN=""
HOSTS=6
LOSS=2          # percent of packets dropped at every host's input
RATE=20mbit     # every host's egress
KA=1            # --keepalive
PART_SECS=6     # how long the partition lasts
KEEP=0
DISCOVER=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; case $BIN in /*) ;; *) BIN=$here/$BIN ;; esac; shift 2 ;;
    --hosts) HOSTS=$2; shift 2 ;;
    --loss) LOSS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --keepalive) KA=$2; shift 2 ;;
    --partition) PART_SECS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-discover) DISCOVER=0; shift ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "netns-lab: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$HOSTS" -lt 4 ] || [ "$HOSTS" -gt 60 ]; then
  echo "netns-lab: --hosts must be 4..60" >&2; exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "netns-lab: needs root (it creates network namespaces)" >&2; exit 1
fi
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v tc >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
  echo "netns-lab: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ -z "$BIN" ]; then
  cargo build --release --quiet
  BIN=${CARGO_TARGET_DIR:-target}/release/peercat
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
[ -x "$BIN" ] || { echo "netns-lab: no peercat binary at $BIN" >&2; exit 1; }

TAG="pl$$"
SW="$TAG-sw"
DIR=$(mktemp -d "${TMPDIR:-/tmp}/peercat-lab.XXXXXX")
declare -a PID FD OUT SENT GEN
NETEM=no
T0=$(date +%s%N)

log() { printf '%6.1fs  %s\n' "$(( ($(date +%s%N) - T0) / 1000000 ))e-3" "$*"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

cleanup() {
  local code=$?
  set +e
  for i in "${!PID[@]}"; do
    [ -n "${PID[$i]}" ] && kill -KILL "${PID[$i]}" 2>/dev/null
  done
  for i in "${!PID[@]}"; do
    [ -n "${PID[$i]}" ] && wait "${PID[$i]}" 2>/dev/null
  done
  for i in $(seq 0 $((HOSTS - 1))); do ip netns del "$TAG-h$i" 2>/dev/null; done
  ip netns del "$SW" 2>/dev/null
  if [ "$KEEP" = 1 ] || [ "$code" != 0 ]; then
    echo "netns-lab: logs and outputs kept in $DIR" >&2
  else
    rm -rf "$DIR"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL: $*" >&2
  for f in "$DIR"/h*.log; do
    echo "--- tail of $(basename "$f")" >&2
    tail -n 15 "$f" >&2
  done
  exit 1
}

# Runs "$@" every 100 ms until it succeeds; fails the lab after SECS.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$(( $(now_ms) + secs * 1000 ))
  until "$@"; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "$what: not within ${secs}s"
    all_alive
    sleep 0.1
  done
}

# Every node the lab started and did not kill is still running.
all_alive() {
  local i
  for i in "${!PID[@]}"; do
    if [ -n "${PID[$i]}" ] && ! kill -0 "${PID[$i]}" 2>/dev/null; then
      fail "the node on h$i exited on its own"
    fi
  done
}

host() { echo "$TAG-h$1"; }
addr() { echo "10.79.0.$(( $1 + 1 ))"; }

# --- the network --------------------------------------------------------
make_lan() {
  ip netns add "$SW"
  ip -n "$SW" link add br0 type bridge mcast_snooping 0
  ip -n "$SW" link set br0 up
  for i in $(seq 0 $((HOSTS - 1))); do
    local h; h=$(host "$i")
    ip netns add "$h"
    ip -n "$SW" link add "p$i" type veth peer name eth0 netns "$h"
    ip -n "$SW" link set "p$i" master br0 up
    ip -n "$h" link set lo up
    ip -n "$h" addr add "$(addr "$i")/24" dev eth0
    ip -n "$h" link set eth0 up
    # Discovery's multicast leaves through eth0 (there is no default route).
    ip -n "$h" route add 224.0.0.0/4 dev eth0
    impair "$i"
  done
}

# Loss at the input of every host (so on every link, both ways) and a rate
# cap on its output; netem delay too where the kernel has it.
impair() {
  local h; h=$(host "$1")
  ip netns exec "$h" nft -f - <<EOF
table inet lab {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "eth0" numgen random mod 100 < $LOSS drop
  }
}
EOF
  if tc -n "$h" qdisc add dev eth0 root handle 1: netem delay 1ms 2>/dev/null; then
    NETEM=yes
    tc -n "$h" qdisc add dev eth0 parent 1:1 handle 10: tbf rate "$RATE" burst 64kb latency 200ms
  else
    tc -n "$h" qdisc add dev eth0 root tbf rate "$RATE" burst 64kb latency 200ms
  fi
}

# Hosts in [from, to) drop everything to and from the other hosts.
partition() {
  local from=$1 to=$2 i j others
  for i in $(seq 0 $((HOSTS - 1))); do
    others=""
    for j in $(seq 0 $((HOSTS - 1))); do
      local mine=$(( i >= from && i < to )) theirs=$(( j >= from && j < to ))
      [ "$mine" != "$theirs" ] && others+="${others:+, }$(addr "$j")"
    done
    ip netns exec "$(host "$i")" nft -f - <<EOF
table inet labpart {
  chain input { type filter hook input priority -10; policy accept; ip saddr { $others } drop; }
  chain output { type filter hook output priority -10; policy accept; ip daddr { $others } drop; }
}
EOF
  done
}

heal() {
  for i in $(seq 0 $((HOSTS - 1))); do
    ip netns exec "$(host "$i")" nft delete table inet labpart
  done
}

# --- the nodes ----------------------------------------------------------
# start I [extra flags...]: a node on host I, stdin from a FIFO the lab
# keeps open (FD[I]), stdout to OUT[I] (one file per incarnation).
start() {
  local i=$1; shift
  GEN[$i]=$(( ${GEN[$i]:-0} + 1 ))
  local base="$DIR/h$i.${GEN[$i]}"
  OUT[$i]="$base.out"
  mkfifo "$base.in"
  ip netns exec "$(host "$i")" "$BIN" -n "h$i" -l "$(addr "$i"):7117" -f json \
    --keepalive "$KA" --stall-timeout 5 --degree 3 --peer-cache "$DIR/h$i.cache" "$@" \
    <"$base.in" >"${OUT[$i]}" 2>>"$DIR/h$i.log" &
  PID[$i]=$!
  local fd
  exec {fd}>"$base.in"
  FD[$i]=$fd
  SENT[$i]=${SENT[$i]:-0}
}

# send I COUNT: the next COUNT numbered lines into node I.
send() {
  local i=$1 n=$2 first=$(( ${SENT[$1]} + 1 ))
  seq "$first" $(( first + n - 1 )) >&"${FD[$i]}"
  SENT[$i]=$(( first + n - 1 ))
}

# The awk helpers read flat JSON objects: field(line, key).
AWK_LIB='
function field(line, key,   at, s, end) {
  at = index(line, "\"" key "\":")
  if (!at) return ""
  s = substr(line, at + length(key) + 3)
  if (substr(s, 1, 1) == "\"") { s = substr(s, 2); end = index(s, "\""); return substr(s, 1, end - 1) }
  match(s, /^[^,}]*/)
  return substr(s, 1, RLENGTH)
}
function kind(line,   k) { k = field(line, "type"); return k != "" ? k : field(line, "event") }
function payload(line,   t) { t = field(line, "text"); return t != "" ? t : field(line, "data") }
'

# How many members node I counts as up now.
members() {
  awk "$AWK_LIB"'
    kind($0) == "member_up" { live[field($0, "id")] = 1 }
    kind($0) == "member_down" { delete live[field($0, "id")] }
    END { n = 0; for (id in live) n++; print n }' "${OUT[$1]}"
}

# knows I N: node I counts N members.
knows() { [ "$(members "$1")" -eq "$2" ]; }

# group_knows "HOSTS" N: each of HOSTS counts N members.
group_knows() {
  local i
  for i in $1; do knows "$i" "$2" || return 1; done
}

# got I NAME N: node I printed line N from the node called NAME.
got() {
  awk "$AWK_LIB"' kind($0) == "msg" && field($0, "from") == name && payload($0) == n { found = 1; exit }
    END { exit !found }' name="$2" n="$3" "${OUT[$1]}"
}

# all_got "RECEIVERS" "ORIGINS": each receiver printed the last line each
# other origin sent so far (and line 1, when FROM_START is set).
all_got() {
  local i j
  for i in $1; do
    for j in $2; do
      [ "$i" = "$j" ] && continue
      got "$i" "h$j" "${SENT[$j]}" || return 1
      if [ -n "${FROM_START:-}" ]; then got "$i" "h$j" 1 || return 1; fi
    done
  done
}

# Names of the hosts whose node is directly linked to node K (from their
# last peer_up / peer_down event about hK).
neighbours_of() {
  local k=$1 i
  for i in $(seq 0 $((HOSTS - 1))); do
    [ "$i" = "$k" ] && continue
    awk "$AWK_LIB"' field($0, "name") == name && kind($0) == "peer_up" { up = 1 }
      field($0, "name") == name && kind($0) == "peer_down" { up = 0 }
      END { exit !up }' name="h$k" "${OUT[$i]}" && echo "$i"
  done
  return 0
}

# peer_downs I K: how many peer_down events node I printed about hK.
peer_downs() {
  awk "$AWK_LIB"' kind($0) == "peer_down" && field($0, "name") == name { n++ } END { print n + 0 }' \
    name="h$2" "${OUT[$1]}"
}

more_peer_downs() { [ "$(peer_downs "$1" "$2")" -gt "$3" ]; }

# The whole run: per (output file, origin id) seqs strictly increase, the
# payload number and the seq stay in step, and every skipped seq lies in a
# `gap` event of that file for that origin.
check_invariants() {
  awk "$AWK_LIB"'
    FNR == 1 { file++ }
    kind($0) == "msg" {
      o = field($0, "origin"); s = field($0, "seq") + 0; t = payload($0) + 0; msgs++
      k = file SUBSEP o
      if (k in last && s <= last[k]) { bad++; if (bad < 10) print "repeat or reorder: " FILENAME " origin " o " seq " s " after " last[k] }
      if (k in last && s > last[k] + 1) { holes[++nh] = k; hfirst[nh] = last[k] + 1; hlast[nh] = s - 1; hname[nh] = FILENAME }
      if (o in off && off[o] != t - s) { bad++; if (bad < 10) print "line " t " of " o " has seq " s " in " FILENAME }
      off[o] = t - s; last[k] = s
    }
    kind($0) == "gap" {
      g++; k = file SUBSEP field($0, "origin")
      gk[g] = k; gf[g] = field($0, "first_seq") + 0; gl[g] = field($0, "last_seq") + 0
    }
    END {
      for (h = 1; h <= nh; h++) {
        for (s = hfirst[h]; s <= hlast[h]; s++) {
          covered = 0
          for (x = 1; x <= g; x++) if (gk[x] == holes[h] && gf[x] <= s && s <= gl[x]) { covered = 1; break }
          if (!covered) { bad++; if (bad < 10) print "silent hole: " hname[h] " seq " s; break }
        }
      }
      printf "checked %d messages, %d gap events, %d holes\n", msgs, g, nh
      exit bad > 0
    }' "$DIR"/h*.out
}

all_hosts() { seq 0 $((HOSTS - 1)) | tr '\n' ' '; }
except() { all_hosts | tr ' ' '\n' | grep -vxF "$1" | grep . | tr '\n' ' '; }

# --- the scenarios ------------------------------------------------------
make_lan
log "lab: $HOSTS hosts on a bridge, loss $LOSS% at every input, tbf $RATE, netem: $NETEM, keepalive ${KA}s"
ALL=$(all_hosts)

# 1. Discovery, no PEER.
for i in $ALL; do
  if [ "$DISCOVER" = 1 ]; then
    start "$i" --discover
  elif [ "$i" = 0 ]; then
    start "$i"
  else
    start "$i" "$(addr 0):7117"
  fi
done
wait_for "discovery: every node sees $((HOSTS - 1)) members" 30 group_knows "$ALL" $((HOSTS - 1))
log "1. discovery: every node knows the other $((HOSTS - 1))"

# 2. Delivery through loss and rate caps.
for i in $ALL; do send "$i" 300; done
FROM_START=1 wait_for "delivery: every node gets every other node's 300 lines" 60 all_got "$ALL" "$ALL"
if grep -q '"gap"' "$DIR"/h*.out; then fail "a gap was reported with every member up"; fi
log "2. delivery: 300 lines from each node reached every other, no gap"

# 3. A link cut: host 1's bridge port goes down (no FIN, no reset).
K=1
NB=$(neighbours_of $K | tr '\n' ' ')
[ -n "$NB" ] || fail "h$K has no neighbours to notice the cut"
declare -A BEFORE
for i in $NB; do BEFORE[$i]=$(peer_downs "$i" $K); done
cut_at=$(now_ms)
ip -n "$SW" link set "p$K" down
for i in $NB; do
  wait_for "h$i notices the cut link to h$K" $(( 3 * KA + 5 )) more_peer_downs "$i" $K "${BEFORE[$i]}"
  took=$(( $(now_ms) - cut_at ))
  [ "$took" -le $(( 3 * KA * 1000 + 1500 )) ] || fail "h$i noticed the cut after ${took} ms (3 x keepalive = $((3 * KA)) s)"
  log "3. h$i dropped h$K ${took} ms after the cut"
done
REST=$(except $K)
for i in $REST; do send "$i" 100; done
wait_for "lines route around the cut host" 60 all_got "$REST" "$REST"
log "3. lines sent during the cut reached every other node"
ip -n "$SW" link set "p$K" up
wait_for "h$K rejoins after the link is back" 30 group_knows "$ALL" $((HOSTS - 1))
log "3. link back: the group is whole"

# 4. A host killed and restarted from its peer cache alone.
J=2
kill -KILL "${PID[$J]}"; wait "${PID[$J]}" 2>/dev/null || true; PID[$J]=""
eval "exec ${FD[$J]}>&-"
[ -s "$DIR/h$J.cache" ] || fail "h$J left no peer cache at $DIR/h$J.cache"
REST=$(except $J)
wait_for "the others see h$J down" $(( 3 * KA + 10 )) group_knows "$REST" $((HOSTS - 2))
for i in $REST; do send "$i" 50; done
start "$J"   # no PEER, no --discover: only the cache
wait_for "h$J rejoins from its cache" 30 group_knows "$ALL" $((HOSTS - 1))
send "$J" 20
wait_for "the restarted h$J's lines reach everyone" 30 all_got "$ALL" "$J"
log "4. h$J killed, restarted with its cache only, rejoined; its lines reach everyone"

# 5. A partition into two halves, then healed.
HALF=$(( HOSTS / 2 ))
A=$(seq 0 $((HALF - 1)) | tr '\n' ' ')
B=$(seq "$HALF" $((HOSTS - 1)) | tr '\n' ' ')
part_at=$(now_ms)
partition 0 "$HALF"
wait_for "each half sees the other go" $(( 3 * KA + 15 )) \
  group_knows "$A" $((HALF - 1))
wait_for "each half sees the other go" 5 group_knows "$B" $((HOSTS - HALF - 1))
for i in $ALL; do send "$i" 100; done
wait_for "lines inside each half" 60 all_got "$A" "$A"
wait_for "lines inside each half" 60 all_got "$B" "$B"
left=$(( PART_SECS * 1000 - ($(now_ms) - part_at) ))
[ "$left" -gt 0 ] && sleep "$(( left / 1000 )).$(( left % 1000 / 100 ))"   # the partition's length is the scenario
log "5. partitioned for $(( $(now_ms) - part_at )) ms; healing"
heal_at=$(now_ms)
heal
wait_for "the group is whole again after the heal" 30 group_knows "$ALL" $((HOSTS - 1))
log "5. whole again $(( $(now_ms) - heal_at )) ms after the heal"
for i in $ALL; do send "$i" 20; done
wait_for "lines after the heal reach everyone" 60 all_got "$ALL" "$ALL"
log "5. lines sent after the heal reached everyone"

# Over the whole run: exactly once, in order, nothing skipped silently.
check_invariants || fail "delivery rules broken (above)"
log "lab: passed"
