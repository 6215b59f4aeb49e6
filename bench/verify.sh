#!/usr/bin/env bash
# Benchmark: `tidemark verify` of one invoice table (snapshotted first) vs. a plain
# `mariadb --quick -e 'SELECT * FROM …' > /dev/null` of the same table.
#
#   bench/verify.sh                        # 5,000,000 rows, 3 runs
#   ROWS=200000 RUNS=1 bench/verify.sh     # quick smoke run
#
# Environment (knobs):
#   ROWS=5000000        rows in tm_bench.invoices (reloaded only if the count differs)
#   RUNS=3              measured runs; odd runs read client-first, even runs verify-first
#   CHUNK_ROWS=10000    verify --chunk-rows
#   VERIFY_ARGS=        more arguments for verify (e.g. "--no-history", "--max-rows-per-sec 50000")
#   SKIP_BUILD=1        do not run `cargo build --release -p tidemark` (binary must exist)
#   TIDEMARK_BIN=PATH   use this tidemark binary (implies SKIP_BUILD=1; default target/release/tidemark)
#   BENCH_DIR=DIR       scratch directory (default: $REPO/target/bench)
#
# It uses the private MariaDB of scripts/mariadb.sh (started if needed) and the
# database `tm_bench` that bench/snapshot.sh loads (bench/invoices.sh); its warehouse
# and config are its own (verify-warehouse/, verify.toml), so it does not disturb
# snapshot.sh's. The InnoDB buffer pool is grown (never shrunk) to hold the table.
#
# verify waits until the lake has landed past the binlog position it read at, so
# while it runs a loop lands everything up to now with `tidemark run
# --until-caught-up` every second (the load itself is kept out of the binlog, so
# there is little to land); the report's timings_ms.wait says what that cost.
#
# Everything printed on stdout is the report; progress goes to stderr.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ROWS="${ROWS:-5000000}"
RUNS="${RUNS:-3}"
CHUNK_ROWS="${CHUNK_ROWS:-10000}"
VERIFY_ARGS="${VERIFY_ARGS:-}"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench}"
DB=tm_bench
TABLE=invoices

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$ROWS" =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer, got '$ROWS'"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, got '$RUNS'"
[[ "$CHUNK_ROWS" =~ ^[1-9][0-9]*$ ]] || die "CHUNK_ROWS must be a positive integer"

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd -P)"
WAREHOUSE="$BENCH_DIR/verify-warehouse"
CONFIG="$BENCH_DIR/verify.toml"
RESULTS_TSV="$BENCH_DIR/verify-results-$(date +%Y%m%d-%H%M%S).tsv"
# Stops the background lander (below) however the script ends.
LANDER_STOP="$BENCH_DIR/verify-lander.stop"
trap 'touch "$LANDER_STOP"' EXIT

# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
# shellcheck source=bench/invoices.sh
source "$REPO/bench/invoices.sh"

# ------------------------------------------------------------------ tools
if [ ! -x /usr/bin/time ]; then
    log "installing GNU time (/usr/bin/time) with apt-get"
    as_root apt-get update >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y time >&2
fi
[ -x /usr/bin/time ] || die "/usr/bin/time is missing"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to read verify's JSON report"

# ------------------------------------------------------------------ build
if [ -n "${TIDEMARK_BIN:-}" ]; then
    SKIP_BUILD=1
else
    TIDEMARK_BIN="$REPO/target/release/tidemark"
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    log "cargo build --release -p tidemark (slow the first time; may wait for the cargo lock)"
    (cd "$REPO" && cargo build --release -p tidemark) >&2
fi
[ -x "$TIDEMARK_BIN" ] || die "no tidemark binary at $TIDEMARK_BIN"
# Measure a private copy: a concurrent `cargo build` must not swap the binary mid-run.
BIN_ORIGIN="$TIDEMARK_BIN"
BIN_BUILT="$(date -r "$TIDEMARK_BIN" '+%Y-%m-%d %H:%M:%S')"
cp -f "$TIDEMARK_BIN" "$BENCH_DIR/tidemark-verify.bin"
TIDEMARK_BIN="$BENCH_DIR/tidemark-verify.bin"

