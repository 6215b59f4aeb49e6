#!/usr/bin/env bash
# Benchmark: `tidemark snapshot` of one invoice table vs. a plain
# `mariadb --quick -e 'SELECT * FROM …' > /dev/null` of the same table.
#
#   bench/snapshot.sh                      # 5,000,000 rows, 3 runs
#   ROWS=200000 RUNS=1 bench/snapshot.sh   # quick smoke run
#
# See bench/README.md for what it measures and why, bench/RESULTS.md for figures.
#
# Environment (knobs):
#   ROWS=5000000        rows in tm_bench.invoices (reloaded only if the count differs)
#   RUNS=3              measured runs; odd runs read client-first, even runs snapshot-first
#   CHUNK_ROWS=250000   snapshot_chunk_rows in the generated tidemark config
#   SKIP_BUILD=1        do not run `cargo build --release -p tidemark` (binary must exist)
#   TIDEMARK_BIN=PATH   use this tidemark binary (implies SKIP_BUILD=1)
#   BENCH_DIR=DIR       scratch directory (default: $REPO/target/bench)
#
# It uses the private MariaDB of scripts/mariadb.sh (started if needed) and its own
# database `tm_bench`; nothing else on that server is touched, except that the
# InnoDB buffer pool is grown (never shrunk) if the table would not fit in it, so
# that both contenders read from memory.
#
# Everything printed on stdout is the report; progress goes to stderr.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ROWS="${ROWS:-5000000}"
RUNS="${RUNS:-3}"
CHUNK_ROWS="${CHUNK_ROWS:-250000}"
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
WAREHOUSE="$BENCH_DIR/warehouse"
CONFIG="$BENCH_DIR/tidemark.toml"
RESULTS_TSV="$BENCH_DIR/results-$(date +%Y%m%d-%H%M%S).tsv"

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
cp -f "$TIDEMARK_BIN" "$BENCH_DIR/tidemark.bin"
TIDEMARK_BIN="$BENCH_DIR/tidemark.bin"

# ------------------------------------------------------------------ MariaDB
URL="$("$REPO/scripts/mariadb.sh" start)"
PORT="${URL##*:}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "cannot read the port from '$URL'"
MARIADBD_PID="$(cat "$REPO/target/test-services/mariadb/mariadbd.pid")"
log "MariaDB at $URL (mariadbd pid $MARIADBD_PID)"

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

cat >"$CONFIG" <<EOF
[environments.dev]
warehouse = "$WAREHOUSE"

[sources.bench]
url = "mysql://root@127.0.0.1:$PORT"
databases = ["$DB"]
snapshot_chunk_rows = $CHUNK_ROWS
parallel_tables = 2
EOF

# ------------------------------------------------------------------ measuring
CLK_TCK="$(getconf CLK_TCK)"
# CPU ticks (user+system) a process has used so far.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Busy and total ticks of the whole machine.
sys_ticks() { awk '/^cpu / {t=0; for (i=2;i<=NF;i++) t+=$i; print t - $5 - $6, t}' /proc/stat; }

# measure OUT ERR CMD...: runs CMD with stdout to OUT and stderr to ERR; sets
# M_WALL (s), M_RSS (peak KiB), M_CPU (its user+sys s), M_DB_CPU (mariadbd's CPU s
# meanwhile) and M_BUSY (% of the whole machine's CPU that was busy meanwhile).
M_WALL= M_RSS= M_CPU= M_DB_CPU= M_BUSY=
measure() {
    local out="$1" err="$2"; shift 2
    local tf="$BENCH_DIR/time.out" db0 db1 s0 s1 u s
    db0="$(proc_ticks "$MARIADBD_PID")"; s0="$(sys_ticks)"
    /usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" >"$out" 2>"$err" \
        || { tail -n 20 "$err" >&2; die "command failed: $*"; }
    db1="$(proc_ticks "$MARIADBD_PID")"; s1="$(sys_ticks)"
    read -r M_WALL M_RSS u s < <(tail -n1 "$tf")
    M_CPU="$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}')"
    M_DB_CPU="$(awk -v a="$db0" -v b="$db1" -v h="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / h}')"
    M_BUSY="$(awk -v a="$s0" -v b="$s1" 'BEGIN {split(a, x, " "); split(b, y, " ");
              d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0)}')"
}

