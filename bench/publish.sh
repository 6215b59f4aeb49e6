#!/usr/bin/env bash
# Benchmark: publishing to PostgreSQL (`tidemark publish`, tidemark-publish).
#
#   bench/publish.sh                       # 5M rows, 1 % changed
#   ROWS=1000000 bench/publish.sh          # smaller
#
# In one run, against the private PostgreSQL of scripts/postgres.sh (started if
# needed; fsync off, a test instance):
#   1. tidemark-publish's `publish_bench` example lands ROWS rows into bench.events
#      (history commits of 500,000 rows, as capture lands them), publishes them whole
#      in `append` mode (binary COPY straight into the table, in one transaction with
#      the state row) and times it; then changes CHANGE of the rows in one commit and
#      times the incremental publish. The same again in `mirror` mode (COPY into a
#      staging table, then INSERT … ON CONFLICT into a table with a primary key).
#   2. The limit: the same rows exported to a CSV file (psql \copy … TO), then
#      `psql \copy … FROM` that file into an empty table of the same definition,
#      timed: without a key (against append) and with the primary key (against
#      mirror). Ratio = tidemark's rows/s over \copy's.
#   3. Spark's JDBC append (the seed design's way) only if pyspark imports in
#      $PYTHON; otherwise reported as not measured.
#
# Environment: ROWS=5000000 CHANGE=0.01 BENCH_DIR=DIR (default target/bench/publish)
#   BENCH_PROFILE=release (default): builds the example with cargo build --release.
#   BENCH_PROFILE=dev-opt: the dev profile with tidemark's crates at opt-level 3 and
#     dependencies at the workspace's dev opt-level 1 (much quicker to build than a
#     cold release build; DataFusion and Parquet run slower than in release).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
ROWS="${ROWS:-5000000}"
CHANGE="${CHANGE:-0.01}"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench/publish}"
PYTHON="${PYTHON:-$REPO/target/test-services/pyclients/venv/bin/python}"
mkdir -p "$BENCH_DIR"

URL="$("$REPO/scripts/postgres.sh" start)"
export TIDEMARK_TEST_PG_PASSWORD="${TIDEMARK_TEST_PG_PASSWORD:-tidemark}"
export PGPASSWORD="$TIDEMARK_TEST_PG_PASSWORD"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 "$URL")

case "${BENCH_PROFILE:-release}" in
    release)
        cargo build --release --locked -p tidemark-publish --example publish_bench
        BENCH="$REPO/target/release/examples/publish_bench" ;;
    dev-opt)
        opt=()
        for c in tidemark-core tidemark-lake tidemark-query tidemark-publish; do
            opt+=(--config "profile.dev.package.$c.opt-level=3")
        done
        cargo build "${opt[@]}" --locked -p tidemark-publish --example publish_bench
        BENCH="$REPO/target/debug/examples/publish_bench" ;;
    *) echo "BENCH_PROFILE must be release or dev-opt" >&2; exit 2 ;;
esac

now() { date +%s.%N; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

echo "== 1. tidemark publish: $ROWS rows, then $CHANGE changed"
"${PSQL[@]}" -c "DROP SCHEMA IF EXISTS bench_append CASCADE; DROP SCHEMA IF EXISTS bench_mirror CASCADE"
"$BENCH" --rows "$ROWS" --change "$CHANGE" --mode append --schema bench_append \
    --dir "$BENCH_DIR/wh" --target "$URL" | tee "$BENCH_DIR/append.json"
"$BENCH" --rows "$ROWS" --change "$CHANGE" --mode mirror --schema bench_mirror \
    --dir "$BENCH_DIR/wh" --target "$URL" | tee "$BENCH_DIR/mirror.json"

echo "== 2. psql \\copy of the same rows from CSV"
COLS="id, customer_id, amount, status, created_at, note, _op, _source_ts, _ingest_ts"
CSV="$BENCH_DIR/rows.csv"
# The rows of the full publish (the snapshot reads, _op = 'r'), as CSV.
"${PSQL[@]}" -c "\\copy (SELECT $COLS FROM bench_append.events WHERE _op = 'r') TO '$CSV' CSV"
"${PSQL[@]}" -c "DROP SCHEMA IF EXISTS bench_copy CASCADE; CREATE SCHEMA bench_copy;
  CREATE TABLE bench_copy.nokey (LIKE bench_mirror.events);
  CREATE TABLE bench_copy.withkey (LIKE bench_mirror.events INCLUDING INDEXES)"
t0=$(now); "${PSQL[@]}" -c "\\copy bench_copy.nokey ($COLS) FROM '$CSV' CSV"; t1=$(now)
copy_nokey=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
t0=$(now); "${PSQL[@]}" -c "\\copy bench_copy.withkey ($COLS) FROM '$CSV' CSV"; t1=$(now)
copy_withkey=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
n=$("${PSQL[@]}" -tAc "SELECT count(*) FROM bench_copy.nokey")
echo "{\"rows\": $n, \"copy_nokey_secs\": $copy_nokey, \"copy_nokey_rows_per_sec\": $(rate "$n" "$copy_nokey"), \"copy_withkey_secs\": $copy_withkey, \"copy_withkey_rows_per_sec\": $(rate "$n" "$copy_withkey")}" | tee "$BENCH_DIR/copy.json"

echo "== 3. Spark JDBC append"
if "$PYTHON" -c 'import pyspark' >/dev/null 2>&1; then
    echo "pyspark is importable, but the Spark leg is not written yet" | tee "$BENCH_DIR/spark.txt"
else
    echo "not measured: pyspark is not installed in $PYTHON" | tee "$BENCH_DIR/spark.txt"
fi

echo "== ratios (tidemark rows/s over \\copy rows/s)"
python3 - "$BENCH_DIR" <<'PY'
import json, sys
d = sys.argv[1]
a = json.load(open(f"{d}/append.json")); m = json.load(open(f"{d}/mirror.json")); c = json.load(open(f"{d}/copy.json"))
print(f"append full publish: {a['full_rows_per_sec']:.0f} rows/s vs \\copy (no key) {c['copy_nokey_rows_per_sec']:.0f}: {a['full_rows_per_sec']/c['copy_nokey_rows_per_sec']:.2f}x")
print(f"mirror full publish: {m['full_rows_per_sec']:.0f} rows/s vs \\copy (primary key) {c['copy_withkey_rows_per_sec']:.0f}: {m['full_rows_per_sec']/c['copy_withkey_rows_per_sec']:.2f}x")
print(f"incremental ({a['changed']} changed): append {a['incremental_of_full']*100:.1f} % of the full publish, mirror {m['incremental_of_full']*100:.1f} %")
PY
