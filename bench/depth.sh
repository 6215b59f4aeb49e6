#!/usr/bin/env bash
# Benchmark: how time travel's cost grows with history depth. For each number of
# simulated days in DEPTHS, the demo workload is landed at the same SCALE (more days,
# more versions per invoice and more invoices), then (b) the aggregate over the
# current invoices and (c) the same aggregate AS OF 7 days before the newest change
# run, each in a process of its own (`serve_bench depth`), so each one's peak memory
# is its own. The target is (c)/(b) flat in depth.
#
#   bench/depth.sh                         # DEPTHS="9 30 90" at SCALE=1920
#   SCALE=40 DEPTHS="9 30" bench/depth.sh  # smoke run
#
# A 90-day warehouse that bench/serve.sh landed at the same SCALE is reused.
# Environment: SCALE, DEPTHS, RUNS, SKIP_BUILD=1, REUSE=1, BENCH_DIR, CARGO_TARGET_DIR.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SCALE="${SCALE:-1920}"
DEPTHS="${DEPTHS:-9 30 90}"
RUNS="${RUNS:-5}"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench-depth}"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"

log() { printf '[depth-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$BENCH_DIR"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release (tidemark and the serve_bench example)"
    (cd "$REPO" && cargo build --release --locked -p tidemark --bin tidemark -p tidemark-server --example serve_bench) >&2
fi
TM="$TARGET/release/tidemark"
SB="$TARGET/release/examples/serve_bench"

COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "# bench/depth.sh — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT, $(nproc) cores, SCALE=$SCALE RUNS=$RUNS"
echo
echo "| days | versions of invoices | (b) current ms | (c) AS OF −7 d ms | (c) / (b) | (b) peak MiB | (c) peak MiB |"
echo "|---|---|---|---|---|---|---|"
for d in $DEPTHS; do
    WH="$BENCH_DIR/wh-$d"
    if [ "$(cat "$REPO/target/bench-serve/scale" 2>/dev/null)" = "$SCALE/$d" ]; then
        WH="$REPO/target/bench-serve/warehouse"
        log "reusing bench/serve.sh's warehouse for $d days"
    elif [ "${REUSE:-0}" = 1 ] && [ "$(cat "$WH.scale" 2>/dev/null)" = "$SCALE/$d" ]; then
        log "reusing $WH"
    else
        rm -rf "$WH" "$WH.scale"
        log "landing $d days at scale $SCALE"
        t0=$SECONDS
        "$TM" demo --dir "$WH" --scale "$SCALE" --days "$d" >"$WH.out"
        log "landed in $(( SECONDS - t0 ))s"
        echo "$SCALE/$d" >"$WH.scale"
    fi
    read -r _ bms bpeak versions < <("$SB" depth "$WH" b "$RUNS")
    read -r _ cms cpeak _ < <("$SB" depth "$WH" c "$RUNS")
    ratio="$(python3 -c "print(f'{$cms / max($bms, 1):.2f}')")"
    echo "| $d | $versions | $bms | $cms | $ratio | $bpeak | $cpeak |"
done
