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
#   3. Spark's JDBC append (the seed design's way), bench/publish_spark.py: PySpark in
#      local mode (local[2]) reads the Parquet files of the lake's history table
#      (bench.events, its live files from the Delta log), keeps the same rows
#      (_op = 'r') and columns as the CSV, and `df.write.jdbc(…, mode="append")`s
#      them through Debian's PostgreSQL JDBC driver (/usr/share/java/postgresql.jar)
#      into an empty table of the same definition without key, batchsize 10000.
#      Timed: Spark's start-up apart, and the write (Parquet scan + JDBC inserts).
#      Ratio = tidemark append's rows/s over Spark's.
#   Targets (issue 19): append >= 0.8x \copy's rate, >= 5x Spark's.
#
# Environment: ROWS=5000000 CHANGE=0.01 BENCH_DIR=DIR (default target/bench/publish)
#   SPARK=0 skips the Spark leg. SPARK_PYTHON=PATH a python with pyspark (default
#     target/bench/spark-venv/bin/python, created with `pip install pyspark` from PyPI
#     if missing); SPARK_BATCHSIZE=10000 (Spark's own default is 1000);
#     SPARK_MASTER=local[2]. The JDBC driver is Debian's libpostgresql-jdbc-java
#     (installed with apt-get if /usr/share/java/postgresql.jar is missing).
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
SPARK="${SPARK:-1}"
SPARK_VENV="$REPO/target/bench/spark-venv"
SPARK_PYTHON="${SPARK_PYTHON:-$SPARK_VENV/bin/python}"
SPARK_BATCHSIZE="${SPARK_BATCHSIZE:-10000}"
SPARK_MASTER="${SPARK_MASTER:-local[2]}"
JDBC_JAR=/usr/share/java/postgresql.jar
mkdir -p "$BENCH_DIR"
die() { echo "publish.sh: $*" >&2; exit 1; }
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

URL="$("$REPO/scripts/postgres.sh" start)"
export TIDEMARK_TEST_PG_PASSWORD="${TIDEMARK_TEST_PG_PASSWORD:-tidemark}"
export PGPASSWORD="$TIDEMARK_TEST_PG_PASSWORD"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 "$URL")

case "${BENCH_PROFILE:-release}" in
    release)
        # -p tidemark too: the dependencies' features as the other benchmarks'
        # release builds have them, so those are reused.
        cargo build --release --locked -p tidemark -p tidemark-publish --example publish_bench
        BENCH="$REPO/target/release/examples/publish_bench" ;;
    dev-opt)
        opt=()
        for c in tidemark-core tidemark-lake tidemark-query tidemark-publish; do
            opt+=(--config "profile.dev.package.$c.opt-level=3")
        done
        # --workspace: the dependencies' features as the tests build them, so the
        # debug build's dependencies are reused.
        cargo build "${opt[@]}" --locked --workspace --example publish_bench
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

echo "== 3. Spark JDBC append of the same rows, from the lake's Parquet files"
rm -f "$BENCH_DIR/spark.json"
if [ "$SPARK" = 0 ]; then
    echo "not measured: SPARK=0" | tee "$BENCH_DIR/spark.txt"
