#!/usr/bin/env bash
# Benchmark: the web console's page loads in a real browser (issue 20: every page in
# < 1 s on the 5.26M-invoice demo warehouse).
#
#   bench/console.sh                      # SCALE=1920: ~5.26M current invoices (what RESULTS.md reports)
#   SCALE=40 RUNS=3 bench/console.sh      # smoke run (~110k invoices)
#
# Data: `tidemark demo --scale SCALE --days 90` lands 90 simulated days of the
# invoicing workload into a fresh warehouse (SCALE=1920 gives about 5.26 million
# current invoices, 15.6 million versions in their history); REUSE=1 keeps one an
# earlier run of the same SCALE landed. The demo writes the console's config and
# users beside the warehouse; this script adds an analyst.
#
# Then `tidemark console` serves it, and tests/browser/console.py in bench mode
# (TIDEMARK_CONSOLE_BENCH=1: Debian's headless Chromium through chromedriver, as
# the browser test) signs in, makes three charts over invoicing.invoices and a
# dashboard of them in the page, and loads each page RUNS times as a new document
# (so assets, the session check, the page's API calls and every chart drawn are
# counted). The times are the page's own performance.measure: from the navigation's
# start to the page's last chart drawn. Also timed: switching the dashboard's
# "compare with 30 days earlier" on (click to the three overlays drawn).
#
# The charts are made first; then the console is started anew, so the first load
# of each page runs every statement it shows (nothing kept: cold), and the later
# loads show what the console's chart cache does while the tables do not change.
# Both are reported.
#
# Environment: SCALE, DAYS, RUNS, REUSE=1, BENCH_DIR, TIDEMARK_BIN (default: a
# release build made here; `SKIP_BUILD=1 TIDEMARK_BIN=target/debug/tidemark` uses
# the test build), PYTHON (with selenium; default scripts/test.sh's venv),
# TIDEMARK_TEST_CHROMIUM / TIDEMARK_TEST_CHROMEDRIVER. Progress goes to stderr, the
# report (markdown) to stdout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SCALE="${SCALE:-1920}"
DAYS="${DAYS:-90}"
RUNS="${RUNS:-5}"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench-console}"
PASSWORD="bench-console-password"

log() { printf '[console-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd -P)"
if [ -z "${TIDEMARK_BIN:-}" ]; then
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        log "cargo build --release --locked --workspace --bins"
        (cd "$REPO" && cargo build --release --locked --workspace --bins) >&2
    fi
    TIDEMARK_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/tidemark"
fi
TM="$TIDEMARK_BIN"
PY="${PYTHON:-${TIDEMARK_TEST_PYTHON:-$REPO/target/test-services/pyclients/venv/bin/python}}"
"$PY" -c 'import selenium' 2>/dev/null || {
    echo "no python with selenium at $PY: run scripts/test.sh once (it makes that venv and installs chromium), or set PYTHON" >&2
    exit 1
}

WH="$BENCH_DIR/warehouse"
if [ "${REUSE:-0}" = 1 ] && [ "$(cat "$BENCH_DIR/scale" 2>/dev/null)" = "$SCALE/$DAYS" ]; then
    log "reusing $WH (SCALE=$SCALE DAYS=$DAYS)"
    # Charts and dashboards of an earlier run go; the data stays.
    rm -rf "$WH/tidemark/console_charts" "$WH/tidemark/console_dashboards"
else
    rm -f "$BENCH_DIR/scale"
    log "landing the demo workload at scale $SCALE over $DAYS days into $WH"
    t0=$SECONDS
    "$TM" demo --dir "$WH" --scale "$SCALE" --days "$DAYS" >"$BENCH_DIR/demo.out"
    log "landed in $(( SECONDS - t0 ))s: $(grep -m1 '^landed' "$BENCH_DIR/demo.out")"
    echo "$SCALE/$DAYS" >"$BENCH_DIR/scale"
fi
CFG="$WH/tidemark.toml"
TIDEMARK_USER_PASSWORD="$PASSWORD" "$TM" --config "$CFG" user add bench --role analyst >&2

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
CONSOLE=
trap 'kill $CONSOLE 2>/dev/null || true' EXIT
start_console() {
    log "tidemark console on 127.0.0.1:$PORT"
    "$TM" --config "$CFG" console --listen "127.0.0.1:$PORT" 2>>"$BENCH_DIR/console.log" &
    CONSOLE=$!
    for _ in $(seq 1 600); do
        curl -fsS "http://127.0.0.1:$PORT/console/" >/dev/null 2>&1 && return 0
        kill -0 $CONSOLE 2>/dev/null || { cat "$BENCH_DIR/console.log" >&2; exit 1; }
        sleep 0.2
    done
}
browser() {
    "$PY" "$REPO/crates/tidemark/tests/browser/console.py" \
        "http://127.0.0.1:$PORT" "$BENCH_DIR/screenshots" bench - "$PASSWORD" - - | tail -1
}
: >"$BENCH_DIR/console.log"
start_console

invoices="$("$TM" --config "$CFG" sql --format csv "SELECT count(*) FROM invoicing.invoices" 2>/dev/null | tail -1 || echo '?')"
versions="$("$TM" --config "$CFG" sql --format csv "SELECT count(*) FROM invoicing_history.invoices" 2>/dev/null | tail -1 || echo '?')"
log "the browser: the charts and their dashboard"
setup="$(TIDEMARK_CONSOLE_BENCH=1 TIDEMARK_CONSOLE_BENCH_PHASE=setup browser)"
dashboard="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["dashboard"])' "$setup")"
# A new console: nothing kept from making the charts, so each page's first load
# runs every statement it shows (the cold load); the later ones may be answered
# from kept results (the tables do not change meanwhile).
kill "$CONSOLE"; wait "$CONSOLE" 2>/dev/null || true
start_console
log "the browser: RUNS=$RUNS loads of each page"
report="$(TIDEMARK_CONSOLE_BENCH=1 TIDEMARK_CONSOLE_BENCH_PHASE=measure DASHBOARD="$dashboard" RUNS="$RUNS" browser)"
echo "$report" >"$BENCH_DIR/report.json"

commit="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
dirty="$(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo ' (uncommitted changes)' || true)"
echo "# bench/console.sh — $(date -u '+%Y-%m-%d %H:%M') UTC, commit $commit$dirty, $(nproc) cores"
echo "# SCALE=$SCALE DAYS=$DAYS RUNS=$RUNS; invoicing.invoices: $invoices rows, its history $versions versions"
echo "# binary: $TM; browser: $("${TIDEMARK_TEST_CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null || echo chromium)"
echo "# first: the page's first load after the console started (no kept chart result);"
echo "# later: the median and max of the other RUNS-1 loads"
echo
echo "| page | first ms | later median ms | later max ms | < 1 s |"
echo "|---|---|---|---|---|"
python3 - "$report" <<'EOF'
import json, statistics, sys
loads = json.loads(sys.argv[1])["page_loads_ms"]
for page, ms in loads.items():
    ms = [m for m in ms if m is not None]
    first, later = ms[0], ms[1:] or ms[:1]
    med, top = statistics.median(later), max(later)
    verdict = "yes" if max(first, top) < 1000 else ("later loads only" if top < 1000 else "**no**")
    print("| %s | %d | %d | %d | %s |" % (page, first, med, top, verdict))
EOF