# ------------------------------------------------------------------ MariaDB
URL="$("$REPO/scripts/mariadb.sh" start)"
PORT="${URL##*:}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "cannot read the port from '$URL'"
log "MariaDB at $URL"

sql() { mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$PORT" -uroot "$@"; }
q() { sql -N -B -e "$1"; }

q "CREATE DATABASE IF NOT EXISTS $DB"
have="$(q "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='$DB' AND table_name='$TABLE'")"
count=-1
[ "$have" = 1 ] && count="$(q "SELECT COUNT(*) FROM $DB.$TABLE")"

if [ "$count" != "$ROWS" ]; then
    log "loading $ROWS rows into $DB.$TABLE (had: $count)"
    load_invoices "$DB" "$TABLE" "$ROWS"
else
    log "$DB.$TABLE already has $ROWS rows; not reloading"
fi

fit_buffer_pool "$DB" "$TABLE"
table_bytes="$(q "SELECT data_length + index_length FROM information_schema.tables WHERE table_schema='$DB' AND table_name='$TABLE'")"
pool_bytes="$(q "SELECT @@innodb_buffer_pool_size")"

log "warming the buffer pool (COUNT(*) and one discarded full read)"
q "SELECT COUNT(*) FROM $DB.$TABLE" >/dev/null
sql --quick -e "SELECT * FROM $DB.$TABLE" >/dev/null

# ------------------------------------------------------------------ facts
MARIADB_VERSION="$(q "SELECT VERSION()")"
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY=""
if ! git -C "$REPO" diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null; then
    DIRTY=" (+ uncommitted changes under crates/ or Cargo.*)"
fi
CPU_MODEL="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
MEM_TOTAL="$(free -m | awk '/^Mem:/ {print $2}')"

# A fixed replica server id of its own: the tests' runs use others.
cat >"$CONFIG" <<EOF
[environments.dev]
warehouse = "$WAREHOUSE"

[sources.bench]
url = "mysql://root@127.0.0.1:$PORT"
databases = ["$DB"]
include = ["$DB.$TABLE"]
snapshot_chunk_rows = 250000
flush_interval_ms = 200
server_id = 990001
EOF

tm() { "$TIDEMARK_BIN" --config "$CONFIG" "$@"; }

# ------------------------------------------------------------------ the lake
log "snapshotting $DB.$TABLE into a fresh warehouse ($WAREHOUSE)"
rm -rf "$WAREHOUSE"
tm snapshot >"$BENCH_DIR/verify-snapshot.out" 2>"$BENCH_DIR/verify-snapshot.log" \
    || { tail -n 20 "$BENCH_DIR/verify-snapshot.log" >&2; die "tidemark snapshot failed"; }
log "landing up to now once (run --until-caught-up)"
tm run --until-caught-up >/dev/null 2>"$BENCH_DIR/verify-land.log" \
    || { tail -n 20 "$BENCH_DIR/verify-land.log" >&2; die "tidemark run --until-caught-up failed"; }

# ------------------------------------------------------------------ measuring
# Seconds from GNU time -v's "Elapsed (wall clock) time (h:mm:ss or m:ss): …".
elapsed_s() {
    sed -n 's/^[[:space:]]*Elapsed (wall clock) time[^:]*: *//p' "$1" | tail -n1 |
        awk -F: '{s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s}'
}
# KiB from GNU time -v's "Maximum resident set size (kbytes): …".
max_rss_kib() {
    sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): *//p' "$1" | tail -n1
}

