#!/usr/bin/env bash
# Private PostgreSQL instance: the target `tidemark publish` writes to in the tests.
#
#   scripts/postgres.sh start [--fresh]   start (idempotent); prints the URL on stdout
#   scripts/postgres.sh stop              fast shutdown, waits for the server to exit
#   scripts/postgres.sh url               prints postgres://tidemark@127.0.0.1:PORT/postgres
#   scripts/postgres.sh status            exit 0 and print the URL if running, else exit 1
#   scripts/postgres.sh ca                prints the path of the CA certificate (PEM) that
#                                         signed the server's TLS certificate
#
# Everything lives under $REPO/target/test-services/postgres/ (data directory, socket
# directory, log, port file). The server reads no system configuration (its own
# initdb cluster, not Debian's pg_ctlcluster ones), listens on 127.0.0.1 only, on its
# own port (35432 or the next free one), so a system PostgreSQL on 5432 is neither
# touched nor used.
#
# Logins over TCP need a password (scram-sha-256), so the tests exercise the
# password path: user `tidemark`, password `tidemark` (a throwaway test instance;
# the tests read it from TIDEMARK_TEST_PG_PASSWORD, which test.sh exports).
#
# TLS is on (the publisher's TLS tests): at start, a throwaway CA and a server
# certificate it signs (subject alternative names IP 127.0.0.1 and DNS localhost)
# are made with the openssl CLI under $BASE/tls/ if missing, and passed to the
# server as ssl_cert_file / ssl_key_file. Plaintext connections stay allowed
# (pg_hba's `host` lines match both), as the other tests use them.
#
# PostgreSQL refuses to run as root. As root, the cluster belongs to the `postgres`
# system user (created by Debian's package) and every server command runs as it.
#
# Environment:
#   TIDEMARK_PG_PORT      preferred port (default 35432; the next free one is used if taken)
#   TIDEMARK_PG_BASE      directory of the instance (default target/test-services/postgres)
#   TIDEMARK_PG_TIMEOUT   seconds to wait for start/stop (default 60)
#
# Diagnostics go to stderr; `start` and `url` print only the URL on stdout, so
# `url=$(scripts/postgres.sh start)` works.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BASE="${TIDEMARK_PG_BASE:-$REPO/target/test-services/postgres}"
DATADIR="$BASE/data"
SOCKDIR="$BASE/run"
PORTFILE="$BASE/port"
LOGFILE="$BASE/postgres.log"
TLSDIR="$BASE/tls"
DEFAULT_PORT="${TIDEMARK_PG_PORT:-35432}"
TIMEOUT="${TIDEMARK_PG_TIMEOUT:-60}"
PG_USER=tidemark
PG_PASSWORD=tidemark

