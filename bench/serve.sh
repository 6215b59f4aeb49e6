#!/usr/bin/env bash
# Benchmark: the PostgreSQL endpoint (`tidemark run --serve`) against the same queries
# run in-process on the same warehouse (the limit: what the wire, the protocol and
# the session add), in one run on this machine; then CLIENTS concurrent sessions,
# first with no ingestion, then while change capture lands a MariaDB table.
#
#   bench/serve.sh                                       # ~5M invoices (what RESULTS.md reports)
#   SCALE=40 RUNS=3 LOOKUPS=300 SECS=10 bench/serve.sh    # smoke run (~100k invoices)
#
# Data: `tidemark demo --scale SCALE --days 90` lands 90 simulated days of the
# invoicing workload (current + history) into a fresh warehouse; SCALE=1920 gives
# about 5 million current invoices. Re-running with REUSE=1 keeps a warehouse landed
# by an earlier run of the same SCALE.
#
# It reports (see bench/README.md):
#   1. (a) point lookup by id p50/p99, (b) an aggregate over all invoices, (c) the same
#      aggregate FOR SYSTEM_TIME AS OF 30 days earlier, (d) 1,000,000 rows streamed:
#      in-process (`serve_bench compare`, the Engine that `tidemark sql` uses) and over
#      the wire (tokio-postgres against `tidemark run --serve`), alternating, with the
#      ratio wire / in-process;
#   2. CLIENTS (50) sessions for SECS (30) seconds each looping over point lookups,
#      every tenth query a count of the table being ingested: once idle, once while a
#      writer inserts INGEST_ROWS (500) rows into MariaDB every 100 ms and
#      `tidemark run` captures them from the binlog.
#
# Environment: SCALE, DAYS, RUNS, LOOKUPS, CLIENTS, SECS, INGEST_ROWS, REUSE=1,
# SKIP_BUILD=1, BENCH_DIR. Progress goes to stderr, the report (markdown) to stdout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SCALE="${SCALE:-1920}"
DAYS="${DAYS:-90}"
RUNS="${RUNS:-5}"
LOOKUPS="${LOOKUPS:-2000}"
CLIENTS="${CLIENTS:-50}"
SECS="${SECS:-30}"
INGEST_ROWS="${INGEST_ROWS:-500}"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench-serve}"
DB=tm_serve_bench