run_client() {
    measure /dev/null "$BENCH_DIR/client.err" mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$PORT" -uroot \
        --quick -e "SELECT * FROM $DB.$TABLE"
    C_WALL=$M_WALL C_RSS=$M_RSS C_CPU=$M_CPU C_DB_CPU=$M_DB_CPU C_BUSY=$M_BUSY
}

run_snapshot() {
    rm -rf "$WAREHOUSE"
    sync
    measure "$BENCH_DIR/snapshot.out" "$BENCH_DIR/snapshot-run$1.log" \
        "$TIDEMARK_BIN" --config "$CONFIG" snapshot
    S_WALL=$M_WALL S_RSS=$M_RSS S_CPU=$M_CPU S_DB_CPU=$M_DB_CPU S_BUSY=$M_BUSY
    local landed
    # The summary line starts with the source table; its first all-digit field is the row count.
    landed="$(awk -v t="$DB.$TABLE" '$1 == t {for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) {print $i; exit}}' "$BENCH_DIR/snapshot.out")"
    [ "$landed" = "$ROWS" ] || {
        cat "$BENCH_DIR/snapshot.out" >&2
        die "snapshot landed '${landed:-?}' rows, expected $ROWS"
    }
    S_DISK="$(du -sb "$WAREHOUSE" | cut -f1)"
}

printf 'run\torder\tclient_s\tclient_rss_kib\tclient_cpu_s\tclient_mariadbd_cpu_s\tclient_machine_busy_pct\tsnapshot_s\tsnapshot_rss_kib\tsnapshot_cpu_s\tsnapshot_mariadbd_cpu_s\tsnapshot_machine_busy_pct\tratio\twarehouse_bytes\n' >"$RESULTS_TSV"

for run in $(seq 1 "$RUNS"); do
    if (( run % 2 == 1 )); then
        order="client,snapshot"
        log "run $run/$RUNS: client read"; run_client
        log "run $run/$RUNS: tidemark snapshot"; run_snapshot "$run"
    else
        order="snapshot,client"
        log "run $run/$RUNS: tidemark snapshot"; run_snapshot "$run"
        log "run $run/$RUNS: client read"; run_client
    fi
    ratio="$(awk -v s="$S_WALL" -v c="$C_WALL" 'BEGIN {printf "%.3f", s / c}')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$run" "$order" "$C_WALL" "$C_RSS" "$C_CPU" "$C_DB_CPU" "$C_BUSY" \
        "$S_WALL" "$S_RSS" "$S_CPU" "$S_DB_CPU" "$S_BUSY" "$ratio" "$S_DISK" >>"$RESULTS_TSV"
    log "run $run: client ${C_WALL}s, snapshot ${S_WALL}s, ratio $ratio, snapshot peak RSS $((S_RSS / 1024)) MiB"
done

# ------------------------------------------------------------------ correctness
log "checking the landed table against MariaDB"
CHECK="COUNT(*), SUM(total), SUM(customer_id), COUNT(issued_at), COUNT(due_date), COUNT(notes), SUM(CASE WHEN status = 'paid' THEN 1 ELSE 0 END)"
src="$(q "SELECT $CHECK FROM $DB.$TABLE" | tr '\t' ',')"
dst="$("$TIDEMARK_BIN" --config "$CONFIG" sql --format csv "SELECT $CHECK FROM $DB.$TABLE" 2>"$BENCH_DIR/check.err" | tail -n1 | tr -d '\r')"
if [ "$src" != "$dst" ]; then
    log "MariaDB:  $src"
    log "tidemark: $dst"
    die "CORRECTNESS CHECK FAILED: the landed table differs from the source"
