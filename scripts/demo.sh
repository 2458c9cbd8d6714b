#!/usr/bin/env bash
# Installs what is missing, builds, creates demo keys, loads a generated demo
# set and starts idlookupd on tcp://127.0.0.1:7411 in the background.
#   DEMO_COUNT (default 10000) persons; state in ./demo (git-ignored).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
count=${DEMO_COUNT:-10000}
url=${DEMO_URL:-tcp://127.0.0.1:7411}

scripts/setup.sh
[[ -f build/build.ninja ]] || meson setup build >/dev/null
ninja -C build >/dev/null
cli=build/services/idlookup/idlookup
daemon=build/services/idlookupd/idlookupd

mkdir -p demo
chmod 700 demo
if [[ -f demo/idlookupd.pid ]] && kill -0 "$(cat demo/idlookupd.pid)" 2>/dev/null; then
  echo "demo: stopping the running daemon"
  kill "$(cat demo/idlookupd.pid)"
  while kill -0 "$(cat demo/idlookupd.pid)" 2>/dev/null; do sleep 0.1; done
fi

if [[ ! -f demo/keys ]]; then
  # The secrets are printed once by `keys add`; the demo keeps them in a
  # git-ignored 0600 file so the README's tour can use them.
  umask 077
  {
    echo "ADMIN_KEY=$($cli keys add --file demo/keys --customer demo-admin --scopes admin,lookup,privacy --rate 100000 2>/dev/null)"
    echo "LOOKUP_KEY=$($cli keys add --file demo/keys --customer demo-lookup --scopes lookup --rate 100000 2>/dev/null)"
    echo "PRIVACY_KEY=$($cli keys add --file demo/keys --customer demo-privacy --scopes privacy --rate 1000 2>/dev/null)"
  } > demo/secrets.env
fi

if [[ ! -d demo/data ]]; then
  echo "demo: generating $count persons and loading them"
  $cli gen --count "$count" --seed 42 > demo/people.ndjson
  $cli ingest --data demo/data --quiet demo/people.ndjson 2> demo/ingest.log
fi

nohup $daemon --data demo/data --keys demo/keys --listen "$url" > demo/idlookupd.log 2>&1 &
echo $! > demo/idlookupd.pid
for _ in $(seq 1 100); do
  if $cli call --url "$url" --wait-ms 200 grpc.health.v1.Health/Check '{}' >/dev/null 2>&1; then
    echo "demo: idlookupd (pid $(cat demo/idlookupd.pid)) serving on $url"
    echo "demo: keys in demo/secrets.env, e.g.:"
    echo "  . demo/secrets.env; $cli call --url $url --key \$ADMIN_KEY idlookup.v1.Admin/Stats '{}'"
    exit 0
  fi
  sleep 0.1
done
echo "demo: the daemon did not come up; see demo/idlookupd.log" >&2
exit 1
