#!/usr/bin/env bash
# Benchmark: binlog change capture (`tidemark run`) into current + history, on a
# 500k-row and a 5M-row invoices table, against the plain binlog reader of the same
# changes on the same machine (`mariadb-binlog --read-from-remote-server`).
#
#   bench/cdc.sh                                  # SIZES="500000 5000000", 1,000,000 changes
#   SIZES=200000 CHANGES=100000 bench/cdc.sh      # smoke run
#
# Per table size it reports:
#   1. sustained apply rate: CHANGES row changes (20% inserts, 80% updates of random
#      existing rows, 10 rows per statement, 100 rows per transaction) are written
#      while tidemark is stopped; then `tidemark run --until-caught-up` applies the
#      backlog. Rate = CHANGES / wall time. The limit: `mariadb-binlog` reading and
#      decoding the same binlog range from the server (ratio tidemark / limit).
#   2. freshness at 1,000 and 10,000 changes/s: a paced writer (100 transactions/s)
#      runs for DURATION seconds while `tidemark run` streams; each changed row carries
#      updated_at = NOW(6) (its commit instant, within a millisecond); freshness of a
#      change = its `_ingest_ts` in history - updated_at. The commit itself follows
#      `_ingest_ts` by the `commit_ms` the run logs (reported too).
#   3. peak RSS of `tidemark run` (GNU time).
#
# Environment: SIZES, CHANGES (1000000), DURATION (20), SKIP_BUILD=1, BENCH_DIR.
# Progress goes to stderr, the report to stdout. See bench/README.md.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SIZES="${SIZES:-500000 5000000}"
CHANGES="${CHANGES:-1000000}"
DURATION="${DURATION:-20}"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench-cdc}"
DB=tm_cdc
TABLE=invoices