log() { printf '[serve-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd -P)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release (tidemark and the serve_bench example)"
    (cd "$REPO" && cargo build --release --locked -p tidemark --bin tidemark -p tidemark-server --example serve_bench) >&2
fi
TM="${CARGO_TARGET_DIR:-$REPO/target}/release/tidemark"
SB="${CARGO_TARGET_DIR:-$REPO/target}/release/examples/serve_bench"

WH="$BENCH_DIR/warehouse"
if [ "${REUSE:-0}" = 1 ] && [ "$(cat "$BENCH_DIR/scale" 2>/dev/null)" = "$SCALE/$DAYS" ]; then
    log "reusing $WH (SCALE=$SCALE DAYS=$DAYS)"
    rm -rf "$WH/$DB" "$WH/tidemark"
else
    rm -f "$BENCH_DIR/scale"
    log "landing the demo workload at scale $SCALE over $DAYS days into $WH"
    t0=$SECONDS
    "$TM" demo --dir "$WH" --scale "$SCALE" --days "$DAYS" >"$BENCH_DIR/demo.out"
    log "landed in $(( SECONDS - t0 ))s: $(grep '^landed' "$BENCH_DIR/demo.out")"
    echo "$SCALE/$DAYS" >"$BENCH_DIR/scale"
fi

URL="$("$REPO/scripts/mariadb.sh" start)"
MYPORT="${URL##*:}"
q() { mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$MYPORT" -uroot -N -B -e "$1"; }
q "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB;
   CREATE TABLE $DB.events (id BIGINT AUTO_INCREMENT PRIMARY KEY, invoice_id BIGINT NOT NULL,
                            amount DECIMAL(12,2) NOT NULL, at DATETIME(6) NOT NULL)"

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
CONF="$BENCH_DIR/tidemark.toml"
cat >"$CONF" <<EOF
[environments.dev]
warehouse = "$WH"

[sources.bench]
url = "mysql://root@127.0.0.1:$MYPORT"
databases = ["$DB"]

[server]
listen = "127.0.0.1:$PORT"
users_file = "users.toml"

[server.roles.analyst]
grants = ["*"]
EOF
rm -f "$BENCH_DIR/users.toml"
PASSWORD="bench-$RANDOM-$RANDOM"
TIDEMARK_USER_PASSWORD="$PASSWORD" "$TM" --config "$CONF" user add bench --role analyst >&2
PGURL="postgres://bench:$PASSWORD@127.0.0.1:$PORT/tidemark"

SERVER_PID=
WRITER_PID=
cleanup() {
    [ -n "$WRITER_PID" ] && kill "$WRITER_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT

log "starting tidemark run --serve on 127.0.0.1:$PORT"
"$TM" --config "$CONF" run --serve 2>"$BENCH_DIR/server.log" &
SERVER_PID=$!
for _ in $(seq 1 600); do
    if PGPASSWORD="$PASSWORD" psql "host=127.0.0.1 port=$PORT user=bench dbname=tidemark" -X -At \
        -c "SELECT count(*) FROM $DB.events" >/dev/null 2>&1; then
        break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$BENCH_DIR/server.log" >&2; exit 1; }
    sleep 0.5
done

COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "# bench/serve.sh — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT, $(nproc) cores"
echo "# SCALE=$SCALE DAYS=$DAYS RUNS=$RUNS LOOKUPS=$LOOKUPS CLIENTS=$CLIENTS SECS=$SECS INGEST_ROWS=$INGEST_ROWS"
[ -f "$BENCH_DIR/demo.out" ] && echo "# $(grep '^landed' "$BENCH_DIR/demo.out")"
echo
log "compare: in-process vs wire"
"$SB" compare "$WH" "$PGURL" "$RUNS" "$LOOKUPS"

echo
echo "| phase | clients | queries/s | errors | lookup p50 ms | lookup p99 ms | live count p50 ms | live count p99 ms | lookups | rows landed in the live table meanwhile |"
echo "|---|---|---|---|---|---|---|---|---|---|"
log "concurrent: $CLIENTS clients, idle"
"$SB" concurrent "$PGURL" "$CLIENTS" "$SECS" "$DB.events" idle

log "concurrent: $CLIENTS clients while ingesting $INGEST_ROWS rows every 100 ms"
(
    while :; do
        q "INSERT INTO $DB.events (invoice_id, amount, at)
           SELECT seq, seq % 100000 / 100, NOW(6) FROM $DB.seq_1_to_$INGEST_ROWS" || exit 1
        sleep 0.1
    done
) &
WRITER_PID=$!
sleep 3
"$SB" concurrent "$PGURL" "$CLIENTS" "$SECS" "$DB.events" ingesting
kill "$WRITER_PID" 2>/dev/null || true
wait "$WRITER_PID" 2>/dev/null || true
WRITER_PID=
written="$(q "SELECT count(*) FROM $DB.events")"
# "committed" lines of change capture (JSON or text logs): lag_ms is source to
# commit, commit_ms the commit itself.
field() { grep '"committed"\|: committed\| committed ' "$BENCH_DIR/server.log" | grep -o "$1[\": =]*[0-9]*" | grep -o '[0-9]*$' | sort -n || true; }
summary() { local n; n="$(printf '%s\n' "$1" | grep -c . || true)"; [ "$n" -gt 0 ] && echo "median $(printf '%s\n' "$1" | sed -n "$(( (n + 1) / 2 ))p") ms, max $(printf '%s\n' "$1" | tail -n1) ms"; }
lags="$(field lag_ms)"
commits="$(field commit_ms)"
n="$(printf '%s\n' "$lags" | grep -c . || true)"
echo
if [ "$n" -gt 0 ]; then
    echo "ingestion: $written rows written to MariaDB; $n capture commits; source-to-commit lag $(summary "$lags"); commit duration $(summary "$commits")"
else
    echo "ingestion: $written rows written to MariaDB; no capture commit logged (see $BENCH_DIR/server.log)"
fi
