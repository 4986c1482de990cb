#!/usr/bin/env bash
# Start (or reuse) a throwaway PostgreSQL cluster for strata's tests (DESIGN §9).
#
#   eval "$(bash scripts/pg.sh)"        # then: cargo test --release --test meta_postgres
#
# Idempotent: installs PostgreSQL only when no initdb is found under
# /usr/lib/postgresql/*/bin, creates the cluster only when DIR has none, starts it only
# when it is not running. Prints `export STRATA_TEST_PG_URL=...` and
# `export STRATA_TEST_PG_DATADIR=...` on stdout; everything else goes to stderr.
#
# Environment:
#   STRATA_PG_DIR   cluster directory (default /tmp/strata-pg; owned by the postgres user)
#   STRATA_PG_PORT  TCP port on 127.0.0.1 (default 55432)
#
# The cluster trusts every local connection (-A trust) and runs with fsync=off: it is
# for tests only. It also gets a role `strata` with password `strata` and a database
# `strata` owned by it, matching the README's settings example.
set -euo pipefail

DIR="${STRATA_PG_DIR:-/tmp/strata-pg}"
PORT="${STRATA_PG_PORT:-55432}"

log() { echo "pg.sh: $*" >&2; }

find_bindir() {
    # The highest installed major version that has an initdb.
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && echo "$d"
    done | sort -V | tail -n1
}

BINDIR="$(find_bindir)"
if [ -z "$BINDIR" ]; then
    log "PostgreSQL not found; installing it with apt-get"
    if [ "$(id -u)" -ne 0 ]; then
        log "need root to install PostgreSQL (apt-get install -y postgresql)"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y postgresql >&2
    BINDIR="$(find_bindir)"
    if [ -z "$BINDIR" ]; then
        log "installed postgresql but found no initdb under /usr/lib/postgresql/*/bin"
        exit 1
    fi
fi
log "using $BINDIR"

# Run a command as the postgres user (initdb and the server refuse to run as root).
as_pg() {
    if [ "$(id -un)" = "postgres" ]; then
        "$@"
    elif [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        log "run this script as root or as the postgres user"
        exit 1
    fi
}

if [ ! -d "$DIR" ]; then
    mkdir -p "$DIR"
fi
if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$DIR"
    chmod 700 "$DIR"
fi

if [ ! -f "$DIR/PG_VERSION" ]; then
    log "creating cluster in $DIR"
    as_pg "$BINDIR/initdb" -D "$DIR" -A trust -U postgres --no-sync >&2
fi

# Server settings live in DIR/strata.conf (included from postgresql.conf), so a plain
# `pg_ctl -D DIR start` (as the restart test does) comes back on the same port.
if ! grep -q "^include_if_exists = 'strata.conf'" "$DIR/postgresql.conf"; then
    echo "include_if_exists = 'strata.conf'" | as_pg tee -a "$DIR/postgresql.conf" >/dev/null
fi
as_pg tee "$DIR/strata.conf" >/dev/null <<EOF
# written by strata's scripts/pg.sh
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
fsync = off
max_connections = 300
EOF

running() { as_pg "$BINDIR/pg_ctl" -D "$DIR" status >/dev/null 2>&1; }

if running; then
    log "cluster in $DIR already running"
else
    log "starting cluster on 127.0.0.1:$PORT"
    as_pg "$BINDIR/pg_ctl" -D "$DIR" -l "$DIR/server.log" \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off" -w start >&2
fi

psql_admin() {
    as_pg "$BINDIR/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

# Wait until it accepts TCP connections (pg_ctl -w checks the socket directory).
for _ in $(seq 1 50); do
    if psql_admin -c "SELECT 1" >/dev/null 2>&1; then break; fi
    sleep 0.2
done
psql_admin -c "SELECT 1" >/dev/null

if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'strata'")" != "1" ]; then
    log "creating role strata"
    psql_admin -c "CREATE ROLE strata LOGIN PASSWORD 'strata'" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'strata'")" != "1" ]; then
    log "creating database strata"
    psql_admin -c "CREATE DATABASE strata OWNER strata" >&2
fi

echo "export STRATA_TEST_PG_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
echo "export STRATA_TEST_PG_DATADIR=$DIR"
