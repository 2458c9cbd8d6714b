#!/usr/bin/env bash
# Where a request's cost goes, per method: starts idlookupd on an existing
# store, runs idlookup-bench closed loop for each method in turn, and prints
# throughput, p50/p99, the daemon's CPU and context switches per request
# (perf stat on the daemon) and the bench's CPU per request (time(1)).
#   scripts/bench-cpu.sh DATA KEYS POOL [methods...]   (default: health search batch)
# DATA: a store made by `idlookup ingest`; KEYS: a key file whose first key
# has the lookup scope (`idlookup keys add --file KEYS ...` printed it: pass it
# as BENCH_KEY); POOL: NDJSON persons to search for.  Settings: BENCH_SECS
# (default 8), BENCH_PORT (7498), DAEMON (another idlookupd binary, for
# before/after pairs), DFLAGS (daemon flags), BFLAGS (bench flags).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data=$1 keys=$2 pool=$3; shift 3
(($#)) || set -- health search batch
secs=${BENCH_SECS:-8}
url=tcp://127.0.0.1:${BENCH_PORT:-7498}
key=${BENCH_KEY:?set BENCH_KEY to a key of KEYS with the lookup scope}
daemon=${DAEMON:-$here/build/services/idlookupd/idlookupd}
bench=$here/build/services/idlookup-bench/idlookup-bench
cli=$here/build/services/idlookup/idlookup
work=$(mktemp -d)
# shellcheck disable=SC2086
"$daemon" --data "$data" --keys "$keys" --listen "$url" ${DFLAGS:-} > "$work/daemon.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do
  $cli call --url "$url" --wait-ms 200 grpc.health.v1.Health/Check '{}' >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 3
for m in "$@"; do
  case $m in
    batch) extra=(--method batch --batch-size 100 -c 8) ;;
    miss) extra=(--method search --miss-ratio 1 -c 16) ;;
    *) extra=(--method "$m" -c 16) ;;
  esac
  perf stat -x, -e task-clock,context-switches -p "$pid" -o "$work/perf" -- sleep $((secs + 1)) &
  ps=$!
  # shellcheck disable=SC2086
  /usr/bin/time -f "%U %S" -o "$work/time" "$bench" --url "$url" --key "$key" --data "$pool" \
    --format json "${extra[@]}" -z "$secs" ${BFLAGS:-} > "$work/out.json" 2>/dev/null || true
  wait $ps || true
  python3 - "$m" "$work/out.json" "$work/perf" "$work/time" <<'PY'
import json, sys
d = json.load(open(sys.argv[2])); n = max(d['requests'], 1)
tc = cs = 0.0
for l in open(sys.argv[3]):
    p = l.split(',')
    if len(p) > 3 and p[2] == 'task-clock': tc = float(p[0])
    if len(p) > 3 and p[2] == 'context-switches': cs = float(p[0])
u, s = map(float, open(sys.argv[4]).read().split()[-2:])
lk = d.get('lookups_per_s')
print('%-7s %8.0f req/s%s p50 %5d us p99 %6d us | daemon %6.1f us/req %.2f switches/req | bench %6.1f us/req | errors %d'
      % (sys.argv[1], d['throughput_rps'], (' (%.0f lookups/s)' % lk) if lk else '', d['latency_us']['p50'],
         d['latency_us']['p99'], tc * 1000 / n, cs / n, (u + s) * 1e6 / n, n - d['codes'].get('OK', 0)))
PY
done
echo "daemon RSS after the runs: $(awk '/VmRSS/ {print int($2 / 1024)}' /proc/$pid/status) MiB"
