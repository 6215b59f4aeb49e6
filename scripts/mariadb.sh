#!/usr/bin/env bash
# Private MariaDB instance for tidemark's tests.
#
#   scripts/mariadb.sh start [--fresh]   start (idempotent); prints the root URL on stdout
#   scripts/mariadb.sh stop              clean shutdown, waits for the process to exit
#   scripts/mariadb.sh url               prints mysql://root@127.0.0.1:PORT
#   scripts/mariadb.sh status            exit 0 and print the URL if running, else exit 1
#
# Everything lives under $REPO/target/test-services/mariadb/ (datadir, socket,
# pid file, error log, port file).  The server never reads /etc/mysql
# (--no-defaults), binds 127.0.0.1 only, and uses its own port (33306 or the
# next free one), so a system MariaDB on 3306 is neither touched nor used.
#
# Environment:
#   TIDEMARK_MARIADB_PORT      preferred port (default 33306; next free one is used if taken)
#   TIDEMARK_MARIADB_BASE      directory of the instance (default target/test-services/mariadb)
#   TIDEMARK_MARIADB_TIMEOUT   seconds to wait for start/stop (default 60)
#
# Diagnostics go to stderr; `start` and `url` print only the URL on stdout, so
# `url=$(scripts/mariadb.sh start)` works.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# TIDEMARK_MARIADB_BASE: another directory for a second, independent instance (the
# fault tests restart one of their own, never the shared one).
BASE="${TIDEMARK_MARIADB_BASE:-$REPO/target/test-services/mariadb}"
DATADIR="$BASE/data"
TMPDIR_DB="$BASE/tmp"
PIDFILE="$BASE/mariadbd.pid"
PORTFILE="$BASE/port"
ERRLOG="$BASE/mariadbd.err"
DEFAULT_PORT="${TIDEMARK_MARIADB_PORT:-33306}"
TIMEOUT="${TIDEMARK_MARIADB_TIMEOUT:-60}"

# Unix socket paths are limited to 107 bytes; fall back to /tmp for deep checkouts.
SOCKET="$BASE/mariadbd.sock"
if [ "${#SOCKET}" -gt 100 ]; then
    SOCKET="/tmp/tidemark-mariadb-$(printf '%s' "$BASE" | cksum | cut -d' ' -f1).sock"
fi

