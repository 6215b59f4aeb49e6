#!/usr/bin/env bash
# Benchmark: SQL models (`tidemark build`, tidemark-models).
#
#   bench/models.sh                               # 5M-row input, 1 % changed; demo at scale 20
#   ROWS=1000000 SCALE=5 bench/models.sh          # smaller
#
# It measures two things, each as a ratio of two timings taken in the same run:
#   1. Incremental against whole: tidemark-models' `models_bench` example lands ROWS
#      rows into `bench.events` (five per customer) as capture lands them, builds two
#      incremental models over them (one summing them per customer, one cleaning them
#      row by row, keyed by the input's key), changes CHANGE of the rows (updates of
#      amount and status, deletes, inserts) in one commit, then times, per model, the
#      incremental build that lands them and a whole rebuild (--full-refresh) of the
#      same state, and checks the model equal to its SQL. Target (the issue): the
#      incremental build takes <= 5 % of the whole rebuild.
#   2. A whole build of the example models (examples/models) against DuckDB (PyPI)
#      running the same compiled SQL over the same inputs' Parquet files: `tidemark
#      demo --scale SCALE` lands the inputs, `tidemark maintain` folds every tail in
#      (DuckDB reads the files as they are), `tidemark build --full-refresh` is timed
#      (it reads the inputs, runs the models and lands each result with history: diff
#      by key, one commit), `tidemark compile` writes the SQL, and
#      scripts/duckdb_models.py times DuckDB creating each model as a table from views
#      over the Parquet files (it writes nothing to disk). The ratio is tidemark /
#      DuckDB.
#
# Environment:
#   ROWS=5000000 CHANGE=0.01 SCALE=20 DAYS=90
#   BENCH_DIR=DIR    scratch (default $REPO/target/bench/models)
#   PYTHON=PATH      a python with duckdb and deltalake[pyarrow] (default: the test
#                    suite's venv, target/test-services/pyclients/venv, made if missing)
# Builds target/release/tidemark and the example (cargo build --release) first.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
ROWS="${ROWS:-5000000}"
CHANGE="${CHANGE:-0.01}"
SCALE="${SCALE:-20}"
DAYS="${DAYS:-90}"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench/models}"
PYTHON="${PYTHON:-$REPO/target/test-services/pyclients/venv/bin/python}"
if ! "$PYTHON" -c 'import duckdb, deltalake, pyarrow' >/dev/null 2>&1; then
    python3 -m venv "$REPO/target/test-services/pyclients/venv"
    PYTHON="$REPO/target/test-services/pyclients/venv/bin/python"
    "$PYTHON" -m pip install --quiet duckdb 'deltalake[pyarrow]'
fi
cargo build --release --locked -p tidemark -p tidemark-models --bin tidemark --example models_bench
TM="$REPO/target/release/tidemark"
rm -rf "$BENCH_DIR"; mkdir -p "$BENCH_DIR"

echo "== 1. incremental against whole: $ROWS rows, $CHANGE changed"
# Each build logs its phases (plan, query, diff, commit) to stderr.
RUST_LOG="${RUST_LOG:-tidemark_models=info}" \
    "$REPO/target/release/examples/models_bench" --rows "$ROWS" --change "$CHANGE" | tee "$BENCH_DIR/incremental.json"

echo "== 2. example models against DuckDB: demo at scale $SCALE, $DAYS days"
DEMO="$BENCH_DIR/demo"
"$TM" demo --dir "$DEMO" --scale "$SCALE" --days "$DAYS" > "$BENCH_DIR/demo.txt"
"$TM" --warehouse "$DEMO" maintain --no-vacuum > /dev/null 2>&1
"$TM" --warehouse "$DEMO" sql "SELECT count(*) AS invoices FROM invoicing.invoices" 2>/dev/null
start=$(date +%s.%N)
"$TM" --warehouse "$DEMO" build --models "$DEMO/models" --full-refresh > "$BENCH_DIR/build.txt" 2>/dev/null
end=$(date +%s.%N)
"$TM" --warehouse "$DEMO" maintain --no-vacuum > /dev/null 2>&1
"$TM" --warehouse "$DEMO" compile --models "$DEMO/models" --out "$BENCH_DIR/compiled" > /dev/null 2>&1
duck="$("$PYTHON" scripts/duckdb_models.py time "$DEMO" "$BENCH_DIR/compiled")"
"$PYTHON" scripts/duckdb_models.py compare "$DEMO" "$BENCH_DIR/compiled" | tail -1
"$PYTHON" - "$start" "$end" "$duck" <<'PY'
import json, sys
tm = float(sys.argv[2]) - float(sys.argv[1])
duck = json.loads(sys.argv[3])["seconds"]
print(json.dumps({"tidemark_build_s": round(tm, 3), "duckdb_s": round(duck, 3), "ratio": round(tm / duck, 2)}))
PY
