#!/usr/bin/env bash
# Benchmark: the feature store (issue 18), side by side with Feast from PyPI.
#
#   bench/features.sh                 # 1,000,000 entities
#   N=100000 bench/features.sh        # smaller
#
# On the same data (three source tables of N entities, 10 features together, every
# key inserted 30 days ago and a fifth updated 10 days ago; landed with history
# into tidemark by the `features_bench` example, and written as Parquet for Feast):
#   1. a training set of N entity rows (random instants of the last 30 days) x 10
#      features from 3 views: `tidemark features training-set` against Feast's
#      `get_historical_features` over its local file offline store, each under
#      /usr/bin/time -v (wall time and peak RSS); then the two outputs compared
#      row by row on a sample;
#   2. online lookups of 1 key and of 100 keys (p50, p99) over N entities: tidemark
#      in-process (the example), over HTTP (`tidemark run`'s API) and over the
#      PostgreSQL endpoint (`--serve`), from Python clients with kept-alive
#      connections; Feast's SQLite online store through its Python SDK, after
#      `materialize`. Both sides read one view's 4 features per key.
#
# Environment:
#   N=1000000
#   REUSE=1         keep the data landed by an earlier run in BENCH_DIR
#   TRAINING=0      skip part 1 (bench/feast.sh also compares training sets)
#   BENCH_DIR=DIR   scratch (default $REPO/target/bench/features)
#   PYTHON=PATH     a python with feast, psycopg and requests (default: a venv made
#                   at $REPO/target/bench/feast-venv with `pip install feast
#                   psycopg[binary] requests`)
#   TIDEMARK=PATH EXAMPLE=PATH   the binaries (default: target/debug/tidemark and
#                   target/debug/examples/features_bench, which `scripts/test.sh`
#                   builds; build them with --release for release figures)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-1000000}
DIR=${BENCH_DIR:-$REPO/target/bench/features}
TIDEMARK=${TIDEMARK:-$REPO/target/debug/tidemark}
EXAMPLE=${EXAMPLE:-$REPO/target/debug/examples/features_bench}
if [ -z "${PYTHON:-}" ]; then
    VENV=$REPO/target/bench/feast-venv
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet feast 'psycopg[binary]' requests
    fi
    PYTHON=$VENV/bin/python
fi
for b in "$TIDEMARK" "$EXAMPLE"; do
    [ -x "$b" ] || { echo "missing $b: run scripts/test.sh features (or cargo build --workspace --all-targets) first" >&2; exit 1; }
done
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
peak() { # /usr/bin/time -v output: "wall_s peak_mib"
    awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; w=s}
                /Maximum resident set size/ {m=$2/1024} END {printf "%.2f %.0f\n", w, m}' "$1"
}

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), N=$N, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
if [ "${REUSE:-0}" = 1 ] && [ -d "$DIR/wh" ]; then
    echo "reusing the data in $DIR (REUSE=1)"
    rm -rf "$DIR/wh/.tidemark/features" "$DIR/feast_repo" "$DIR/users.toml" "$DIR/tokens.toml"
else
    rm -rf "$DIR"
    mkdir -p "$DIR"
    "$EXAMPLE" land "$DIR" "$N"
fi

PG_PORT=$(free_port)
API_PORT=$(free_port)
CFG=$DIR/tidemark.toml
{
    "$EXAMPLE" views
    cat <<EOF

[server]
listen = "127.0.0.1:$PG_PORT"
users_file = "$DIR/users.toml"

[server.roles.reader]
grants = ["bench.*"]

[daemon]
api_listen = "127.0.0.1:$API_PORT"
tokens_file = "$DIR/tokens.toml"

[jobs.noop]
kind = "sql"
sql = "SELECT 1 AS one"
target = "reports.noop"
EOF
} > "$CFG"
PASSWORD=bench-$RANDOM$RANDOM
TIDEMARK_USER_PASSWORD=$PASSWORD "$TIDEMARK" --config "$CFG" --warehouse "$DIR/wh" user add bench --role reader >/dev/null
TOKEN=$("$TIDEMARK" --config "$CFG" --warehouse "$DIR/wh" token add bench --role viewer --sql-role reader 2>/dev/null)
printf 'N=%s\nPG_PORT=%s\nAPI_PORT=%s\nTOKEN=%s\nPASSWORD=%s\n' "$N" "$PG_PORT" "$API_PORT" "$TOKEN" "$PASSWORD" > "$DIR/bench.env"

"$PYTHON" "$REPO/bench/features.py" feast-setup "$DIR"
if [ "${TRAINING:-1}" = 1 ]; then
echo "-- 1. training set, $N entity rows x 10 features from 3 views"
/usr/bin/time -v "$TIDEMARK" --config "$CFG" --warehouse "$DIR/wh" features training-set \
    --view profile --view account --view activity --entities "$DIR/entities.parquet" \
    --out "$DIR/tidemark_train.parquet" 2> "$DIR/tidemark_train.time" >/dev/null
echo "tidemark training set: wall_s peak_mib = $(peak "$DIR/tidemark_train.time")"
/usr/bin/time -v "$PYTHON" "$REPO/bench/features.py" feast-train "$DIR" 2> "$DIR/feast_train.time" | tee "$DIR/feast_train.json"
echo "feast training set (process, imports included): wall_s peak_mib = $(peak "$DIR/feast_train.time")"
"$PYTHON" "$REPO/bench/features.py" compare "$DIR"
fi

echo "-- 2. online lookups over $N entities"
echo "tidemark in-process (build from the lake, memory, lookups, snapshot):"
"$EXAMPLE" lookup "$DIR"
/usr/bin/time -v "$TIDEMARK" --config "$CFG" --warehouse "$DIR/wh" features materialize 2> "$DIR/materialize.time"
echo "tidemark features materialize: wall_s peak_mib = $(peak "$DIR/materialize.time")"
"$TIDEMARK" --config "$CFG" --warehouse "$DIR/wh" run --serve 2> "$DIR/run.log" &
RUN=$!
trap 'kill $RUN 2>/dev/null || true' EXIT
STARTED=$(date +%s.%N)
until curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/api/v1/features/profile/1" >/dev/null \
   && curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/api/v1/features/activity/1" >/dev/null; do
    sleep 0.1
done
echo "tidemark run: serving all views $(echo "$(date +%s.%N) - $STARTED" | bc) s after start (from the snapshots)"
echo "tidemark run: RSS $(($(awk '/VmRSS/ {print $2}' /proc/$RUN/status) / 1024)) MiB"
"$PYTHON" "$REPO/bench/features.py" feast-materialize "$DIR"
"$PYTHON" "$REPO/bench/features.py" lookups "$DIR"
kill $RUN
wait $RUN 2>/dev/null || true
