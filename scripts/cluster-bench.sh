#!/usr/bin/env bash
# The README's cluster figures, measured on this machine (the 3 NATS servers,
# the 2 nodes and the load generators all share its cores):
#   1. ingest of BENCH_PERSONS (default 1000000) persons through the change
#      stream: until JetStream acknowledged all, and until both nodes applied all
#   2. Search by email on node a, closed loop -c 16, BENCH_SECS (default 10) s:
#      cluster mode, then the same store in single-node mode, two rounds
#   3. apply lag a -> b under 1000 opt-outs/s through a for 30 s
#      (build/services/idlookup-bench/idlookup-clusterlag)
# Uses scripts/cluster.sh's topology and ports; leaves the cluster running
# (scripts/cluster.sh stop).  Work dir: BENCH_DIR (default /tmp/idl-cluster-bench).
# BENCH_PARTS (default "1 2 3") picks the parts; 2 and 3 need part 1's
# cluster from an earlier run when 1 is left out.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
n=${BENCH_PERSONS:-1000000}
secs=${BENCH_SECS:-10}
dir=${BENCH_DIR:-/tmp/idl-cluster-bench}
nats_port=${CLUSTER_NATS_PORT:-4222}
node_port=${CLUSTER_NODE_PORT:-7421}
nats="nats://127.0.0.1:$nats_port,nats://127.0.0.1:$((nats_port + 1)),nats://127.0.0.1:$((nats_port + 2))"
a=tcp://127.0.0.1:$node_port
b=tcp://127.0.0.1:$((node_port + 1))
state=cluster-demo
ninja -C build >/dev/null
cli=$here/build/services/idlookup/idlookup
daemon=${CLUSTER_DAEMON:-$here/build/services/idlookupd/idlookupd}
bench=$here/build/services/idlookup-bench/idlookup-bench
lagtool=$here/build/services/idlookup-bench/idlookup-clusterlag
mkdir -p "$dir"
people=$dir/people-$n.ndjson
[[ -f $people ]] || { echo "bench: generating $n persons"; $cli gen --count "$n" --seed 7 > "$people"; }

parts=${BENCH_PARTS:-1 2 3}
if [[ " $parts " == *" 1 "* ]]; then
  scripts/cluster.sh stop >/dev/null
  rm -rf "$state"/node-* "$state"/nats-* "$state"/loaded
  CLUSTER_LOAD=0 scripts/cluster.sh >/dev/null
fi
# shellcheck disable=SC1091
. "$state/secrets.env"

cluster_field() { # URL FIELD: a field of Stats.cluster, or persons
  $cli call --url "$1" --key "$ADMIN_KEY" idlookup.v1.Admin/Stats '{}' |
    python3 -c "import json,sys; b=json.load(sys.stdin)['body']; print(b['persons'] if '$2'=='persons' else b['cluster']['$2'])"
}

if [[ " $parts " == *" 1 "* ]]; then
echo "== 1. ingest of $n persons through the change stream into 2 nodes"
t0=$(date +%s.%N)
$cli ingest --nats "$nats" --quiet "$people" > "$dir/ingest.json"
t1=$(date +%s.%N)
while :; do
  done_nodes=0
  for u in $a $b; do
    [[ $(cluster_field "$u" lag) == 0 && $(cluster_field "$u" applied_seq) == $(cluster_field "$u" stream_seq) ]] &&
      done_nodes=$((done_nodes + 1))
  done
  [[ $done_nodes == 2 ]] && break
  sleep 0.2
done
t2=$(date +%s.%N)
cat "$dir/ingest.json"
echo "persons on a: $(cluster_field $a persons), on b: $(cluster_field $b persons)"
python3 -c "print('acknowledged by JetStream after %.1f s; applied by both nodes after %.1f s (%.0f persons/s)' % ($t1-$t0, $t2-$t0, $n/($t2-$t0)))"
fi

restart_a() { # cluster|single
  kill "$(cat $state/node-a.pid)"
  while kill -0 "$(cat $state/node-a.pid)" 2>/dev/null; do sleep 0.1; done
  local extra=()
  [[ $1 == cluster ]] && extra=(--nats "$nats" --node a)
  nohup $daemon --data "$state/node-a/data" --keys "$state/keys" --listen "$a" \
    --fingerprint-key "$state/fingerprint.key" "${extra[@]}" ${CLUSTER_NODE_FLAGS:-} \
    > "$state/node-a.log" 2>&1 &
  echo $! > "$state/node-a.pid"
  for _ in $(seq 1 300); do
    $cli call --url "$a" --wait-ms 300 grpc.health.v1.Health/Check '{}' 2>/dev/null |
      grep -q '"status": "SERVING"' && return 0
    sleep 0.1
  done
  echo "bench: node a did not come back" >&2
  exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Waits (at most 120 s) until the machine is nearly idle: after a cluster-mode
# run node b still files node a's query-log entries, and a single-mode run
# started meanwhile would pay for them.
wait_quiet() {
  local i a b
  for i in $(seq 1 120); do
    a=$(awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    read -r i0 t0 <<< "$a"
    read -r i1 t1 <<< "$b"
    (( (i1 - i0) * 100 >= 90 * (t1 - t0) )) && return 0
  done
}

if [[ " $parts " == *" 2 "* ]]; then
echo "== 2. Search on node a, closed loop -c 16, ${secs} s: cluster mode vs single-node mode"
echo "   (CPU/req: node a's own CPU time per Search, from /proc: the read path's cost"
echo "    without the NATS servers and node b that share this machine)"
tick=$(getconf CLK_TCK)
for round in $(seq 1 "${BENCH_ROUNDS:-3}"); do
  for mode in ${BENCH_ORDER:-cluster single}; do
    restart_a $mode
    wait_quiet
    pid=$(cat "$state/node-a.pid")
    $bench --url "$a" --key "$LOOKUP_KEY" --method search --data "$people" -c 16 -z 2 >/dev/null 2>&1
    c0=$(cpu_ticks "$pid")
    out=$($bench --url "$a" --key "$LOOKUP_KEY" --method search --data "$people" -c 16 \
      -z "$secs" --format json 2>/dev/null)
    c1=$(cpu_ticks "$pid")
    python3 -c "
import json,sys
r=json.loads(sys.argv[1]); n=r['throughput_rps']*$secs
print('round $round  %-7s  %6.0f Search/s  %5.1f us CPU/req' % ('$mode', r['throughput_rps'], ($c1-$c0)/$tick*1e6/n))" "$out"
  done
done
restart_a cluster
fi

[[ " $parts " == *" 3 "* ]] || exit 0
echo "== 3. apply lag a -> b under 1000 opt-outs/s through a"
grep -o -m 200000 '"emails":\["[^"]*"' "$people" | cut -d'"' -f4 > "$dir/emails.txt"
$lagtool --a "$a" --b "$b" --key "$ADMIN_KEY" --emails "$dir/emails.txt" --rate 1000 --seconds 30