fi
log "landed table matches: $src"

# ------------------------------------------------------------------ report
median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { awk -F'\t' -v c="$1" 'NR > 1 {print $c}' "$RESULTS_TSV"; }
MED_C="$(col 3 | median)"; MED_S="$(col 8 | median)"
MED_RATIO_RUNS="$(col 13 | median)"
MED_S_RSS="$(col 9 | median)"; MED_C_RSS="$(col 4 | median)"
MAX_S_RSS="$(col 9 | sort -g | tail -n1)"
MED_DISK="$(col 14 | median)"
RATIO="$(awk -v s="$MED_S" -v c="$MED_C" 'BEGIN {printf "%.3f", s / c}')"

mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }

echo "tidemark snapshot benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo
echo "machine:   $(nproc) CPUs, $CPU_MODEL, ${MEM_TOTAL} MiB RAM, $(uname -sr)"
echo "MariaDB:   $MARIADB_VERSION (innodb_buffer_pool_size $((pool_bytes >> 20)) MiB, table $((table_bytes >> 20)) MiB)"
echo "tidemark:  $COMMIT$DIRTY; binary $BIN_ORIGIN built $BIN_BUILT"
echo "table:     $DB.$TABLE, $ROWS rows; snapshot_chunk_rows = $CHUNK_ROWS; $RUNS runs"
echo "command:   ROWS=$ROWS RUNS=$RUNS CHUNK_ROWS=$CHUNK_ROWS bench/snapshot.sh"
echo
echo "| run | order | client s | client RSS MiB | client CPU s | mariadbd CPU s (client) | snapshot s | snapshot rows/s | snapshot RSS MiB | tidemark CPU s | mariadbd CPU s (snapshot) | machine busy % (c/s) | ratio s/c | warehouse MiB |"
echo "|----:|-------|---------:|---------------:|-------------:|------------------------:|-----------:|----------------:|-----------------:|---------------:|--------------------------:|---------------------:|----------:|--------------:|"
awk -F'\t' -v rows="$ROWS" 'NR > 1 {
    printf "| %s | %s | %.2f | %.0f | %.2f | %.2f | %.2f | %.0f | %.0f | %.2f | %.2f | %s/%s | %.3f | %.1f |\n",
        $1, $2, $3, $4 / 1024, $5, $6, $8, rows / $8, $9 / 1024, $10, $11, $7, $12, $13, $14 / 1048576
}' "$RESULTS_TSV"
echo
echo "median client read:       ${MED_C} s  (peak RSS $(mib "$MED_C_RSS") MiB)"
echo "median tidemark snapshot: ${MED_S} s  ($(awk -v r="$ROWS" -v s="$MED_S" 'BEGIN {printf "%.0f", r / s}') rows/s)"
echo "ratio snapshot/client:    ${RATIO} (of medians); median of per-run ratios ${MED_RATIO_RUNS}"
echo "snapshot peak RSS:        median $(mib "$MED_S_RSS") MiB, max $(mib "$MAX_S_RSS") MiB"
echo "warehouse on disk:        $(awk -v b="$MED_DISK" 'BEGIN {printf "%.1f", b / 1048576}') MiB (current + history tables)"
echo "correctness:              COUNT/SUM checks match ($src)"
echo
awk -v r="$RATIO" 'BEGIN {exit !(r <= 1.0)}' && t1=MET || t1="NOT MET"
[ "$MAX_S_RSS" -lt 1048576 ] && t2=MET || t2="NOT MET"
echo "target ratio <= 1.0:      $t1"
echo "target peak RSS < 1 GiB:  $t2"
echo
echo "raw results: $RESULTS_TSV; snapshot logs: $BENCH_DIR/snapshot-run*.log"