# measure OUT ERR CMD...: runs CMD with stdout to OUT, stderr to ERR and GNU time's
# report to ERR.time; sets M_WALL (s), M_RSS (peak KiB) and M_RC (exit status).
M_WALL= M_RSS= M_RC=
measure() {
    local out="$1" err="$2"; shift 2
    M_RC=0
    /usr/bin/time -v -o "$err.time" "$@" >"$out" 2>"$err" || M_RC=$?
    M_WALL="$(elapsed_s "$err.time")"
    M_RSS="$(max_rss_kib "$err.time")"
    [ -n "$M_WALL" ] && [ -n "$M_RSS" ] || { cat "$err.time" >&2; die "cannot read GNU time's report"; }
}

run_client() {
    measure /dev/null "$BENCH_DIR/verify-client.err" \
        mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$PORT" -uroot \
        --quick -e "SELECT * FROM $DB.$TABLE"
    [ "$M_RC" = 0 ] || { tail -n 20 "$BENCH_DIR/verify-client.err" >&2; die "client read failed"; }
    C_WALL=$M_WALL C_RSS=$M_RSS
}

# Lands everything up to now, every second, until $1 exists.
lander() {
    local stop="$1"
    while [ ! -e "$stop" ]; do
        tm run --until-caught-up >/dev/null 2>>"$BENCH_DIR/verify-lander.log" || true
        sleep 1
    done
}

run_verify() {
    local report="$BENCH_DIR/verify-run$1.json" err="$BENCH_DIR/verify-run$1.log"
    local stop="$LANDER_STOP" lander_pid
    rm -f "$stop"
    lander "$stop" &
    lander_pid=$!
    # shellcheck disable=SC2086  # VERIFY_ARGS is a list of words
    measure "$report" "$err" "$TIDEMARK_BIN" --config "$CONFIG" verify \
        --table "$DB.$TABLE" --format json --chunk-rows "$CHUNK_ROWS" $VERIFY_ARGS
    touch "$stop"
    wait "$lander_pid" || true
    V_WALL=$M_WALL V_RSS=$M_RSS
    # status rows_source rows_lake chunks chunks_mismatched differences history_versions
    # history_violations and timings_ms (source wait lake bisect history), tab-separated.
    local fields
    fields="$(python3 - "$report" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
t = doc["tables"][0]
tm = t.get("timings_ms") or {}
diff = sum(t.get(k) or 0 for k in ("missing_in_lake", "extra_in_lake", "different"))
print("\t".join(str(x) for x in [
    t.get("status"), t.get("rows_source"), t.get("rows_lake"), t.get("chunks"),
    t.get("chunks_mismatched"), diff, t.get("history_versions"), t.get("history_violations"),
    tm.get("source", 0), tm.get("wait", 0), tm.get("lake", 0), tm.get("bisect", 0), tm.get("history", 0)]))
PY
)" || { cat "$report" >&2; tail -n 20 "$err" >&2; die "verify's report is not the JSON expected"; }
    IFS=$'\t' read -r V_STATUS V_ROWS_SRC V_ROWS_LAKE V_CHUNKS V_CHUNKS_BAD V_DIFF V_HVERSIONS V_HVIOL \
        T_SOURCE T_WAIT T_LAKE T_BISECT T_HISTORY <<<"$fields"
    if [ "$M_RC" != 0 ] || [ "$V_STATUS" != clean ] || [ "$V_ROWS_SRC" != "$ROWS" ] || [ "$V_ROWS_LAKE" != "$ROWS" ]; then
        cat "$report" >&2
        tail -n 20 "$err" >&2
        die "verify exited $M_RC with status '$V_STATUS' (rows $V_ROWS_SRC source, $V_ROWS_LAKE lake; expected $ROWS, clean)"
    fi
}

printf 'run\torder\tclient_s\tclient_rss_kib\tverify_s\tverify_rss_kib\tratio\tsource_ms\twait_ms\tlake_ms\tbisect_ms\thistory_ms\tchunks\thistory_versions\n' >"$RESULTS_TSV"

