#!/usr/bin/env bash
# Is suppression visible in latency?  (API.md §5: a suppressed person yields
# exactly what an absent one yields -- in time too.)
#
# Loads 3 x N generated persons' worth of classes into a fresh store:
#   suppressed  ingested, then opted out by email
#   unknown     never ingested
#   visible     ingested
# then runs idlookup-timing with Validate and Search by email (and Search by
# name, reported apart: names are never suppressed keys): one request
# per class in turn (shuffled), one in flight, so drift and noise fall on
# every class alike; reports each class's median and the difference
# suppressed - unknown, against the target: within 2 us or 1%.
#
#   scripts/privacy-timing.sh                       N=2000 ROUNDS=15000
#   BUILD=old/build TIMING=build/services/idlookup-bench/idlookup-timing \
#     scripts/privacy-timing.sh                     (an older daemon, this tool)
# Exit 0 when Validate and Search by email are within the target, 1 otherwise, 2 on a setup
# failure.  This is a measurement, not a unit test: run it on a quiet machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=${BUILD:-$here/build}
n=${N:-2000}
rounds=${ROUNDS:-15000}
port=${PORT:-7497}
url="tcp://127.0.0.1:$port"
cli=$build/services/idlookup/idlookup
daemon=$build/services/idlookupd/idlookupd
timing=${TIMING:-$build/services/idlookup-bench/idlookup-timing}
for b in "$cli" "$daemon" "$timing"; do
  [[ -x $b ]] || { echo "privacy-timing: $b not built" >&2; exit 2; }
done

tmp=$(mktemp -d)
dpid=
cleanup() {
  [[ -n $dpid ]] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# Persons with an email, split three ways.
"$cli" gen --count $((3 * n + n / 2)) --seed 20261202 > "$tmp/gen.ndjson"
grep '"emails"' "$tmp/gen.ndjson" | head -n $((3 * n)) > "$tmp/all.ndjson" || true
head -n "$n" "$tmp/all.ndjson" > "$tmp/suppressed.ndjson"
sed -n "$((n + 1)),$((2 * n))p" "$tmp/all.ndjson" > "$tmp/visible.ndjson"
tail -n "$n" "$tmp/all.ndjson" > "$tmp/unknown.ndjson"
cat "$tmp/suppressed.ndjson" "$tmp/visible.ndjson" > "$tmp/stored.ndjson"
"$cli" ingest --data "$tmp/data" --quiet "$tmp/stored.ndjson" > /dev/null
key=$("$cli" keys add --file "$tmp/keys" --customer timing --scopes lookup,privacy --rate 1000000 2>/dev/null)

"$daemon" --data "$tmp/data" --keys "$tmp/keys" --listen "$url" 2> "$tmp/daemon.log" &
dpid=$!
for _ in $(seq 1 100); do
  "$cli" call --url "$url" --wait-ms 200 grpc.health.v1.Health/Check '{}' > /dev/null 2>&1 && break
  sleep 0.1
done

echo "privacy-timing: opting out $n persons" >&2
python3 -c '
import json, sys
for line in open(sys.argv[1]):
    print(json.dumps({"email": json.loads(line)["emails"][0]}))
' "$tmp/suppressed.ndjson" |
  xargs -d '\n' -P 4 -n 1 "$cli" call --url "$url" --key "$key" idlookup.v1.Privacy/OptOut > /dev/null

for c in suppressed unknown visible; do
  python3 -c '
import json, sys
with open(sys.argv[2], "w") as names:
    for line in open(sys.argv[1]):
        r = json.loads(line)
        print(r["emails"][0])
        print(r["first_name"] + "|" + r["last_name"], file=names)
' "$tmp/$c.ndjson" "$tmp/$c.names" > "$tmp/$c.emails"
done
classes=(suppressed="$tmp/suppressed.emails" unknown="$tmp/unknown.emails" visible="$tmp/visible.emails")
fail=0
names=(suppressed="$tmp/suppressed.names" unknown="$tmp/unknown.names" visible="$tmp/visible.names")
for m in validate search name; do
  echo "privacy-timing: $m, $rounds rounds" >&2
  if [[ $m == name ]]; then
    args=(--method search "${names[@]}")
  else
    args=(--method "$m" "${classes[@]}")
  fi
  "$timing" --url "$url" --key "$key" -n "$rounds" "${args[@]}" > "$tmp/$m.tsv" ||
    { echo "privacy-timing: idlookup-timing failed" >&2; exit 2; }
done

python3 - "$tmp" "$n" "$rounds" <<'EOF2'
import sys
tmp, n, rounds = sys.argv[1], sys.argv[2], sys.argv[3]
print(f"{n} persons per class; {rounds} rounds of one request per class, interleaved in a "
      "shuffled order, one request in flight")
print("| method | class | median (us) | mean (us) | p10-p90 (us) |")
print("|---|---|---|---|---|")
ok = True
diffs = []
for m in ("validate", "search", "name"):
    rows = {}
    for line in open(f"{tmp}/{m}.tsv").read().splitlines()[1:]:
        c, med, mean, p10, p90, _ = line.split("\t")
        rows[c] = (float(med), float(mean), float(p10), float(p90))
        print(f"| {m} | {c} | {float(med):.1f} | {float(mean):.1f} | {float(p10):.1f}-{float(p90):.1f} |")
    d = rows["suppressed"][0] - rows["unknown"][0]
    rel = d / rows["unknown"][0] * 100
    within = abs(d) < 2.0 or abs(rel) < 1.0
    if m != "name":  # names are never suppressed keys: reported, not held to the target
        ok &= within
    diffs.append(f"{m}: suppressed - unknown = {d:+.1f} us ({rel:+.1f}%) in the median: "
                 f"{'within' if within else 'OUTSIDE'} the target (< 2 us or < 1%)")
print()
print("\n".join(diffs))
sys.exit(0 if ok else 1)
EOF2
