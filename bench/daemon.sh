#!/usr/bin/env bash
# Benchmark: the daemon (`tidemark run`) as a job runner.
#
#   bench/daemon.sh                           # 60 triggers, 60 s CPU windows, 1,000 jobs
#   SAMPLES=10 WINDOW=15 bench/daemon.sh      # smoke run (about 2 minutes once built)
#
# It measures two things:
#   1. Trigger latency of a `new_data` job: from a capture commit landing in the lake
#      to the triggered run starting, minus the job's debounce. The private MariaDB
#      (scripts/mariadb.sh, never port 3306) holds `tm_bench_daemon.events`; the daemon
#      captures it (flush_interval_ms = 100) and runs `[jobs.react]` (a count over the
#      table, on = "new_data", debounce = DEBOUNCE). One row is inserted at the source,
#      then the script waits GAP seconds, SAMPLES times. Afterwards it reads the lake:
#        - each capture commit: <warehouse>/tm_bench_daemon/events/history/_delta_log/
#          <version>.json, landed at its commitInfo.timestamp (ms);
#        - each run claim: <warehouse>/.tidemark/runs/react/<seq>.json (`started`,
#          `reason`, `inputs` = the history version the run consumed).
#      For each new_data run, the commit that made it due is the first commit with
#      data (an `add` action with dataChange) after the version the previous run
#      consumed; latency = started - that commit's timestamp - DEBOUNCE. Commits with
#      no data (position-only commits) are never taken as the trigger; they are
#      counted. Target (the issue): p50 and p99 < 1 s beyond the debounce.
#   2. Idle CPU of a daemon with JOBS cron jobs (`kind = "maintenance"`, `0 3 * * *`
#      Europe/Paris: none fires during the window) and no sources, so it runs jobs
#      only: utime + stime from /proc/PID/stat after WARMUP seconds and again WINDOW
#      seconds later; % of one core = ticks / CLK_TCK / elapsed * 100 (elapsed is
#      measured, it is WINDOW to within milliseconds). The same with BASE_JOBS (1)
#      job is the baseline: a daemon with neither sources nor jobs refuses to start
#      ("the config defines no [sources.NAME]"), so 1 job is the least a jobs-only
#      daemon runs. Target: < 1 % of one core with 1,000 jobs.
#
# Environment (knobs):
#   TIDEMARK_BIN=PATH   binary to measure (default target/release/tidemark; falls back to
#                       target/debug/tidemark with a warning). A copy is measured, so a
#                       concurrent `cargo build` cannot swap it mid-run. Nothing is built.
#   BENCH_DIR=DIR       scratch directory (default $REPO/target/bench)
#   SAMPLES=60          inserts (= expected triggered runs) in part 1
#   GAP=2               seconds between inserts; must exceed debounce + one run
#   DEBOUNCE=200ms      the job's debounce (humantime: 200ms, 1s, ...)
#   WARMUP=10           seconds between the idle daemon's start and the first CPU reading
#   WINDOW=60           seconds between the two CPU readings
#   JOBS=1000           cron jobs in part 2
#   BASE_JOBS=1         cron jobs of part 2's baseline daemon
#   SERVER_ID=990201    replica server id the daemon announces in part 1
#   PARTS="latency idle"  which parts to run
#
# Everything on stdout is the report (a block for bench/RESULTS.md); progress goes to
# stderr. Logs, configs, warehouses and the raw per-run latencies stay in BENCH_DIR
# (daemon-*). See bench/README.md.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench}"
SAMPLES="${SAMPLES:-60}"
GAP="${GAP:-2}"
DEBOUNCE="${DEBOUNCE:-200ms}"
WARMUP="${WARMUP:-10}"
WINDOW="${WINDOW:-60}"
JOBS="${JOBS:-1000}"
BASE_JOBS="${BASE_JOBS:-1}"
SERVER_ID="${SERVER_ID:-990201}"
PARTS="${PARTS:-latency idle}"
DB=tm_bench_daemon
TABLE=events
JOB=react

