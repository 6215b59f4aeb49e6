#!/usr/bin/env bash
# Benchmark: change events from Kafka (`tidemark run` with a [streams.*] of Debezium
# messages) into current + history, against the plain consume rate of the same topic
# by an rdkafka consumer that discards every message (the limit), in one run on this
# machine. The broker is a private tansu (scripts/tansu.sh, in-memory).
#
#   bench/kafka.sh                                   # ROWS=200000 snapshot reads + CHANGES=800000 updates
#   ROWS=20000 CHANGES=80000 DURATION=5 bench/kafka.sh   # smoke run
#   FORMAT=avro bench/kafka.sh                       # only the Avro run
#
# FORMAT (json, avro or both; default both) picks the converter the messages are
# written with, one table row each:
#   json  schemaless JSON envelopes (Kafka Connect's JsonConverter, schemas off); the
#         stream takes the table's definition from MariaDB (`schema_from`).
#   avro  the same events as Confluent's AvroConverter writes them (Confluent wire
#         format; key and envelope schemas registered with scripts/schema_registry.py,
#         started here on a free port); the stream has no `schema_from`, so the
#         table is defined by the Avro schemas. Its own topic and warehouse.
#
# It reports, for each format:
#   1. backlog apply rate: ROWS snapshot reads plus CHANGES updates of random rows
#      (Debezium envelopes, 4 partitions keyed by row) are produced
#      while tidemark is stopped; `tidemark run --until-caught-up` lands them.
#      Rate = messages / wall time (start-up and group join included). The limit:
#      `kafka_bench drain`, a plain rdkafka consumer in a fresh group reading the same
#      messages and discarding them, wall time measured the same way.
#   2. freshness at RATE (1000) events/s for DURATION (20) seconds while `tidemark run`
#      streams: each message's source.ts_ms is its produce instant, so freshness of a
#      change = its `_ingest_ts` in history - `_source_ts` (produce to queryable, as
#      the commit follows `_ingest_ts` by the `commit_ms` the run logs, reported too).
#
# Environment: ROWS, CHANGES, RATE, DURATION, FORMAT, SKIP_BUILD=1, BENCH_DIR.
# Progress goes to stderr, the report (a markdown table) to stdout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ROWS="${ROWS:-200000}"
CHANGES="${CHANGES:-800000}"
RATE="${RATE:-1000}"
DURATION="${DURATION:-20}"
FORMAT="${FORMAT:-both}"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench-kafka}"
DB=tm_kafka_bench

log() { printf '[kafka-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

case "$FORMAT" in
    json) FORMATS=(json) ;;
    avro) FORMATS=(avro) ;;
    both) FORMATS=(json avro) ;;
    *) echo "FORMAT must be json, avro or both, not '$FORMAT'" >&2; exit 2 ;;
esac

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd -P)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release (tidemark and the kafka_bench example)"
    (cd "$REPO" && cargo build --release --locked -p tidemark --bin tidemark --example kafka_bench) >&2
fi
TM="$REPO/target/release/tidemark"
KB="$REPO/target/release/examples/kafka_bench"

