#!/usr/bin/env bash
# Private Kafka-protocol broker (tansu, in-memory storage) for tidemark's tests.
#
#   scripts/tansu.sh start    start (idempotent); prints the bootstrap address on stdout
#   scripts/tansu.sh stop     stop it and wait for the process to exit
#   scripts/tansu.sh status   exit 0 and print the address if running, else exit 1
#
# The broker binary is tansu from crates.io (`cargo install --locked tansu --features
# dynostore`, about 20 minutes to build once; an installed one is reused). It listens
# on 127.0.0.1 only, on its own port (19092 or the next free one), and keeps nothing
# on disk (--storage-engine memory://tansu/): every start is an empty cluster.
# State (pid, port, log) lives under $REPO/target/test-services/tansu/.
#
# Environment:
#   TIDEMARK_TANSU_PORT     preferred port (default 19092)
#   TIDEMARK_TANSU_TIMEOUT  seconds to wait for start (default 60)
#
# Diagnostics go to stderr; `start` prints only the address on stdout, so
# `addr=$(scripts/tansu.sh start)` works.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BASE="$REPO/target/test-services/tansu"
PIDFILE="$BASE/tansu.pid"
PORTFILE="$BASE/port"
LOGFILE="$BASE/tansu.log"
DEFAULT_PORT="${TIDEMARK_TANSU_PORT:-19092}"
TIMEOUT="${TIDEMARK_TANSU_TIMEOUT:-60}"

log() { printf '[tansu.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

find_tansu() {
    if command -v tansu >/dev/null 2>&1; then command -v tansu
    elif [ -x "$HOME/.cargo/bin/tansu" ]; then echo "$HOME/.cargo/bin/tansu"
    else return 1
    fi
}

ensure_tansu() {
    find_tansu >/dev/null && return 0
    log "tansu not found: cargo install --locked tansu --features dynostore (about 20 minutes, once)"
    cargo install --locked tansu --features dynostore >&2 || die "building tansu failed (see above)"
    find_tansu >/dev/null || die "tansu was installed but is not on PATH or in ~/.cargo/bin"
}

running() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

address() { echo "127.0.0.1:$(cat "$PORTFILE")"; }

start() {
    mkdir -p "$BASE"
    if running; then
        log "already running (pid $(cat "$PIDFILE"), $(address))"
        address
        return 0
    fi
    ensure_tansu
    local port="$DEFAULT_PORT"
    while ! port_free "$port"; do port=$((port + 1)); done
    echo "$port" >"$PORTFILE"
    log "starting tansu on 127.0.0.1:$port (memory storage)"
    "$(find_tansu)" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ \
        >"$LOGFILE" 2>&1 &
    echo $! >"$PIDFILE"
    local waited=0
    until ! port_free "$port"; do
        running || die "tansu exited at start; its log ($LOGFILE):
$(tail -n 20 "$LOGFILE")"
        [ "$waited" -ge "$((TIMEOUT * 10))" ] && die "tansu did not listen within ${TIMEOUT}s"
        sleep 0.1
        waited=$((waited + 1))
    done
    log "ready (pid $(cat "$PIDFILE"))"
    address
}

stop() {
    if ! running; then
        log "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    local pid
    pid="$(cat "$PIDFILE")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
    log "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) running && address ;;
    *) die "usage: scripts/tansu.sh start|stop|status" ;;
esac