log() { printf '[daemon-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$SAMPLES" =~ ^[1-9][0-9]*$ ]] || die "SAMPLES must be a positive integer, got '$SAMPLES'"
[[ "$GAP" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "GAP must be a number of seconds, got '$GAP'"
[[ "$WARMUP" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "WARMUP must be a number of seconds, got '$WARMUP'"
[[ "$WINDOW" =~ ^[1-9][0-9]*(\.[0-9]+)?$ ]] || die "WINDOW must be a positive number of seconds, got '$WINDOW'"
[[ "$JOBS" =~ ^[0-9]+$ ]] || die "JOBS must be an integer, got '$JOBS'"
[[ "$BASE_JOBS" =~ ^[0-9]+$ ]] || die "BASE_JOBS must be an integer, got '$BASE_JOBS'"
[[ "$SERVER_ID" =~ ^[1-9][0-9]*$ ]] || die "SERVER_ID must be a positive integer"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to read the Delta log and the run claims"

# DEBOUNCE in milliseconds (the same humantime units the config takes, the common ones).
DEBOUNCE_MS="$(python3 - "$DEBOUNCE" <<'PY'
import re, sys
units = {"ms": 1, "msec": 1, "s": 1000, "sec": 1000, "secs": 1000, "m": 60000, "min": 60000}
total = 0.0
s = sys.argv[1].replace(" ", "")
parts = re.findall(r"(\d+(?:\.\d+)?)([a-z]+)", s)
if not parts or "".join(a + b for a, b in parts) != s or any(u not in units for _, u in parts):
    sys.exit(f"cannot read DEBOUNCE={sys.argv[1]!r} (write e.g. 200ms, 1s, 1s500ms)")
for n, u in parts:
    total += float(n) * units[u]
print(int(round(total)))
PY
)" || die "DEBOUNCE: see above"

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd -P)"

# ------------------------------------------------------------------ binary
if [ -z "${TIDEMARK_BIN:-}" ]; then
    TIDEMARK_BIN="$REPO/target/release/tidemark"
    if [ ! -x "$TIDEMARK_BIN" ] && [ -x "$REPO/target/debug/tidemark" ]; then
        log "WARNING: no release build at $TIDEMARK_BIN; measuring the DEBUG build target/debug/tidemark (figures are pessimistic)"
        TIDEMARK_BIN="$REPO/target/debug/tidemark"
    fi
fi
[ -x "$TIDEMARK_BIN" ] || die "no tidemark binary at $TIDEMARK_BIN (cargo build --release -p tidemark, or set TIDEMARK_BIN)"
BIN_ORIGIN="$(cd "$(dirname "$TIDEMARK_BIN")" && pwd -P)/$(basename "$TIDEMARK_BIN")"
BIN_BUILT="$(date -u -r "$BIN_ORIGIN" '+%Y-%m-%d %H:%M:%S UTC')"
case "$BIN_ORIGIN" in
    */release/*) BUILD=release ;;
    */debug/*) BUILD=debug ;;
    *) BUILD="unknown (not under target/release or target/debug)" ;;
esac
TM="$BENCH_DIR/tidemark-daemon.bin"
cp -f "$BIN_ORIGIN" "$TM"
log "measuring $BIN_ORIGIN ($BUILD build, built $BIN_BUILT), copied to $TM"

# ------------------------------------------------------------------ cleanup
DAEMON_PID=""
cleanup() {
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        log "cleanup: stopping the daemon (pid $DAEMON_PID)"
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    DAEMON_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_daemon CONFIG LOG: `tidemark run` in the background, JSON logs to LOG.
start_daemon() {
    TIDEMARK_LOG_FORMAT=json "$TM" --config "$1" run >"$2.stdout" 2>"$2" &
    DAEMON_PID=$!
    log "daemon started (pid $DAEMON_PID, config $1, log $2)"
}

# stop_daemon LOG: SIGTERM, wait (30 s at most, then SIGKILL); dies if it failed.
stop_daemon() {
    local logf="$1" rc=0 i
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    for i in $(seq 1 300); do
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        log "WARNING: the daemon did not stop within 30 s of SIGTERM; sending SIGKILL"
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=""
    if [ "$rc" != 0 ]; then
        tail -n 20 "$logf" >&2
        die "the daemon exited with status $rc after SIGTERM (log: $logf)"
    fi
    log "daemon stopped (exit 0)"
}

# alive_or_die LOG: the daemon must still run.
alive_or_die() {
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        local rc=0
        wait "$DAEMON_PID" || rc=$?
        DAEMON_PID=""
        tail -n 30 "$1" >&2
        die "the daemon exited on its own with status $rc (log: $1)"
    fi
}

# wait_api LOG: until the daemon logs its HTTP API address (60 s at most).
wait_api() {
    local deadline=$((SECONDS + 60))
    until grep -q 'HTTP API at' "$1" 2>/dev/null; do
        alive_or_die "$1"
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$1" >&2; die "no 'HTTP API at' line in $1 within 60 s"; }
        sleep 0.2
    done
}

COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY=""
if ! git -C "$REPO" diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null; then
    DIRTY=" + uncommitted changes under crates/ or Cargo.*"
fi
STAMP="$(date +%Y%m%d-%H%M%S)"
CLK_TCK="$(getconf CLK_TCK)"

LAT_SUMMARY=""      # filled by part 1: "count p50 p99 max min mean batched nodata missing"
IDLE_ROWS=()        # filled by part 2: "jobs|cpu%|rss MiB|threads"

# ================================================================== part 1: latency
latency_part() {
    local url port cfg wh logf tsv i v0 deadline
    url="$("$REPO/scripts/mariadb.sh" start)"
    port="${url##*:}"
    [[ "$port" =~ ^[0-9]+$ ]] || die "cannot read the port from '$url'"
    [ "$port" != 3306 ] || die "scripts/mariadb.sh answered port 3306; this benchmark never uses the standard port"
    log "MariaDB at $url"
    sql() { mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" -uroot "$@"; }
    q() { sql -N -B -e "$1"; }
    MARIADB_VERSION="$(q 'SELECT VERSION()')"

    q "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB;
       CREATE TABLE $DB.$TABLE (id INT PRIMARY KEY, v INT NOT NULL);
       INSERT INTO $DB.$TABLE VALUES (0, 0);"

    cfg="$BENCH_DIR/daemon-latency.toml"
    wh="$BENCH_DIR/daemon-warehouse"
    logf="$BENCH_DIR/daemon-latency.log"
    tsv="$BENCH_DIR/daemon-latency-$STAMP.tsv"
    rm -rf "$wh"
    cat >"$cfg" <<EOF
[environments.dev]
warehouse = "$wh"

[sources.main]
url = "mysql://root@127.0.0.1:$port"
databases = ["$DB"]
flush_interval_ms = 100
server_id = $SERVER_ID

[daemon]
api_listen = "127.0.0.1:0"

[jobs.$JOB]
kind = "sql"
sql = "SELECT count(*) AS n FROM $DB.$TABLE"
target = "reports.$JOB"
on = "new_data"
inputs = ["$DB.$TABLE"]
debounce = "$DEBOUNCE"
EOF

    start_daemon "$cfg" "$logf"
    wait_api "$logf"
    log "waiting for $DB.$TABLE to be snapshotted"
    deadline=$((SECONDS + 180))
    while :; do
        alive_or_die "$logf"
        if "$TM" --config "$cfg" status --json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        t = json.loads(line)
    except ValueError:
        continue
    if t.get("table") == sys.argv[1] and t.get("state") in ("streaming", "landed"):
        sys.exit(0)
sys.exit(1)' "$DB.$TABLE"; then
            break
        fi
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$logf" >&2; die "$DB.$TABLE not snapshotted within 180 s"; }
        sleep 0.5
    done
    hist_log="$wh/$DB/$TABLE/history/_delta_log"
    [ -d "$hist_log" ] || die "no history log at $hist_log"
    newest_version() { find "$hist_log" -maxdepth 1 -name '[0-9]*.json' -printf '%f\n' | sort | tail -n1 | sed 's/\.json$//; s/^0*//; s/^$/0/'; }

    # A warm-up change: capture streams and the job has run once, before measuring.
    v0="$(newest_version)"
    log "snapshotted (history at version $v0); warm-up insert"
    q "INSERT INTO $DB.$TABLE VALUES (-1, -1)"
    deadline=$((SECONDS + 60))
    while [ "$(newest_version)" -le "$v0" ]; do
        alive_or_die "$logf"
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$logf" >&2; die "the warm-up insert did not land within 60 s"; }
        sleep 0.1
    done
    sleep "$GAP"
    sleep "$GAP"
    MEASURE_FROM_MS="$(date +%s%3N)"

    log "measuring: $SAMPLES inserts, one every ${GAP}s (debounce $DEBOUNCE)"
    for i in $(seq 1 "$SAMPLES"); do
        alive_or_die "$logf"
        q "INSERT INTO $DB.$TABLE VALUES ($i, $i)"
        if (( i % 10 == 0 )); then log "  $i/$SAMPLES inserted"; fi
        sleep "$GAP"
    done
    sleep "$GAP"
    alive_or_die "$logf"
    stop_daemon "$logf"

    log "reading the history log and the run claims"
    local out
    out="$(python3 - "$wh" "$DB" "$TABLE" "$JOB" "$DEBOUNCE_MS" "$MEASURE_FROM_MS" "$SAMPLES" "$tsv" <<'PY'
import json, os, re, sys
from datetime import datetime, timezone

wh, db, table, job, debounce_ms, since_ms, samples, tsv = sys.argv[1:9]
debounce_ms, since_ms, samples = int(debounce_ms), int(since_ms), int(samples)
name = f"{db}.{table}"

def rfc3339_ms(s):
    # 2026-12-06T14:50:01.123456789Z -> ms since the epoch (float)
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        raise ValueError(f"not RFC 3339: {s!r}")
    base, frac, tz = m.groups()
    tz = "+00:00" if tz == "Z" else tz
    t = datetime.fromisoformat(base + tz).timestamp() * 1000
    if frac:
        t += int(frac) / 10 ** len(frac) * 1000
    return t

# Capture commits: version -> (commitInfo.timestamp ms, has data, file mtime ms).
log_dir = os.path.join(wh, db, table, "history", "_delta_log")
commits = {}
for f in os.listdir(log_dir):
    m = re.fullmatch(r"(\d{20})\.json", f)
    if not m:
        continue
    path = os.path.join(log_dir, f)
    ts, data = None, False
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            a = json.loads(line)
            if "commitInfo" in a:
                ts = a["commitInfo"].get("timestamp")
            if "add" in a and a["add"].get("dataChange", True):
                data = True
    commits[int(m.group(1))] = (ts, data, os.stat(path).st_mtime_ns / 1e6)

# Run claims, in order.
runs_dir = os.path.join(wh, ".tidemark", "runs", job)
runs = []
for f in sorted(os.listdir(runs_dir)):
    if re.fullmatch(r"\d{12}\.json", f):
        with open(os.path.join(runs_dir, f)) as fh:
            runs.append(json.load(fh))
runs.sort(key=lambda r: r["seq"])

rows, nodata_runs, first_not_data, outcomes = [], 0, 0, {}
prev = -1
for r in runs:
    v = r.get("inputs", {}).get(name)
    if v is None:
        continue
    if r.get("reason") == "new_data" and v > prev:
        between = [k for k in sorted(commits) if prev < k <= v]
        data = [k for k in between if commits[k][1]]
        if not data:
            # Triggered by commits without data only (position-only commits).
            if between and (commits[between[0]][0] or 0) >= since_ms:
                nodata_runs += 1
        else:
            k = data[0]
            ts, _, mtime = commits[k]
            if ts is not None and ts >= since_ms:
                if between[0] != k:
                    first_not_data += 1
                started = rfc3339_ms(r["started"])
                outcomes[r.get("outcome")] = outcomes.get(r.get("outcome"), 0) + 1
                rows.append((r["seq"], prev, v, k, len(data), ts, mtime, started,
                             started - ts - debounce_ms, started - mtime - debounce_ms,
                             r.get("outcome"), r.get("ended") or ""))
    prev = max(prev, v)

with open(tsv, "w") as fh:
    fh.write("seq\tprev_consumed\tconsumed\ttrigger_version\tdata_commits\tcommit_ts_ms\tcommit_mtime_ms\tstarted_ms\tlatency_ms\tlatency_from_mtime_ms\toutcome\tended\n")
    for row in rows:
        fh.write("\t".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in row) + "\n")

def pct(xs, p):
    # nearest rank
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = max(1, -(-len(xs) * p // 100))
    return xs[int(k) - 1]

lat = [r[8] for r in rows]
batched = sum(1 for r in rows if r[4] > 1)
failed = sum(n for o, n in outcomes.items() if o != "succeeded")
lat_m = [r[9] for r in rows]
if not lat:
    print("0 nan nan nan nan nan 0", nodata_runs, "0 0 0 nan nan")
else:
    print(len(lat), f"{pct(lat, 50):.0f}", f"{pct(lat, 99):.0f}", f"{max(lat):.0f}", f"{min(lat):.0f}",
          f"{sum(lat) / len(lat):.0f}", batched, nodata_runs, first_not_data, failed,
          sum(r[4] for r in rows), f"{pct(lat_m, 50):.0f}", f"{pct(lat_m, 99):.0f}")
PY
)" || die "could not read the lake (see above)"
    LAT_SUMMARY="$out"
    LAT_TSV="$tsv"
    read -r n p50 p99 mx mn mean batched nodata notfirst failed ncommits mp50 mp99 <<<"$out"
    log "latency: $n runs, p50 ${p50} ms, p99 ${p99} ms, max ${mx} ms (beyond the ${DEBOUNCE_MS} ms debounce); raw: $tsv"
    [ "$n" = "$SAMPLES" ] || log "WARNING: $n triggered runs measured for $SAMPLES inserts ($ncommits data commits covered)"
    [ "$failed" = 0 ] || log "WARNING: $failed of the measured runs did not succeed (see $logf and the claims)"
}

# ================================================================== part 2: idle CPU
# machine_ticks: "busy total" jiffies of the whole machine (/proc/stat, first line).
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

# cpu_ticks PID: utime + stime (fields 14 and 15 of /proc/PID/stat, counted after comm).
cpu_ticks() {
    local rest
    rest="$(sed 's/^.*) //' "/proc/$1/stat")"
    # after "pid (comm) ", field 3 is state: utime and stime are the 12th and 13th here.
    awk '{print $12 + $13}' <<<"$rest"
}

idle_part() {
    local n="$1" cfg wh logf i t0 t1 c0 c1 rss threads pct mb0 mt0 mb1 mt1 busy
    cfg="$BENCH_DIR/daemon-idle-$n.toml"
    wh="$BENCH_DIR/daemon-idle-warehouse-$n"
    logf="$BENCH_DIR/daemon-idle-$n.log"
    rm -rf "$wh"
    {
        printf '[environments.dev]\nwarehouse = "%s"\n\n[daemon]\napi_listen = "127.0.0.1:0"\n' "$wh"
        for i in $(seq 1 "$n"); do
            printf '\n[jobs.j%04d]\nkind = "maintenance"\ncron = "0 3 * * *"\ntimezone = "Europe/Paris"\n' "$i"
        done
    } >"$cfg"
    start_daemon "$cfg" "$logf"
    wait_api "$logf"
    log "idle daemon with $n jobs up; warming up ${WARMUP}s"
    sleep "$WARMUP"
    alive_or_die "$logf"
    c0="$(cpu_ticks "$DAEMON_PID")"; t0="$(date +%s.%N)"; read -r mb0 mt0 < <(machine_ticks)
    sleep "$WINDOW"
    alive_or_die "$logf"
    c1="$(cpu_ticks "$DAEMON_PID")"; t1="$(date +%s.%N)"; read -r mb1 mt1 < <(machine_ticks)
    rss="$(awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$DAEMON_PID/status")"
    threads="$(awk '/^Threads:/ {print $2}' "/proc/$DAEMON_PID/status")"
    stop_daemon "$logf"
    pct="$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", d / hz / (b - a) * 100}')"
    busy="$(awk -v b=$((mb1 - mb0)) -v t=$((mt1 - mt0)) 'BEGIN {printf "%.0f", (t > 0 ? b / t * 100 : 0)}')"
    log "idle, $n jobs: machine ${busy} % busy meanwhile (all cores)"
    log "idle, $n jobs: $((c1 - c0)) ticks in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s = ${pct} % of one core; RSS ${rss} MiB, ${threads} threads"
    IDLE_ROWS+=("$n|$pct|$rss|$threads|$((c1 - c0))|$busy")
}