log() { printf '[mariadb.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- packages

# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

find_mariadbd() {
    if command -v mariadbd >/dev/null 2>&1; then command -v mariadbd
    elif [ -x /usr/sbin/mariadbd ]; then echo /usr/sbin/mariadbd
    else return 1
    fi
}

ensure_packages() {
    local need=0
    find_mariadbd >/dev/null || need=1
    command -v mariadb >/dev/null 2>&1 || need=1
    command -v mariadb-admin >/dev/null 2>&1 || need=1
    command -v mariadb-install-db >/dev/null 2>&1 || need=1
    if [ "$need" -eq 1 ]; then
        log "installing mariadb-server mariadb-client with apt-get"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y mariadb-server mariadb-client
    fi
    MARIADBD="$(find_mariadbd)" || die "mariadbd not found even after installing mariadb-server"
}

# ---------------------------------------------------------------- helpers

# Client with no option files, always over our own TCP port as root (no password).
client() { mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$1" -uroot "${@:2}"; }

pid_alive() {
    local pid
    [ -f "$PIDFILE" ] || return 1
    pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

saved_port() { [ -f "$PORTFILE" ] && cat "$PORTFILE"; }

# port_in_use, pick_port: scripts/lib.sh.

# Answers a query as root over TCP on the given port?
answers() { client "$1" -N -B -e 'select 1' >/dev/null 2>&1; }

running() {
    local p
    pid_alive || return 1
    p="$(saved_port)" || return 1
    answers "$p"
}

print_url() { echo "mysql://root@127.0.0.1:$1"; }

# ---------------------------------------------------------------- init

init_datadir() {
    local user_args=()
    [ "$(id -u)" -eq 0 ] && user_args=(--user=root)
    log "initialising datadir $DATADIR"
    rm -rf "$DATADIR"
    mkdir -p "$DATADIR"
    if ! mariadb-install-db --no-defaults "${user_args[@]}" \
            --datadir="$DATADIR" --tmpdir="$TMPDIR_DB" \
            --auth-root-authentication-method=normal \
            --skip-test-db --skip-name-resolve \
            >"$BASE/install-db.log" 2>&1; then
        tail -n 40 "$BASE/install-db.log" >&2
        rm -rf "$DATADIR"
        die "mariadb-install-db failed (full log: $BASE/install-db.log)"
    fi
    # Marker written only after accounts are set up (see setup_accounts).
    rm -f "$DATADIR/.tidemark-ready"
}

# root with an empty password from localhost, 127.0.0.1, ::1 and '%'; no
# anonymous users (they would shadow 'user'@'%' accounts created by tests).
setup_accounts() {
    local port="$1"
    [ -f "$DATADIR/.tidemark-ready" ] && return 0
    log "setting up root accounts"
    mariadb --no-defaults --protocol=SOCKET -S"$SOCKET" -uroot <<'SQL'
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
CREATE USER IF NOT EXISTS 'root'@'::1' IDENTIFIED BY '';
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '';
ALTER USER 'root'@'::1' IDENTIFIED BY '';
ALTER USER 'root'@'%' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'localhost' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'root'@'::1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
GRANT PROXY ON ''@'%' TO 'root'@'127.0.0.1' WITH GRANT OPTION;
GRANT PROXY ON ''@'%' TO 'root'@'%' WITH GRANT OPTION;
DROP USER IF EXISTS ''@'localhost';
DROP USER IF EXISTS ''@'%';
FLUSH PRIVILEGES;
SQL
    answers "$port" || die "root cannot log in over TCP 127.0.0.1:$port with an empty password"
    touch "$DATADIR/.tidemark-ready"
}

# ---------------------------------------------------------------- start/stop

launch() {
    local port="$1" user_args=()
    [ "$(id -u)" -eq 0 ] && user_args=(--user=root)
    : >"$ERRLOG"
    # setsid + all fds redirected: survives this script and never holds a
    # caller's $(...) pipe open.
    setsid "$MARIADBD" --no-defaults "${user_args[@]}" \
        --datadir="$DATADIR" \
        --tmpdir="$TMPDIR_DB" \
        --socket="$SOCKET" \
        --pid-file="$PIDFILE" \
        --log-error="$ERRLOG" \
        --port="$port" \
        --bind-address=127.0.0.1 \
        --skip-networking=0 \
        --log-bin=mysql-bin \
        --binlog-format=ROW \
        --binlog-row-image=FULL \
        --server-id=1 \
        --innodb-buffer-pool-size=512M \
        --innodb-flush-log-at-trx-commit=2 \
        --sync-binlog=0 \
        --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_general_ci \
        --max-connections=500 \
        </dev/null >>"$ERRLOG" 2>&1 &
    LAUNCHED_PID=$!
    disown "$LAUNCHED_PID" 2>/dev/null || true
}

# Wait until the server answers over its socket (accounts may not exist yet
# on a fresh datadir, so TCP root login is checked later).
wait_ready() {
    local pid="$1" deadline=$((SECONDS + TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then return 2; fi
        if mariadb-admin --no-defaults --protocol=SOCKET -S"$SOCKET" -uroot \
                --connect-timeout=2 ping >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

do_start() {
    local fresh=0 arg
    for arg in "$@"; do
        case "$arg" in
            --fresh) fresh=1 ;;
            *) die "unknown start option: $arg" ;;
        esac
    done

    if [ "$fresh" -eq 0 ] && running; then
        log "already running (pid $(cat "$PIDFILE"), port $(saved_port))"
        print_url "$(saved_port)"
        return 0
    fi

    ensure_packages
    mkdir -p "$BASE" "$TMPDIR_DB"

    # Something of ours is half-alive, or --fresh was asked: shut it down first.
    if pid_alive; then do_stop; fi
    rm -f "$PIDFILE"
    [ -S "$SOCKET" ] && rm -f "$SOCKET"

    if [ "$fresh" -eq 1 ] || [ ! -f "$DATADIR/.tidemark-ready" ]; then
        init_datadir
    else
        log "reusing datadir $DATADIR"
    fi

    local preferred="$DEFAULT_PORT" port attempt rc
    for attempt in 1 2 3; do
        port="$(pick_port "$preferred")"
        log "starting mariadbd on 127.0.0.1:$port"
        launch "$port"
        rc=0; wait_ready "$LAUNCHED_PID" || rc=$?
        [ "$rc" -eq 0 ] && break
        if [ "$rc" -eq 2 ] && grep -q 'Address already in use' "$ERRLOG"; then
            log "port $port was grabbed meanwhile, retrying"
            preferred=$((port + 1))
            continue
        fi
        log "mariadbd did not come up (see $ERRLOG); last lines:"
        tail -n 40 "$ERRLOG" >&2 || true
        kill "$LAUNCHED_PID" 2>/dev/null || true
        die "mariadbd failed to start"
    done
    [ "$rc" -eq 0 ] || { tail -n 40 "$ERRLOG" >&2; die "mariadbd failed to start"; }

    echo "$port" >"$PORTFILE"
    setup_accounts "$port"
    answers "$port" || { tail -n 40 "$ERRLOG" >&2; die "server up but root login over TCP fails"; }
    log "ready (pid $(cat "$PIDFILE" 2>/dev/null || echo "$LAUNCHED_PID"))"
    print_url "$port"
}

do_stop() {
    local pid deadline
    if ! pid_alive; then
        rm -f "$PIDFILE"
        log "not running"
        return 0
    fi
    pid="$(cat "$PIDFILE")"
    log "stopping mariadbd (pid $pid)"
    mariadb-admin --no-defaults --protocol=SOCKET -S"$SOCKET" -uroot \
        --connect-timeout=5 shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "still alive after ${TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.2
    done
    rm -f "$PIDFILE"
    [ -S "$SOCKET" ] && rm -f "$SOCKET"
    log "stopped"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    start)  do_start "$@" ;;
    stop)   do_stop ;;
    url)
        p="$(saved_port)" || die "no port file; run: $0 start"
        print_url "$p" ;;
    status)
        if running; then
            log "running (pid $(cat "$PIDFILE"), port $(saved_port), socket $SOCKET)"
            print_url "$(saved_port)"
        else
            log "not running"
            exit 1
        fi ;;
    *)
        echo "usage: $0 start [--fresh] | stop | url | status" >&2
        exit 2 ;;
esac
