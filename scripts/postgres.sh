#!/usr/bin/env bash
# Start a local PostgreSQL with a test database for churnguard and print its SQLAlchemy URL.
#
#   export CHURNGUARD_TEST_POSTGRES_URL="$(bash scripts/postgres.sh)"
#
# Installs PostgreSQL from Debian's packages when it is missing, starts the newest installed
# cluster, and creates the role and database (names below, overridable by environment). Safe to
# run again: whatever already exists is left as it is (the role's password is reset). Progress goes
# to stderr; stdout carries only the URL. Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

PG_USER="${CHURNGUARD_PG_USER:-churnguard}"
PG_PASSWORD="${CHURNGUARD_PG_PASSWORD:-churnguard}"
PG_DB="${CHURNGUARD_PG_DB:-churnguard_test}"
CLUSTER="${CHURNGUARD_PG_CLUSTER:-main}"

log() { echo "postgres.sh: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

# psql as the superuser over the local socket; -v ON_ERROR_STOP makes SQL errors fatal.
psql_admin() {
    as_postgres psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --port "$PORT" "$@"
}

install_postgres() {
    if command -v pg_ctlcluster >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1
    then
        return
    fi
    log "installing PostgreSQL from the Debian packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

# the newest PostgreSQL whose server is installed (a purged version can leave its folder behind)
newest_version() {
    local bin
    for bin in /usr/lib/postgresql/*/bin/postgres; do
        basename "$(dirname "$(dirname "$bin")")"
    done | sort -V | tail -n 1
}

# pg_lsclusters -h prints: version cluster port status owner data-dir log-file
cluster_field() {
    pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" -v f="$1" '$1 == v && $2 == c {print $f}'
}

start_cluster() {
    if [ -z "$(cluster_field 2)" ]; then
        log "creating cluster $VERSION/$CLUSTER"
        as_root pg_createcluster "$VERSION" "$CLUSTER" >&2
    fi
    if [ "$(cluster_field 4)" != "online" ]; then
        log "starting cluster $VERSION/$CLUSTER"
        # Without systemd (containers, CI) pg_ctlcluster runs pg_ctl itself.
        as_root pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
    fi
    PORT="$(cluster_field 3)"
}

wait_until_ready() {
    for _ in $(seq 1 60); do
        if pg_isready --quiet --host 127.0.0.1 --port "$PORT"; then
            return
        fi
        sleep 0.5
    done
    log "PostgreSQL $VERSION/$CLUSTER did not accept connections on 127.0.0.1:$PORT within 30 s"
    exit 1
}

create_role_and_database() {
    psql_admin -v user="$PG_USER" -v password="$PG_PASSWORD" -d postgres <<'SQL'
SELECT format(
    CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user')
         THEN 'ALTER ROLE %I WITH LOGIN PASSWORD %L'
         ELSE 'CREATE ROLE %I WITH LOGIN PASSWORD %L' END,
    :'user', :'password') \gexec
SQL
    psql_admin -v user="$PG_USER" -v db="$PG_DB" -d postgres <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
-- a throwaway test database: durability is not worth the waiting
SELECT format('ALTER DATABASE %I SET synchronous_commit = off', :'db') \gexec
SQL
}

install_postgres
VERSION="$(newest_version)"
start_cluster
wait_until_ready
create_role_and_database
log "ready: database $PG_DB on 127.0.0.1:$PORT (PostgreSQL $VERSION)"
echo "postgresql+psycopg://${PG_USER}:${PG_PASSWORD}@127.0.0.1:${PORT}/${PG_DB}"
