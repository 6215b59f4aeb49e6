#!/usr/bin/env bash
# Benchmark: change events from Kafka (`tidemark run` with a [streams.*] of Debezium
# messages) into current + history, against the plain consume rate of the same topic
# by an rdkafka consumer that discards every message (the limit), in one run on this
# machine. The broker is a private tansu (scripts/tansu.sh, in-memory).
#
#   bench/kafka.sh                                   # ROWS=200000 snapshot reads + CHANGES=800000 updates
#   ROWS=20000 CHANGES=80000 DURATION=5 bench/kafka.sh   # smoke run
#
# It reports:
#   1. backlog apply rate: ROWS snapshot reads plus CHANGES updates of random rows
#      (Debezium envelopes without schema, 4 partitions keyed by row) are produced
#      while tidemark is stopped; `tidemark run --until-caught-up` lands them.
#      Rate = messages / wall time (start-up and group join included). The limit:
#      `kafka_bench drain`, a plain rdkafka consumer in a fresh group reading the same
#      messages and discarding them, wall time measured the same way.
#   2. freshness at RATE (1000) events/s for DURATION (20) seconds while `tidemark run`
#      streams: each message's source.ts_ms is its produce instant, so freshness of a
#      change = its `_ingest_ts` in history - `_source_ts` (produce to queryable, as
#      the commit follows `_ingest_ts` by the `commit_ms` the run logs, reported too).
#
# Environment: ROWS, CHANGES, RATE, DURATION, SKIP_BUILD=1, BENCH_DIR.
# Progress goes to stderr, the report (a markdown table) to stdout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ROWS="${ROWS:-200000}"
CHANGES="${CHANGES:-800000}"
RATE="${RATE:-1000}"
DURATION="${DURATION:-20}"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench-kafka}"
DB=tm_kafka_bench

log() { printf '[kafka-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd -P)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release (tidemark and the kafka_bench example)"
    (cd "$REPO" && cargo build --release --locked -p tidemark --bin tidemark --example kafka_bench) >&2
fi
TM="$REPO/target/release/tidemark"
KB="$REPO/target/release/examples/kafka_bench"

URL="$("$REPO/scripts/mariadb.sh" start)"
PORT="${URL##*:}"
q() { mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$PORT" -uroot -N -B -e "$1"; }
# A fresh, empty broker each run.
"$REPO/scripts/tansu.sh" stop >/dev/null 2>&1 || true
BROKER="$("$REPO/scripts/tansu.sh" start)"
trap '"$REPO/scripts/tansu.sh" stop >/dev/null 2>&1 || true' EXIT

q "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB;
   CREATE TABLE $DB.invoices (id INT PRIMARY KEY, customer VARCHAR(40), total DECIMAL(12,2), issued DATE)"
TOPIC="bench.$DB.invoices"
WH="$BENCH_DIR/warehouse"
rm -rf "$WH"
CONF="$BENCH_DIR/tidemark.toml"
cat >"$CONF" <<EOF
[environments.dev]
warehouse = "$WH"

[sources.bench]
url = "mysql://root@127.0.0.1:$PORT"
databases = ["$DB"]
capture = "none"

[streams.events]
kind = "kafka"
format = "debezium"
schema_from = "bench"
brokers = "$BROKER"
topics = ["$TOPIC"]
decimal_handling = "string"
EOF

TOTAL=$((ROWS + CHANGES))
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "# bench/kafka.sh — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT, $(nproc) cores, broker tansu $("$(command -v tansu || echo "$HOME/.cargo/bin/tansu")" --version 2>/dev/null | head -n1 || true)"
echo "# ROWS=$ROWS CHANGES=$CHANGES RATE=$RATE DURATION=${DURATION}s"
echo

log "producing $TOTAL messages to $TOPIC"
"$KB" produce "$BROKER" "$TOPIC" "$DB" 4 "$ROWS" "$CHANGES" >&2

log "limit: plain consumer"
LIMIT_LINE="$("$KB" drain "$BROKER" "$TOPIC" "$TOTAL")"
log "$LIMIT_LINE"
LIMIT_S="$(echo "$LIMIT_LINE" | sed 's/.* in \([0-9.]*\)s.*/\1/')"

log "tidemark run --until-caught-up"
T0=$(date +%s.%N)
TIDEMARK_LOG_FORMAT=json "$TM" --config "$CONF" run --until-caught-up 2>"$BENCH_DIR/apply.log"
APPLY_S="$(echo "$(date +%s.%N) - $T0" | bc)"
LANDED="$("$TM" --config "$CONF" sql --format csv "SELECT count(*) FROM ${DB}_history.invoices" 2>/dev/null | tail -n1)"
[ "$LANDED" = "$TOTAL" ] || log "WARNING: history has $LANDED versions, expected $TOTAL"

log "freshness at $RATE events/s for ${DURATION}s"
TIDEMARK_LOG_FORMAT=json "$TM" --config "$CONF" run 2>"$BENCH_DIR/fresh.log" &
RUN_PID=$!
sleep 5
START_MS=$(date +%s%3N)
"$KB" pace "$BROKER" "$TOPIC" "$DB" 4 "$ROWS" "$RATE" "$DURATION" >&2
sleep 3
kill -TERM "$RUN_PID"; wait "$RUN_PID" || true
read -r p50 p99 < <("$TM" --config "$CONF" sql --format csv \
    "SELECT approx_percentile_cont(f, 0.5), approx_percentile_cont(f, 0.99) FROM (
       SELECT (CAST(_ingest_ts AS BIGINT) - CAST(_source_ts AS BIGINT)) / 1000.0 AS f
       FROM ${DB}_history.invoices WHERE _source_ts >= to_timestamp_millis($START_MS))" \
    2>/dev/null | tail -n1 | tr ',' ' ')
COMMIT_MS="$(grep '"committed"' "$BENCH_DIR/fresh.log" | sed 's/.*"commit_ms":\([0-9]*\).*/\1/' | sort -n \
    | awk '{a[NR]=$1} END {print a[int(NR*0.5)+1] "/" a[int(NR*0.99)+1]}')"

RATE_TM="$(echo "$TOTAL / $APPLY_S" | bc)"
RATE_LIMIT="$(echo "$TOTAL / $LIMIT_S" | bc)"
PCT="$(echo "scale=0; 100 * $LIMIT_S / $APPLY_S" | bc)"
echo "| messages | tidemark s | tidemark events/s | plain consumer s | plain events/s | tidemark / plain | fresh p50 ms @${RATE}/s | p99 ms | commit_ms p50/p99 |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
echo "| $TOTAL | $APPLY_S | $RATE_TM | $LIMIT_S | $RATE_LIMIT | ${PCT}% | $(printf '%.0f' "$p50") | $(printf '%.0f' "$p99") | $COMMIT_MS |"
