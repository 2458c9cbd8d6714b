#!/bin/sh
# Starts idlookupd in the container: single-node, or a cluster node when
# IDL_NATS lists the JetStream servers.  The node name defaults to the
# container's hostname (12 hex digits under Docker: unique per replica, and a
# valid [a-z0-9-]{1,32} name), so `docker compose up --scale node=N` works.
set -eu
if [ -n "${IDL_NATS:-}" ]; then
  exec idlookupd --data /data --keys /etc/idlookup/keys --listen tcp://0.0.0.0:7411 \
    --nats "$IDL_NATS" --node "${IDL_NODE:-$(hostname)}" "$@"
fi
exec idlookupd --data /data --keys /etc/idlookup/keys --listen tcp://0.0.0.0:7411 "$@"