else
    if ! "$SPARK_PYTHON" -c 'import pyspark' >/dev/null 2>&1; then
        [ "$SPARK_PYTHON" = "$SPARK_VENV/bin/python" ] \
            || { echo "SPARK_PYTHON=$SPARK_PYTHON cannot import pyspark" >&2; exit 1; }
        echo "installing pyspark from PyPI into $SPARK_VENV"
        python3 -m venv "$SPARK_VENV"
        "$SPARK_VENV/bin/pip" install --quiet pyspark
    fi
    if [ ! -f "$JDBC_JAR" ]; then
        echo "installing Debian's PostgreSQL JDBC driver (libpostgresql-jdbc-java)"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y libpostgresql-jdbc-java
    fi
    "${PSQL[@]}" -c "DROP SCHEMA IF EXISTS bench_spark CASCADE; CREATE SCHEMA bench_spark;
      CREATE TABLE bench_spark.events (LIKE bench_mirror.events)"
    # Spark's log goes to spark.log; its one JSON line to spark-run.json.
    "$SPARK_PYTHON" "$REPO/bench/publish_spark.py" --history "$BENCH_DIR/wh/bench/events/history" \
        --url "$URL" --table bench_spark.events --columns "$COLS" --where "_op = 'r'" \
        --batchsize "$SPARK_BATCHSIZE" --master "$SPARK_MASTER" --jar "$JDBC_JAR" \
        >"$BENCH_DIR/spark-run.json" 2>"$BENCH_DIR/spark.log" \
        || { tail -30 "$BENCH_DIR/spark.log" >&2; exit 1; }
    n=$("${PSQL[@]}" -tAc "SELECT count(*) FROM bench_spark.events")
    python3 - "$BENCH_DIR" "$n" <<'PY' | tee "$BENCH_DIR/spark.json"
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
r = json.load(open(f"{d}/spark-run.json"))
r["rows"] = n
r["write_rows_per_sec"] = round(n / r["write_secs"])
total = r["startup_secs"] + r["read_plan_secs"] + r["write_secs"]
r["with_startup_secs"] = round(total, 2)
r["with_startup_rows_per_sec"] = round(n / total)
print(json.dumps(r))
PY
fi

echo "== summary"
python3 - "$BENCH_DIR" <<'PY'
import json, os, sys
d = sys.argv[1]
a = json.load(open(f"{d}/append.json")); m = json.load(open(f"{d}/mirror.json")); c = json.load(open(f"{d}/copy.json"))
sp = json.load(open(f"{d}/spark.json")) if os.path.exists(f"{d}/spark.json") else None
ta = a["full_rows_per_sec"]; tm = m["full_rows_per_sec"]
rows = [
    ("tidemark append, whole table", a["full_publish_secs"], a["full_rows"], ta, ""),
    ("tidemark mirror, whole table", m["full_publish_secs"], m["full_rows"], tm, ""),
    ("psql \\copy CSV, no key", c["copy_nokey_secs"], c["rows"], c["copy_nokey_rows_per_sec"],
     f"append/\\copy {ta / c['copy_nokey_rows_per_sec']:.2f}x"),
    ("psql \\copy CSV, primary key", c["copy_withkey_secs"], c["rows"], c["copy_withkey_rows_per_sec"],
     f"mirror/\\copy {tm / c['copy_withkey_rows_per_sec']:.2f}x"),
]
if sp:
    rows.append((f"Spark JDBC append, write (batchsize {sp['batchsize']}, {sp['master']})",
                 sp["write_secs"], sp["rows"], sp["write_rows_per_sec"],
                 f"append/Spark {ta / sp['write_rows_per_sec']:.2f}x"))
    rows.append((f"Spark, with start-up ({sp['startup_secs']} s) and planning ({sp['read_plan_secs']} s)",
                 sp["with_startup_secs"], sp["rows"], sp["with_startup_rows_per_sec"],
                 f"append/Spark {ta / sp['with_startup_rows_per_sec']:.2f}x"))
print(f"| {'leg':<62} | {'secs':>7} | {'rows':>9} | {'rows/s':>9} | ratio")
for name, secs, n, rate, ratio in rows:
    print(f"| {name:<62} | {secs:>7.2f} | {n:>9} | {rate:>9.0f} | {ratio}")
r = ta / c["copy_nokey_rows_per_sec"]
print(f"target append >= 0.8x \\copy (no key): {r:.2f}x: {'met' if r >= 0.8 else 'MISSED'}")
r = tm / c["copy_withkey_rows_per_sec"]
print(f"(mirror against \\copy with the primary key: {r:.2f}x: {'met' if r >= 0.8 else 'missed'} at 0.8x)")
if sp:
    r = ta / sp["write_rows_per_sec"]
    print(f"target append >= 5x Spark (write only): {r:.2f}x: {'met' if r >= 5 else 'MISSED'}")
else:
    print("target >= 5x Spark: not measured")
print(f"incremental ({a['changed']} changed): append {a['incremental_publish_secs']:.2f} s = "
      f"{a['incremental_of_full']*100:.1f} % of the full publish ({a['full_publish_secs']:.2f} s), "
      f"mirror {m['incremental_publish_secs']:.2f} s = {m['incremental_of_full']*100:.1f} % "
      f"({m['full_publish_secs']:.2f} s)")
PY