for run in $(seq 1 "$RUNS"); do
    if (( run % 2 == 1 )); then
        order="client,verify"
        log "run $run/$RUNS: client read"; run_client
        log "run $run/$RUNS: tidemark verify"; run_verify "$run"
    else
        order="verify,client"
        log "run $run/$RUNS: tidemark verify"; run_verify "$run"
        log "run $run/$RUNS: client read"; run_client
    fi
    ratio="$(awk -v v="$V_WALL" -v c="$C_WALL" 'BEGIN {printf "%.3f", v / c}')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$run" "$order" "$C_WALL" "$C_RSS" "$V_WALL" "$V_RSS" "$ratio" \
        "$T_SOURCE" "$T_WAIT" "$T_LAKE" "$T_BISECT" "$T_HISTORY" "$V_CHUNKS" "$V_HVERSIONS" >>"$RESULTS_TSV"
    log "run $run: client ${C_WALL}s, verify ${V_WALL}s (waited ${T_WAIT} ms), ratio $ratio, verify peak RSS $((V_RSS / 1024)) MiB"
done

# ------------------------------------------------------------------ report
median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { awk -F'\t' -v c="$1" 'NR > 1 {print $c}' "$RESULTS_TSV"; }
MED_C="$(col 3 | median)"; MED_V="$(col 5 | median)"
MED_RATIO_RUNS="$(col 7 | median)"
MED_V_RSS="$(col 6 | median)"; MAX_V_RSS="$(col 6 | sort -g | tail -n1)"
MED_WAIT="$(col 9 | median)"
RATIO="$(awk -v v="$MED_V" -v c="$MED_C" 'BEGIN {printf "%.3f", v / c}')"
RATIO_NO_WAIT="$(awk -v v="$MED_V" -v w="$MED_WAIT" -v c="$MED_C" 'BEGIN {printf "%.3f", (v - w / 1000) / c}')"

mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }

echo "tidemark verify benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo
echo "machine:   $(nproc) CPUs, $CPU_MODEL, ${MEM_TOTAL} MiB RAM, $(uname -sr)"
echo "MariaDB:   $MARIADB_VERSION (innodb_buffer_pool_size $((pool_bytes >> 20)) MiB, table $((table_bytes >> 20)) MiB)"
echo "tidemark:  $COMMIT$DIRTY; binary $BIN_ORIGIN built $BIN_BUILT"
echo "table:     $DB.$TABLE, $ROWS rows; verify --chunk-rows $CHUNK_ROWS ${VERIFY_ARGS}; $RUNS runs"
echo "command:   ROWS=$ROWS RUNS=$RUNS CHUNK_ROWS=$CHUNK_ROWS VERIFY_ARGS='$VERIFY_ARGS' bench/verify.sh"
echo
echo "| run | order | client s | client RSS MiB | verify s | verify RSS MiB | ratio v/c | source ms | wait ms | lake ms | bisect ms | history ms | chunks | history versions |"
echo "|----:|-------|---------:|---------------:|---------:|---------------:|----------:|----------:|--------:|--------:|----------:|-----------:|-------:|-----------------:|"
awk -F'\t' 'NR > 1 {
    printf "| %s | %s | %.2f | %.0f | %.2f | %.0f | %.3f | %s | %s | %s | %s | %s | %s | %s |\n",
        $1, $2, $3, $4 / 1024, $5, $6 / 1024, $7, $8, $9, $10, $11, $12, $13, $14
}' "$RESULTS_TSV"
echo
echo "median client read:     ${MED_C} s"
echo "median tidemark verify: ${MED_V} s  ($(awk -v r="$ROWS" -v s="$MED_V" 'BEGIN {printf "%.0f", r / s}') rows/s; median wait for the lake ${MED_WAIT} ms)"
echo "ratio verify/client:    ${RATIO} (of medians; ${RATIO_NO_WAIT} without the wait); median of per-run ratios ${MED_RATIO_RUNS}"
echo "verify peak RSS:        median $(mib "$MED_V_RSS") MiB, max $(mib "$MAX_V_RSS") MiB"
echo "correctness:            every run clean, $ROWS rows on both sides"
echo
echo "raw results: $RESULTS_TSV; reports: $BENCH_DIR/verify-run*.json; logs: $BENCH_DIR/verify-run*.log"
