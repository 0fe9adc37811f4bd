#!/bin/bash
# PostgreSQL for bench/compose_check.sh: honours POSTGRES_USER, POSTGRES_PASSWORD and
# POSTGRES_DB like the official image; initdb's PGDATA on first start; then runs the server
# in the foreground on PGHOST_ADDR (default 127.0.0.1) and PGPORT (default 5432).
set -euo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
: "${PGHOST_ADDR:=127.0.0.1}"
: "${PGPORT:=5432}"
export PGPORT

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    # Only the local socket while the database is made.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
        createdb -U "$POSTGRES_USER" -O "$POSTGRES_USER" "$POSTGRES_DB"
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "postgres-entrypoint: initialised $PGDATA (database $POSTGRES_DB)"
fi

exec postgres -D "$PGDATA" -c listen_addresses="$PGHOST_ADDR" -p "$PGPORT"