for part in $PARTS; do
    case "$part" in
        latency) latency_part ;;
        idle) idle_part "$BASE_JOBS"; idle_part "$JOBS" ;;
        *) die "unknown part '$part' in PARTS (latency, idle)" ;;
    esac
done

# ================================================================== report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "nan") print "-"; else printf "%.2f", a / b}'; }
echo "### tidemark run: trigger latency and idle CPU (bench/daemon.sh), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "- machine: $(nproc) cores (nproc), $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), $(free -m | awk '/^Mem:/ {print $2}') MiB RAM"
echo "- tidemark: commit $COMMIT$DIRTY; binary $BIN_ORIGIN (**$BUILD build**, built $BIN_BUILT)"
[ -n "${MARIADB_VERSION:-}" ] && echo "- MariaDB $MARIADB_VERSION (scripts/mariadb.sh, private instance)"
echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared; other load stretches the latency's tail)"
echo "- knobs: SAMPLES=$SAMPLES GAP=$GAP DEBOUNCE=$DEBOUNCE WARMUP=$WARMUP WINDOW=$WINDOW JOBS=$JOBS BASE_JOBS=$BASE_JOBS; flush_interval_ms = 100"
echo
echo "| measure | value | target | ratio to target |"
echo "|---|---:|---:|---:|"
if [ -n "$LAT_SUMMARY" ]; then
    read -r n p50 p99 mx mn mean batched nodata notfirst failed ncommits mp50 mp99 <<<"$LAT_SUMMARY"
    echo "| trigger latency p50 (run start − capture commit − debounce) | $p50 ms | < 1000 ms | $(ratio "$p50" 1000) |"
    echo "| trigger latency p99 | $p99 ms | < 1000 ms | $(ratio "$p99" 1000) |"
    echo "| trigger latency max / min / mean | $mx / $mn / $mean ms | | |"
    echo "| triggered runs measured (inserts: $SAMPLES) | $n | | |"
