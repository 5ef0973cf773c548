#!/usr/bin/env bash
# Starts a private PostgreSQL for the bench, set up as the README's
# "Several replicas on PostgreSQL" asks (autovacuum on, synchronous commit,
# shared_buffers that hold the fleet's hot tables, WAL segments kept for
# recycling), beside whatever server the machine already runs, and creates
# the database attestd_bench in it. It leaves the kernel's writeback
# settings alone (the README's vm.dirty_background_bytes is the host's to
# choose); the bench records them with each run.
#
#   crates/attestd-bench/scripts/bench-postgres.sh start [DIR] [PORT] [SHARED_BUFFERS]
#   crates/attestd-bench/scripts/bench-postgres.sh stop  [DIR]
#
# Defaults: DIR /tmp/attestd-bench-pg, PORT 5433, SHARED_BUFFERS 1GB. The
# server runs as the `postgres` OS user when started as root (PostgreSQL
# refuses root), binds 127.0.0.1 only and trusts local connections: a
# throwaway for measuring, never a deployment.
set -euo pipefail
cmd=${1:-start}
dir=${2:-/tmp/attestd-bench-pg}
port=${3:-5433}
buffers=${4:-1GB}
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
[ -x "$bin/pg_ctl" ] || { echo "no PostgreSQL server binaries (set PG_BIN)" >&2; exit 1; }
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
  start)
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown postgres "$dir"
      as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
      cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_buffers = $buffers
max_wal_size = 4GB
min_wal_size = 2GB
CONF
    fi
    as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w start >/dev/null
    psql -h 127.0.0.1 -p "$port" -U postgres -qc 'CREATE DATABASE attestd_bench' 2>/dev/null || true
    echo "postgres://postgres@127.0.0.1:$port/attestd_bench"
    ;;
  stop)
    as_pg "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    ;;
  *)
    echo "usage: $0 start|stop [DIR] [PORT] [SHARED_BUFFERS]" >&2
    exit 2
    ;;
esac
