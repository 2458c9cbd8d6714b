#!/usr/bin/env bash
# The Performance section's measurements, side by side in one run on this
# machine (bench and daemon share it).  For each store size it generates the
# persons, times the ingest, starts idlookupd and runs:
#   1. Search by email, closed loop, -c 16, with the Health/Check baseline
#   1b. Health, Search, and Search for identifiers on record nowhere
#       (--miss-ratio 1), alone for 10 s each, with the CPU per request of
#       the daemon (from /proc) and of the bench (from time(1))
#   2. the default mix, open loop at 50% of its own closed-loop maximum, with
#      each method's latency; and Health, then Search, alone at that same
#      rate (the tail the transport and a lookup have by themselves there)
#   3. Batch of 100 email searches
#   4. Search and Batch with the query log on and off (--no-query-log),
#      alternately, three rounds (what logging costs each)
# and prints a table.  Sizes: BENCH_SIZES (default "1000000"), run length:
# BENCH_SECS (default 20).  Work dir: BENCH_DIR (default /tmp/idl-bench).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
sizes=${BENCH_SIZES:-1000000}
secs=${BENCH_SECS:-20}
dir=${BENCH_DIR:-/tmp/idl-bench}
port=${BENCH_PORT:-7499}
url=tcp://127.0.0.1:$port

scripts/setup.sh >/dev/null
[[ -f build/build.ninja ]] || meson setup build >/dev/null
ninja -C build >/dev/null
cli=$here/build/services/idlookup/idlookup
daemon=$here/build/services/idlookupd/idlookupd
bench=$here/build/services/idlookup-bench/idlookup-bench

mkdir -p "$dir"
cd "$dir"
rm -f keys
key=$($cli keys add --file keys --customer bench --scopes lookup,admin --rate 1000000 2>/dev/null)

pid=
stop() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap stop EXIT
start() { # extra daemon flags...
  "$daemon" --data "$data" --keys keys --listen "$url" "$@" > daemon.log 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    $cli call --url "$url" --wait-ms 200 grpc.health.v1.Health/Check '{}' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "daemon did not start" >&2; exit 1
}
# Waits until the daemon is idle (RocksDB's background compactions after a
# bulk load would otherwise land in the first measurement).
settle() {
  local a b
  for _ in $(seq 1 120); do
    a=$(awk '{print $14+$15}' /proc/$pid/stat); sleep 2; b=$(awk '{print $14+$15}' /proc/$pid/stat)
    (( b - a < 10 )) && return 0
  done
}
# CPU seconds (user + system) the daemon has used so far.
dcpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / t}' /proc/$pid/stat; }
# cpu_split OUT.json -- bench args: runs the bench alone and writes
# OUT.json plus OUT.cpu: daemon and bench CPU microseconds per request.
cpu_split() {
  local out=$1; shift
  local d0 d1
  d0=$(dcpu)
  /usr/bin/time -f "%U %S" -o "$out.time" $bench "$@" > "$out.json" || true
  d1=$(dcpu)
  python3 - "$out.json" "$out.time" "$d0" "$d1" > "$out.cpu" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); u, s = map(float, open(sys.argv[2]).read().split()[-2:])
n = max(d['requests'], 1)
print('%.1f %.1f' % ((float(sys.argv[4]) - float(sys.argv[3])) * 1e6 / n, (u + s) * 1e6 / n))
PY
}
j() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

