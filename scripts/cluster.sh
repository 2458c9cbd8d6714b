#!/usr/bin/env bash
# The cluster demo (CLUSTER.md): 3 nats-server with JetStream on 127.0.0.1
# ports, 2 idlookupd nodes joined to them, the demo data loaded through the
# change stream (`idlookup ingest --nats`), then the URLs and keys printed.
#   scripts/cluster.sh          start (or restart) everything, in the background
#   scripts/cluster.sh stop     stop the nodes and the servers
# DEMO_COUNT (default 10000) persons (CLUSTER_LOAD=0: none); state in
# ./cluster-demo (git-ignored).
# Ports: NATS clients 4222-4224 (CLUSTER_NATS_PORT), routes 6222-6224 (CLUSTER_ROUTE_PORT),
# nodes tcp://127.0.0.1:7421 and :7422 (CLUSTER_NODE_PORT); CLUSTER_NODE_FLAGS: more
# idlookupd flags for both nodes; CLUSTER_DAEMON: another idlookupd binary (before/after pairs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
count=${DEMO_COUNT:-10000}
nats_port=${CLUSTER_NATS_PORT:-4222}
route_port=${CLUSTER_ROUTE_PORT:-$((nats_port + 2000))}
node_port=${CLUSTER_NODE_PORT:-7421}
state=cluster-demo
cli=build/services/idlookup/idlookup
daemon=${CLUSTER_DAEMON:-build/services/idlookupd/idlookupd}

stop_pidfile() {
  local f=$1
  if [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null; then
    kill "$(cat "$f")"
    while kill -0 "$(cat "$f")" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$f"
}

stop_all() {
  for n in a b; do stop_pidfile "$state/node-$n.pid"; done
  for i in 1 2 3; do stop_pidfile "$state/nats-$i.pid"; done
}

if [[ "${1:-}" == "stop" ]]; then
  stop_all
  echo "cluster: stopped"
  exit 0
fi

scripts/setup.sh --test >/dev/null
[[ -f build/build.ninja ]] || meson setup build >/dev/null
ninja -C build >/dev/null
mkdir -p "$state"
chmod 700 "$state"
stop_all

nats_urls=""
routes=""
for i in 1 2 3; do
  nats_urls+="${nats_urls:+,}nats://127.0.0.1:$((nats_port + i - 1))"
  routes+="${routes:+,}nats://127.0.0.1:$((route_port + i - 1))"
done
for i in 1 2 3; do
  nohup nats-server -js -sd "$state/nats-$i" -a 127.0.0.1 -p $((nats_port + i - 1)) -n "s$i" \
    --cluster_name idl --cluster "nats://127.0.0.1:$((route_port + i - 1))" --routes "$routes" \
    > "$state/nats-$i.log" 2>&1 &
  echo $! > "$state/nats-$i.pid"
done

if [[ ! -f $state/keys ]]; then
  umask 077
  {
    echo "ADMIN_KEY=$($cli keys add --file $state/keys --customer demo-admin --scopes admin,lookup,privacy --rate 100000 2>/dev/null)"
    echo "LOOKUP_KEY=$($cli keys add --file $state/keys --customer demo-lookup --scopes lookup --rate 100000 2>/dev/null)"
    echo "PRIVACY_KEY=$($cli keys add --file $state/keys --customer demo-privacy --scopes privacy --rate 1000 2>/dev/null)"
  } > "$state/secrets.env"
  umask 022
fi

# One fingerprint secret for every node, so analytics over the stream counts
# a repeated identifier once whichever node it reached.
node_urls=""
for n in a b; do
  port=$node_port
  [[ $n == b ]] && port=$((node_port + 1))
  node_urls+="${node_urls:+,}tcp://127.0.0.1:$port"
  mkdir -p "$state/node-$n"
  nohup $daemon --data "$state/node-$n/data" --keys "$state/keys" --listen "tcp://127.0.0.1:$port" \
    --fingerprint-key "$state/fingerprint.key" --nats "$nats_urls" --node "$n" \
    ${CLUSTER_NODE_FLAGS:-} > "$state/node-$n.log" 2>&1 &
  echo $! > "$state/node-$n.pid"
  # The first node creates the fingerprint key: the second must find it.
  [[ $n == a ]] && for _ in $(seq 1 100); do [[ -f $state/fingerprint.key ]] && break; sleep 0.1; done
done

serving() {
  $cli call --url "$1" --wait-ms 300 grpc.health.v1.Health/Check '{}' 2>/dev/null |
    grep -q '"status": "SERVING"'
}
for url in ${node_urls//,/ }; do
  for _ in $(seq 1 300); do serving "$url" && break; sleep 0.1; done
  serving "$url" || { echo "cluster: $url did not become SERVING; see $state/node-*.log" >&2; exit 1; }
done

if [[ ! -f $state/loaded && ${CLUSTER_LOAD:-1} != 0 ]]; then
  echo "cluster: generating $count persons and loading them through the change stream"
  $cli gen --count "$count" --seed 42 > "$state/people.ndjson"
  $cli ingest --nats "$nats_urls" --quiet "$state/people.ndjson" > "$state/ingest.json" 2> "$state/ingest.log"
  touch "$state/loaded"
  cat "$state/ingest.json"
fi

echo "cluster: NATS JetStream  $nats_urls"
echo "cluster: nodes           $node_urls   (a, b)"
echo "cluster: keys in $state/secrets.env, e.g.:"
echo "  . $state/secrets.env; $cli call --url $node_urls --key \$ADMIN_KEY idlookup.v1.Admin/Stats '{}'"
echo "  $cli analytics --nats $nats_urls"
echo "cluster: stop with scripts/cluster.sh stop"