log() { printf '[cdc-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd -P)"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
# shellcheck source=bench/invoices.sh
source "$REPO/bench/invoices.sh"

if [ ! -x /usr/bin/time ] || ! command -v bc >/dev/null 2>&1; then
    as_root apt-get update >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y time bc >&2
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release -p tidemark"
    (cd "$REPO" && cargo build --release -p tidemark) >&2
fi
cp -f "$REPO/target/release/tidemark" "$BENCH_DIR/tidemark.bin"
TM="$BENCH_DIR/tidemark.bin"

URL="$("$REPO/scripts/mariadb.sh" start)"
PORT="${URL##*:}"
sql() { mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$PORT" -uroot "$@"; }
q() { sql -N -B -e "$1"; }
binlog_pos() { q "SHOW MASTER STATUS" | awk '{print $1, $2}'; }

# gen_sql N NEXT_ID MAX_ID: N row changes as SQL, 100 per transaction.
gen_sql() {
    python3 - "$@" <<'PY'
import random, sys
n, next_id, max_id = (int(a) for a in sys.argv[1:4])
rnd = random.Random(42 + next_id)
out = sys.stdout
done = 0
while done < n:
    out.write("BEGIN;\n")
    for _ in range(10):
        if rnd.random() < 0.2:
            ids = range(next_id, next_id + 10)
            next_id += 10
            vals = ",".join(
                f"({i},{i % 100000 + 1},'open','EUR',NOW(6),CURDATE(),{i % 100000}.25,NULL,NOW(6))" for i in ids)
            out.write(f"INSERT INTO {sys.argv[4]} VALUES {vals};\n")
        else:
            ids = ",".join(str(rnd.randint(1, max_id)) for _ in range(10))
            out.write(f"UPDATE {sys.argv[4]} SET total = total + 1, updated_at = NOW(6) WHERE id IN ({ids});\n")
        done += 10
    out.write("COMMIT;\n")
PY
}

# paced RATE SECONDS NEXT_ID MAX_ID: RATE changes/s as 100 transactions/s.
paced() {
    python3 - "$@" <<'PY'
import random, sys, time
rate, secs, next_id, max_id, table = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
per_tx = max(rate // 100, 1)
rnd = random.Random(7)
t0 = time.monotonic()
k = 0
while time.monotonic() - t0 < secs:
    stmts = []
    left = per_tx
    while left > 0:
        m = min(10, left)
        if rnd.random() < 0.2:
            vals = ",".join(f"({i},{i % 100000 + 1},'open','EUR',NOW(6),CURDATE(),1.00,NULL,NOW(6))" for i in range(next_id, next_id + m))
            next_id += m
            stmts.append(f"INSERT INTO {table} VALUES {vals};")
        else:
            ids = ",".join(str(rnd.randint(1, max_id)) for _ in range(m))
            stmts.append(f"UPDATE {table} SET total = total + 1, updated_at = NOW(6) WHERE id IN ({ids});")
        left -= m
    sys.stdout.write("BEGIN;\n" + "\n".join(stmts) + "\nCOMMIT;\n")
    sys.stdout.flush()
    k += 1
    wait = t0 + k / 100 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
PY
}

COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "# bench/cdc.sh — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT, $(nproc) cores"
echo "# MariaDB $(q 'SELECT VERSION()'), CHANGES=$CHANGES, DURATION=${DURATION}s"
echo
echo "| table rows | backlog changes | tidemark apply s | changes/s | limit (mariadb-binlog) s | ratio tidemark/limit | run peak RSS MiB | fresh p50 ms @1k/s | p99 @1k/s | fresh p50 ms @10k/s | p99 @10k/s | commit_ms p50/p99 @10k/s |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"

for ROWS in $SIZES; do
    log "== $ROWS rows"
    load_invoices "$DB" "$TABLE" "$ROWS"
    fit_buffer_pool "$DB" "$TABLE"
    WH="$BENCH_DIR/warehouse-$ROWS"
    rm -rf "$WH"
    CONF="$BENCH_DIR/tidemark-$ROWS.toml"
    cat >"$CONF" <<EOF
[environments.dev]
warehouse = "$WH"

[sources.bench]
url = "mysql://root@127.0.0.1:$PORT"
databases = ["$DB"]
EOF
    log "snapshot (tidemark run --until-caught-up)"
    TIDEMARK_LOG_FORMAT=json "$TM" --config "$CONF" run --until-caught-up 2>"$BENCH_DIR/snap-$ROWS.log"

    # 1. backlog
    log "writing $CHANGES changes while tidemark is stopped"
    read -r F1 P1 < <(binlog_pos)
    gen_sql "$CHANGES" $((ROWS + 1)) "$ROWS" "$DB.$TABLE" | sql
    read -r F2 P2 < <(binlog_pos)
    log "applying the backlog ($F1:$P1 .. $F2:$P2)"
    /usr/bin/time -f '%e %M' -o "$BENCH_DIR/time-$ROWS" \
        env TIDEMARK_LOG_FORMAT=json "$TM" --config "$CONF" run --until-caught-up 2>"$BENCH_DIR/apply-$ROWS.log"
    read -r APPLY_S RSS_KB < <(tail -n1 "$BENCH_DIR/time-$ROWS")
    FILES="$(q "SHOW BINARY LOGS" | awk -v a="$F1" -v b="$F2" '$1 >= a && $1 <= b {print $1}' | tr '\n' ' ')"
    T0=$(date +%s.%N)
    # shellcheck disable=SC2086
    mariadb-binlog --no-defaults --read-from-remote-server -h127.0.0.1 -P"$PORT" -uroot \
        --start-position="$P1" --stop-position="$P2" $FILES >/dev/null
    LIMIT_S="$(echo "$(date +%s.%N) - $T0" | bc)"
    RATE="$(echo "$CHANGES / $APPLY_S" | bc)"
    RATIO="$(echo "scale=2; $APPLY_S / $LIMIT_S" | bc)"

    # 2. freshness
    FRESH=()
    for rate in 1000 10000; do
        log "freshness at $rate changes/s for ${DURATION}s"
        TIDEMARK_LOG_FORMAT=json "$TM" --config "$CONF" run 2>"$BENCH_DIR/fresh-$ROWS-$rate.log" &
        RUN_PID=$!
        sleep 3
        START="$(q "SELECT NOW(6)")"
        next=$(( ROWS + CHANGES + rate * 1000 ))
        paced "$rate" "$DURATION" "$next" "$ROWS" "$DB.$TABLE" | sql
        sleep 3
        kill -TERM "$RUN_PID"; wait "$RUN_PID" || true
        read -r p50 p99 < <("$TM" --config "$CONF" sql --format csv \
            "SELECT approx_percentile_cont(f, 0.5), approx_percentile_cont(f, 0.99) FROM (
               SELECT (CAST(_ingest_ts AS BIGINT) - CAST(updated_at AS BIGINT)) / 1000.0 AS f
               FROM ${DB}_history.$TABLE WHERE updated_at > TIMESTAMP '$START' AND _op <> 'r')" \
            2>/dev/null | tail -n1 | tr ',' ' ')
        FRESH+=("$(printf '%.0f' "$p50")" "$(printf '%.0f' "$p99")")
        if [ "$rate" = 10000 ]; then
            COMMIT_MS="$(grep '"committed"' "$BENCH_DIR/fresh-$ROWS-$rate.log" | sed 's/.*"commit_ms":\([0-9]*\).*/\1/' | sort -n \
                | awk '{a[NR]=$1} END {print a[int(NR*0.5)+1] "/" a[int(NR*0.99)+1]}')"
        fi
    done
    echo "| $ROWS | $CHANGES | $APPLY_S | $RATE | $LIMIT_S | $RATIO | $((RSS_KB / 1024)) | ${FRESH[0]} | ${FRESH[1]} | ${FRESH[2]} | ${FRESH[3]} | $COMMIT_MS |"
done