REGISTRY_PID=""
cleanup() {
    "$REPO/scripts/tansu.sh" stop >/dev/null 2>&1 || true
    if [ -n "$REGISTRY_PID" ]; then kill "$REGISTRY_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

# A fresh, empty broker each run.
"$REPO/scripts/tansu.sh" stop >/dev/null 2>&1 || true
BROKER="$("$REPO/scripts/tansu.sh" start)"

if [[ " ${FORMATS[*]} " == *" json "* ]]; then
    # The JSON stream's table definition comes from MariaDB (schema_from).
    URL="$("$REPO/scripts/mariadb.sh" start)"
    PORT="${URL##*:}"
    q() { mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$PORT" -uroot -N -B -e "$1"; }
    q "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB;
       CREATE TABLE $DB.invoices (id INT PRIMARY KEY, customer VARCHAR(40), total DECIMAL(12,2), issued DATE)"
    TOPIC_JSON="bench.$DB.invoices"
    cat >"$BENCH_DIR/tidemark.toml" <<TOML
[environments.dev]
warehouse = "$BENCH_DIR/warehouse"

[sources.bench]
url = "mysql://root@127.0.0.1:$PORT"
databases = ["$DB"]
capture = "none"

[streams.events]
kind = "kafka"
format = "debezium"
schema_from = "bench"
brokers = "$BROKER"
topics = ["$TOPIC_JSON"]
decimal_handling = "string"
TOML
fi

if [[ " ${FORMATS[*]} " == *" avro "* ]]; then
    # The schema registry stand-in, on a free loopback port, as scripts/test.sh starts it.
    REGISTRY_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    python3 "$REPO/scripts/schema_registry.py" --port "$REGISTRY_PORT" >"$BENCH_DIR/schema_registry.log" 2>&1 &
    REGISTRY_PID=$!
    for _ in $(seq 1 50); do
        grep -q "listening" "$BENCH_DIR/schema_registry.log" 2>/dev/null && break
        sleep 0.1
    done
    grep -q "listening" "$BENCH_DIR/schema_registry.log" \
        || { cat "$BENCH_DIR/schema_registry.log" >&2; echo "the schema registry did not start" >&2; exit 1; }
    REGISTRY="http://127.0.0.1:$REGISTRY_PORT"
    TOPIC_AVRO="bench_avro.$DB.invoices"
    # No schema_from: the tables are defined by the messages' Avro schemas.
    cat >"$BENCH_DIR/tidemark-avro.toml" <<TOML
[environments.dev]
warehouse = "$BENCH_DIR/warehouse-avro"

[streams.events_avro]
kind = "kafka"
format = "debezium"
converter = "avro"
brokers = "$BROKER"
topics = ["$TOPIC_AVRO"]
databases = ["$DB"]

[streams.events_avro.schema_registry]
url = "$REGISTRY"
TOML
fi

TOTAL=$((ROWS + CHANGES))
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "# bench/kafka.sh — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT, $(nproc) cores, broker tansu $("$(command -v tansu || echo "$HOME/.cargo/bin/tansu")" --version 2>/dev/null | head -n1 || true)"
echo "# ROWS=$ROWS CHANGES=$CHANGES RATE=$RATE DURATION=${DURATION}s FORMAT=$FORMAT"
echo
ROWS_OUT=()

# One format's run: produce the backlog, drain it (the limit), land it, then the
# freshness phase; appends its table row to ROWS_OUT.
bench() {
    local fmt="$1" conf topic sfx produce pace
    if [ "$fmt" = json ]; then
        conf="$BENCH_DIR/tidemark.toml"; topic="$TOPIC_JSON"; sfx=""
        produce=(produce); pace=(pace); local extra=()
    else
        conf="$BENCH_DIR/tidemark-avro.toml"; topic="$TOPIC_AVRO"; sfx="-avro"
        produce=(produce-avro); pace=(pace-avro); local extra=("$REGISTRY")
    fi
    local wh
    wh="$(sed -n 's/^warehouse = "\(.*\)"$/\1/p' "$conf")"
    rm -rf "$wh"

    log "[$fmt] producing $TOTAL messages to $topic"
    "$KB" "${produce[@]}" "$BROKER" "$topic" "$DB" 4 "$ROWS" "$CHANGES" "${extra[@]}" >&2

    log "[$fmt] limit: plain consumer"
    local limit_line limit_s
    limit_line="$("$KB" drain "$BROKER" "$topic" "$TOTAL")"
    log "[$fmt] $limit_line"
    limit_s="$(echo "$limit_line" | sed 's/.* in \([0-9.]*\)s.*/\1/')"

    log "[$fmt] tidemark run --until-caught-up"
    local t0 apply_s landed
    t0=$(date +%s.%N)
    TIDEMARK_LOG_FORMAT=json "$TM" --config "$conf" run --until-caught-up 2>"$BENCH_DIR/apply$sfx.log"
    apply_s="$(echo "$(date +%s.%N) - $t0" | bc)"
    landed="$("$TM" --config "$conf" sql --format csv "SELECT count(*) FROM ${DB}_history.invoices" 2>/dev/null | tail -n1)"
    [ "$landed" = "$TOTAL" ] || log "[$fmt] WARNING: history has $landed versions, expected $TOTAL"

    log "[$fmt] freshness at $RATE events/s for ${DURATION}s"
    local run_pid start_ms p50 p99 commit_ms
    TIDEMARK_LOG_FORMAT=json "$TM" --config "$conf" run 2>"$BENCH_DIR/fresh$sfx.log" &
    run_pid=$!
    sleep 5
    start_ms=$(date +%s%3N)
    "$KB" "${pace[@]}" "$BROKER" "$topic" "$DB" 4 "$ROWS" "$RATE" "$DURATION" "${extra[@]}" >&2
    sleep 3
    kill -TERM "$run_pid"; wait "$run_pid" || true
    read -r p50 p99 < <("$TM" --config "$conf" sql --format csv \
        "SELECT approx_percentile_cont(f, 0.5), approx_percentile_cont(f, 0.99) FROM (
           SELECT (CAST(_ingest_ts AS BIGINT) - CAST(_source_ts AS BIGINT)) / 1000.0 AS f
           FROM ${DB}_history.invoices WHERE _source_ts >= to_timestamp_millis($start_ms))" \
        2>/dev/null | tail -n1 | tr ',' ' ')
    commit_ms="$(grep '"committed"' "$BENCH_DIR/fresh$sfx.log" | sed 's/.*"commit_ms":\([0-9]*\).*/\1/' | sort -n \
        | awk '{a[NR]=$1} END {print a[int(NR*0.5)+1] "/" a[int(NR*0.99)+1]}')"

    local rate_tm rate_limit pct
    rate_tm="$(echo "$TOTAL / $apply_s" | bc)"
    rate_limit="$(echo "$TOTAL / $limit_s" | bc)"
    pct="$(echo "scale=0; 100 * $limit_s / $apply_s" | bc)"
    ROWS_OUT+=("| $fmt | $TOTAL | $apply_s | $rate_tm | $limit_s | $rate_limit | ${pct}% | $(printf '%.0f' "$p50") | $(printf '%.0f' "$p99") | $commit_ms |")
}

for fmt in "${FORMATS[@]}"; do bench "$fmt"; done

echo "| format | messages | tidemark s | tidemark events/s | plain consumer s | plain events/s | tidemark / plain | fresh p50 ms @${RATE}/s | p99 ms | commit_ms p50/p99 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS_OUT[@]}"