fi
for row in "${IDLE_ROWS[@]}"; do
    IFS='|' read -r jn pct rss threads ticks busy <<<"$row"
    if [ "$jn" = "$BASE_JOBS" ]; then
        echo "| idle CPU, $jn cron job(s) (baseline), no sources | $pct % of a core ($ticks ticks; RSS $rss MiB, $threads threads; machine $busy % busy) | | |"
    else
        echo "| idle CPU, $jn cron jobs, no sources | $pct % of a core ($ticks ticks; RSS $rss MiB, $threads threads; machine $busy % busy) | < 1 % | $(ratio "$pct" 1) |"
    fi
done
echo
if [ -n "$LAT_SUMMARY" ]; then
    echo "Latency: per new_data run of \`[jobs.$JOB]\`, \`started\` of its claim minus the \`commitInfo.timestamp\`"
    echo "of the first history commit with data after what the previous run consumed, minus"
    echo "the ${DEBOUNCE_MS} ms debounce; nearest-rank percentiles over $n runs (with 100 runs or fewer, p99 is"
    echo "the largest). Commits with no \`add\` (position-only) are never taken as the"
    echo "trigger: runs whose newer commits were all position-only (not measured): $nodata; measured runs"
    echo "whose first newer commit was position-only: $notfirst. Runs covering more than one data commit:"
    echo "$batched; measured runs not succeeded: $failed. From the commit files' mtime instead of"
    echo "commitInfo.timestamp: p50 $mp50 ms, p99 $mp99 ms."
    echo "Raw: \`$LAT_TSV\`."
fi
if [ "${#IDLE_ROWS[@]}" -gt 0 ]; then
    echo "Idle CPU: utime + stime from /proc/PID/stat over ${WINDOW} s, ${WARMUP} s after start, CLK_TCK $CLK_TCK"
    echo "(one tick over the window = $(awk -v w="$WINDOW" -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", 100 / hz / w}') % of a core). The baseline has $BASE_JOBS job(s), not 0:"
    echo "a daemon with neither sources nor jobs refuses to start (\"the config defines no [sources.NAME]\")."
fi