log() { printf '[postgres.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

# Unix socket paths are limited to 107 bytes; fall back to /tmp for deep checkouts.
if [ "${#SOCKDIR}" -gt 90 ]; then
    SOCKDIR="/tmp/tidemark-postgres-$(printf '%s' "$BASE" | cksum | cut -d' ' -f1)"
fi

# ---------------------------------------------------------------- packages

# Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin, off PATH.
find_bindir() {
    local d
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    return 1
}

ensure_packages() {
    if ! find_bindir >/dev/null || ! command -v psql >/dev/null 2>&1; then
        log "installing postgresql with apt-get"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql postgresql-client
    fi
    BINDIR="$(find_bindir)" || die "pg_ctl/initdb not found even after installing postgresql"
}

# ---------------------------------------------------------------- helpers

# Run a server command as the cluster's owner: ourselves, or `postgres` when root.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the postgres system user (Debian's postgresql package creates it)"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The owner must reach the data directory: as root, make the directories on the way
# traversable (they are root's, mode 755 normally) and hand the instance over.
own_base() {
    mkdir -p "$BASE" "$SOCKDIR"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$BASE" "$SOCKDIR"
    fi
}

saved_port() { [ -f "$PORTFILE" ] && cat "$PORTFILE"; }

# port_in_use, pick_port: scripts/lib.sh

# Answers a query as the test user over TCP with its password?
answers() {
    PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=3 psql -X -q -w -h 127.0.0.1 -p "$1" \
        -U "$PG_USER" -d postgres -tAc 'select 1' >/dev/null 2>&1
}

running() {
    local p
    [ -f "$DATADIR/PG_VERSION" ] || return 1
    as_owner "$BINDIR/pg_ctl" -D "$DATADIR" status >/dev/null 2>&1 || return 1
    p="$(saved_port)" || return 1
    answers "$p"
}

print_url() { echo "postgres://$PG_USER@127.0.0.1:$1/postgres"; }

# ---------------------------------------------------------------- init

init_datadir() {
    log "initialising cluster $DATADIR"
    rm -rf "$DATADIR"
    own_base
    local pwfile="$BASE/pwfile"
    printf '%s\n' "$PG_PASSWORD" >"$pwfile"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$pwfile"
    if ! as_owner "$BINDIR/initdb" -D "$DATADIR" -U "$PG_USER" --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
            >"$BASE/initdb.log" 2>&1; then
        tail -n 40 "$BASE/initdb.log" >&2
        rm -rf "$DATADIR"
        die "initdb failed (full log: $BASE/initdb.log)"
    fi
    rm -f "$pwfile"
}

# ---------------------------------------------------------------- TLS

# A CA and a server certificate it signs, made once and kept (a cluster restarted
# keeps its certificate, so a CA path a test run read stays valid). webpki, which
# the publisher's rustls uses, wants real X.509 v3 roles: a CA with
# basicConstraints CA:TRUE, a leaf with CA:FALSE and serverAuth, names in the
# subjectAltName (the CN is not looked at).
ensure_tls() {
    if [ -s "$TLSDIR/ca.crt" ] && [ -s "$TLSDIR/server.crt" ] && [ -s "$TLSDIR/server.key" ]; then
        return 0
    fi
    command -v openssl >/dev/null 2>&1 || {
        log "openssl missing: installing it"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y openssl
    }
    log "making a test CA and server certificate in $TLSDIR"
    rm -rf "$TLSDIR"
    mkdir -p "$TLSDIR"
    cat >"$TLSDIR/ca.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = tidemark test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
CNF
    cat >"$TLSDIR/server.ext" <<'EXT'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
    if ! {
        openssl req -x509 -new -config "$TLSDIR/ca.cnf" -extensions v3_ca \
            -newkey rsa:2048 -nodes -keyout "$TLSDIR/ca.key" -out "$TLSDIR/ca.crt" \
            -days 3650 -sha256 &&
        openssl req -new -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout "$TLSDIR/server.key" -out "$TLSDIR/server.csr" &&
        openssl x509 -req -in "$TLSDIR/server.csr" -CA "$TLSDIR/ca.crt" -CAkey "$TLSDIR/ca.key" \
            -CAcreateserial -CAserial "$TLSDIR/ca.srl" -days 3650 -sha256 \
            -extfile "$TLSDIR/server.ext" -out "$TLSDIR/server.crt"
    } >"$TLSDIR/openssl.log" 2>&1; then
        cat "$TLSDIR/openssl.log" >&2
        rm -rf "$TLSDIR"
        die "making the test certificates failed"
    fi
    # PostgreSQL refuses a key file others can read.
    chmod 600 "$TLSDIR/server.key" "$TLSDIR/ca.key"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$TLSDIR" "$TLSDIR/server.key" "$TLSDIR/server.crt"
    fi
}

# Is the running server's TLS on (it may have been started before TLS was added)?
tls_on() {
    [ "$(PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=3 psql -X -q -w -h 127.0.0.1 -p "$1" \
        -U "$PG_USER" -d postgres -tAc 'show ssl' 2>/dev/null)" = on ]
}

# ---------------------------------------------------------------- start/stop

do_start() {
    local fresh=0 arg
    for arg in "$@"; do
        case "$arg" in
            --fresh) fresh=1 ;;
            *) die "unknown start option: $arg" ;;
        esac
    done
    ensure_packages
    ensure_tls
    if [ "$fresh" -eq 0 ] && running; then
        if tls_on "$(saved_port)"; then
            log "already running (port $(saved_port))"
            print_url "$(saved_port)"
            return 0
        fi
        log "running without TLS: restarting it with TLS"
    fi
    if [ -f "$DATADIR/PG_VERSION" ] && as_owner "$BINDIR/pg_ctl" -D "$DATADIR" status >/dev/null 2>&1; then
        do_stop
    fi
    own_base
    if [ "$fresh" -eq 1 ] || [ ! -f "$DATADIR/PG_VERSION" ]; then
        init_datadir
    else
        log "reusing cluster $DATADIR"
    fi

    local preferred="$DEFAULT_PORT" port attempt ok=0
    for attempt in 1 2 3; do
        port="$(pick_port "$preferred")"
        log "starting postgres on 127.0.0.1:$port"
        : >"$LOGFILE"
        [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$LOGFILE"
        # -w waits until it accepts connections; fsync off: a test instance.
        if as_owner "$BINDIR/pg_ctl" -D "$DATADIR" -l "$LOGFILE" -w -t "$TIMEOUT" \
                -o "-c listen_addresses=127.0.0.1 -p $port -k $SOCKDIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c ssl=on -c ssl_cert_file=$TLSDIR/server.crt -c ssl_key_file=$TLSDIR/server.key" \
                start >/dev/null 2>&1; then
            ok=1
            break
        fi
        if grep -q 'could not bind\|already in use' "$LOGFILE"; then
            log "port $port was grabbed meanwhile, retrying"
            preferred=$((port + 1))
            continue
        fi
        tail -n 40 "$LOGFILE" >&2 || true
        die "postgres failed to start (log: $LOGFILE)"
    done
    [ "$ok" -eq 1 ] || { tail -n 40 "$LOGFILE" >&2; die "postgres failed to start"; }
    echo "$port" >"$PORTFILE"
    answers "$port" || { tail -n 40 "$LOGFILE" >&2; die "server up but $PG_USER cannot log in over TCP"; }
    tls_on "$port" || { tail -n 40 "$LOGFILE" >&2; die "server up but TLS is off"; }
    log "ready (port $port)"
    print_url "$port"
}

do_stop() {
    if [ ! -f "$DATADIR/PG_VERSION" ] || ! as_owner "$BINDIR/pg_ctl" -D "$DATADIR" status >/dev/null 2>&1; then
        log "not running"
        return 0
    fi
    log "stopping postgres"
    as_owner "$BINDIR/pg_ctl" -D "$DATADIR" -m fast -w -t "$TIMEOUT" stop >/dev/null 2>&1 \
        || die "pg_ctl stop failed (log: $LOGFILE)"
    log "stopped"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    start)  do_start "$@" ;;
    stop)   ensure_packages; do_stop ;;
    url)
        p="$(saved_port)" || die "no port file; run: $0 start"
        print_url "$p" ;;
    ca)
        [ -s "$TLSDIR/ca.crt" ] || die "no CA certificate yet; run: $0 start"
        echo "$TLSDIR/ca.crt" ;;
    status)
        ensure_packages
        if running; then
            log "running (port $(saved_port))"
            print_url "$(saved_port)"
        else
            log "not running"
            exit 1
        fi ;;
    *)
        echo "usage: $0 start [--fresh] | stop | url | status | ca" >&2
        exit 2 ;;
esac