printf '%-9s %-34s %s\n' "persons" "measurement" "result"
for n in $sizes; do
  data=$dir/data-$n
  if [[ ! -f people-$n.ndjson ]]; then $cli gen --count "$n" --seed 7 > people-$n.ndjson; fi
  head -n 50000 people-$n.ndjson > pool-$n.ndjson
  if [[ ! -d $data ]]; then
    /usr/bin/time -f "%e %M" -o ingest-$n.time $cli ingest --data "$data" --quiet people-$n.ndjson > ingest-$n.json
  fi
  read -r ingest_s ingest_kb < ingest-$n.time
  printf '%-9s %-34s %s s (peak RSS %d MiB)\n' "$n" "ingest" "$ingest_s" $((ingest_kb / 1024))

  start
  settle
  b0="--url $url --key $key --data pool-$n.ndjson --format json"
  b="$b0 --warmup 2"
  $bench $b --method search -c 16 -z "$secs" --baseline > search-$n.json
  printf '%-9s %-34s %s\n' "$n" "health baseline (c16)" "$(j search-$n.json "'%.0f req/s' % d['baseline_rps']")"
  printf '%-9s %-34s %s\n' "$n" "search email (c16, closed)" \
    "$(j search-$n.json "'%.0f req/s = %.2fx baseline, p50 %d us, p99 %d us, errors %d' % (d['throughput_rps'], d['ratio'], d['latency_us']['p50'], d['latency_us']['p99'], d['requests'] - d['codes'].get('OK', 0))")"
  # Where the CPU goes: each alone, daemon and bench CPU per request.
  # No warmup here: the CPU counted must be that of the requests counted.
  cpu_split health-cpu-$n $b0 --method health -c 16 -z 10
  cpu_split search-cpu-$n $b0 --method search -c 16 -z 10
  cpu_split miss-cpu-$n $b0 --method search --miss-ratio 1 -c 16 -z 10
  read -r hd hb < health-cpu-$n.cpu
  read -r sd sb < search-cpu-$n.cpu
  read -r md mb < miss-cpu-$n.cpu
  printf '%-9s %-34s %s\n' "$n" "CPU per request (daemon + bench)" \
    "health $hd + $hb us, search $sd + $sb us, search finding nobody $md + $mb us"
  printf '%-9s %-34s %s\n' "$n" "  req/s alone: health, search, miss" \
    "$(j health-cpu-$n.json "'%.0f' % d['throughput_rps']"), $(j search-cpu-$n.json "'%.0f' % d['throughput_rps']"), $(j miss-cpu-$n.json "'%.0f' % d['throughput_rps']")"
  $bench $b --mix search=70,validate=15,verify=10,batch=5 -c 16 -z "$secs" > mixmax-$n.json || true
  max=$(j mixmax-$n.json "int(d['throughput_rps'])")
  rate=$((max / 2))
  $bench $b --mix search=70,validate=15,verify=10,batch=5 -c 64 -z "$secs" --rate "$rate" --max-errors 0 > mix-$n.json || true
  printf '%-9s %-34s %s\n' "$n" "mix closed-loop max (c16)" "$max req/s"
  printf '%-9s %-34s %s\n' "$n" "mix open loop at 50% ($rate/s)" \
    "$(j mix-$n.json "'p50 %d us, p99 %d us, p99.9 %d us, errors %d' % (d['latency_us']['p50'], d['latency_us']['p99'], d['latency_us']['p999'], d['requests'] - d['codes'].get('OK', 0))")"
  printf '%-9s %-34s %s\n' "$n" "  each method's p50 / p99" \
    "$(j mix-$n.json "', '.join('%s %d / %d us' % (k, v['p50'], v['p99']) for k, v in d['method_latency_us'].items())")"
  for m in health search; do
    $bench $b --method $m -c 64 -z 10 --rate "$rate" > open-$m-$n.json || true
    printf '%-9s %-34s %s\n' "$n" "  $m alone, open loop at $rate/s" \
      "$(j open-$m-$n.json "'p50 %d us, p99 %d us, errors %d' % (d['latency_us']['p50'], d['latency_us']['p99'], d['requests'] - d['codes'].get('OK', 0))")"
  done
  cpu_split batch-$n $b0 --method batch --batch-size 100 -c 8 -z "$secs"
  read -r bd bb < batch-$n.cpu
  printf '%-9s %-34s %s\n' "$n" "batch of 100 searches (c8)" \
    "$(j batch-$n.json "'%.0f lookups/s (%.0f req/s), p99 %d us' % (d['lookups_per_s'], d['throughput_rps'], d['latency_us']['p99'])"); daemon CPU $(python3 -c "print('%.1f' % ($bd / 100))") us per lookup"
  rss=$(awk '/VmRSS/ {print int($2/1024)}' /proc/$pid/status)
  printf '%-9s %-34s %s MiB\n' "$n" "daemon RSS after the runs" "$rss"
  stop

  # The log's cost, with and without it alternately (three rounds of 10 s
  # each way): one pass each picked up this VM's drift between minutes as
  # often as the log's cost.
  for round in 1 2 3; do
    for mode in log nolog; do
      if [[ $mode == log ]]; then start; else start --no-query-log; fi
      settle
      $bench $b --method search -c 16 -z 10 > $mode-search-$n-$round.json
      $bench $b --method batch --batch-size 100 -c 8 -z 10 > $mode-batch-$n-$round.json
      stop
    done
  done
  python3 - "$n" <<'PY'
import json, statistics, sys
n = sys.argv[1]
def val(mode, what, key):
    return [json.load(open('%s-%s-%s-%d.json' % (mode, what, n, r)))[key] for r in (1, 2, 3)]
for what, key, unit in (('search', 'throughput_rps', 'req/s'), ('batch', 'lookups_per_s', 'lookups/s')):
    on, off = val('log', what, key), val('nolog', what, key)
    ratios = [a / b for a, b in zip(on, off)]
    print('%-9s %-34s %s' % (n, '%s, query log on / off' % what,
          '%.0f / %.0f %s (medians of 3 alternating rounds); with the log: %.1f%% (rounds: %s)'
          % (statistics.median(on), statistics.median(off), unit, 100 * statistics.median(ratios),
             ', '.join('%.0f%%' % (100 * x) for x in ratios))))
PY
done
