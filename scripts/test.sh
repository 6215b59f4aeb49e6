#!/usr/bin/env bash
# tidemark's one test command:
#
#   scripts/test.sh [TEST ARGS...]
#
# 1. checks the Rust toolchain (cargo, rustfmt, clippy),
# 2. installs missing system packages with apt (mariadb-server/-client via
#    scripts/mariadb.sh, postgresql-client for psql, openssl for the TLS tests,
#    chromium and chromium-driver for the web console's browser test),
# 3. starts a private MariaDB (scripts/mariadb.sh; never the system one on
#    3306) and exports TIDEMARK_TEST_MYSQL_URL,
# 3-pg. starts a private PostgreSQL (scripts/postgres.sh; own cluster and port,
#    never a system one on 5432, TLS on), the target of the publish tests, and
#    exports TIDEMARK_TEST_PG_URL, TIDEMARK_TEST_PG_PASSWORD and TIDEMARK_TEST_PG_CA
#    (its TLS certificate's CA); it is stopped on exit,
# 3a. starts a private Kafka-protocol broker (scripts/tansu.sh: tansu, in-memory,
#    installed once with cargo install if missing) and exports TIDEMARK_TEST_KAFKA,
# 3b. starts moto (an S3-compatible server, pip-installed into
#    target/test-services/moto/venv if moto_server is not on PATH) on a free
#    loopback port and exports TIDEMARK_TEST_S3_ENDPOINT plus dummy AWS_*
#    credentials; it is stopped on exit,
# 3c. makes a venv with psycopg, SQLAlchemy, DuckDB, deltalake,
#     confluent-kafka[avro] and selenium (target/test-services/pyclients/venv)
#    and installs the PostgreSQL JDBC driver and a JDK if missing, for the
#    endpoint's client-library tests: exports TIDEMARK_TEST_PYTHON and
#    TIDEMARK_TEST_PGJDBC,
# 3d. starts the schema registry stand-in (scripts/schema_registry.py) on a free
#     loopback port and exports TIDEMARK_TEST_REGISTRY; it is stopped on exit,
# 4. runs `cargo fmt --check` and clippy with -D warnings, inside the build of
#    the tests (clippy-driver as RUSTC_WORKSPACE_WRAPPER: no second compile of the
#    dependencies; TIDEMARK_TEST_CLIPPY=separate runs `cargo clippy` instead),
# 5. runs the tests: `cargo nextest run` if cargo-nextest is installed, else
#    `cargo test`; both with --workspace --locked.
#
# TEST ARGS go after `--`, libtest style, so they mean the same to both
# runners: a name filter, --exact, --skip PAT, --ignored, --include-ignored,
# --nocapture.  Example: scripts/test.sh replication --nocapture
#
# Environment:
#   TIDEMARK_TEST_SKIP_LINT=1     skip fmt and clippy
#   TIDEMARK_TEST_CLIPPY=separate run `cargo clippy` on its own (the default lints
#                                 inside the test build)
#   TIDEMARK_TEST_RUNNER=cargo    force `cargo test` (or =nextest to require nextest)
#   TIDEMARK_TEST_KEEP_MARIADB=1  leave the private MariaDB running afterwards
#   CI=true                       adds --no-fail-fast
#
# The exit code is the test runner's.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO"

T0=$SECONDS
section() { printf '\n==> [%4ss] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install manually: $*"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root apt-get update
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# ------------------------------------------------------------------ toolchain
section "Rust toolchain"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 \
    || die "cargo not found. Install Rust (>= the workspace rust-version) with rustup, then re-run."
cargo --version >&2
if [ "${TIDEMARK_TEST_SKIP_LINT:-0}" != 1 ]; then
    for comp in fmt:rustfmt clippy:clippy; do
        sub="${comp%%:*}"
        if ! cargo "$sub" --version >/dev/null 2>&1; then
            if command -v rustup >/dev/null 2>&1; then
                rustup component add "${comp##*:}" >&2
            else
                die "cargo $sub is missing (rustup component add ${comp##*:}), or set TIDEMARK_TEST_SKIP_LINT=1"
            fi
        fi
    done
fi

RUNNER="${TIDEMARK_TEST_RUNNER:-}"
if [ -z "$RUNNER" ]; then
    if command -v cargo-nextest >/dev/null 2>&1; then RUNNER=nextest; else RUNNER=cargo; fi
fi
case "$RUNNER" in
    nextest) command -v cargo-nextest >/dev/null 2>&1 || die "TIDEMARK_TEST_RUNNER=nextest but cargo-nextest is not on PATH" ;;
    cargo) ;;
    *) die "TIDEMARK_TEST_RUNNER must be 'cargo' or 'nextest', not '$RUNNER'" ;;
esac
echo "test runner: $RUNNER" >&2

# ------------------------------------------------------------------ packages
section "System packages"
if ! command -v psql >/dev/null 2>&1; then
    echo "psql missing: installing postgresql-client" >&2
    apt_install postgresql-client
fi
psql --version >&2
# The endpoint's TLS tests make a self-signed certificate with the openssl CLI.
if ! command -v openssl >/dev/null 2>&1; then
    echo "openssl missing: installing it" >&2
    apt_install openssl
fi
# The web console's browser test drives Debian's headless Chromium through
# chromedriver (selenium comes with the client libraries' venv below).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "chromium/chromedriver missing: installing chromium chromium-driver" >&2
    apt_install chromium chromium-driver
fi
# mariadb-server / mariadb-client are installed by scripts/mariadb.sh start if missing.

# ------------------------------------------------------------------ MariaDB
section "Private MariaDB (scripts/mariadb.sh)"
MARIADB_WAS_RUNNING=0
if "$REPO/scripts/mariadb.sh" status >/dev/null 2>&1; then MARIADB_WAS_RUNNING=1; fi
MOTO_PID=""
REGISTRY_PID=""

TANSU_STARTED=0
PG_STARTED=0

cleanup() {
    local rc=$?
    if [ "$PG_STARTED" = 1 ]; then
        "$REPO/scripts/postgres.sh" stop || true
    fi
    if [ "$TANSU_STARTED" = 1 ]; then
        "$REPO/scripts/tansu.sh" stop || true
    fi
    if [ -n "$REGISTRY_PID" ]; then
        kill "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
    fi
    if [ -n "$MOTO_PID" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    if [ "${TIDEMARK_TEST_KEEP_MARIADB:-0}" = 1 ] || [ "$MARIADB_WAS_RUNNING" = 1 ]; then
        echo "leaving private MariaDB running ($("$REPO/scripts/mariadb.sh" url 2>/dev/null || true)); stop it with scripts/mariadb.sh stop" >&2
    else
        "$REPO/scripts/mariadb.sh" stop || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TIDEMARK_TEST_MYSQL_URL="$("$REPO/scripts/mariadb.sh" start)"
export TIDEMARK_TEST_MYSQL_URL
echo "TIDEMARK_TEST_MYSQL_URL=$TIDEMARK_TEST_MYSQL_URL" >&2

# ------------------------------------------------------------------ PostgreSQL
section "Private PostgreSQL (scripts/postgres.sh), the publish tests' target"
if ! "$REPO/scripts/postgres.sh" status >/dev/null 2>&1; then PG_STARTED=1; fi
TIDEMARK_TEST_PG_URL="$("$REPO/scripts/postgres.sh" start)"
# The throwaway test instance's password (scripts/postgres.sh sets it at initdb).
export TIDEMARK_TEST_PG_URL TIDEMARK_TEST_PG_PASSWORD=tidemark
# The CA that signed the instance's TLS certificate, for the publisher's TLS tests.
TIDEMARK_TEST_PG_CA="$("$REPO/scripts/postgres.sh" ca)"
export TIDEMARK_TEST_PG_CA
echo "TIDEMARK_TEST_PG_URL=$TIDEMARK_TEST_PG_URL TIDEMARK_TEST_PG_CA=$TIDEMARK_TEST_PG_CA" >&2

# ------------------------------------------------------------------ S3 (moto)
section "S3-compatible test server (moto)"
MOTO_DIR="$REPO/target/test-services/moto"
mkdir -p "$MOTO_DIR"
command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
if command -v moto_server >/dev/null 2>&1; then
    MOTO_SERVER="$(command -v moto_server)"
else
    MOTO_SERVER="$MOTO_DIR/venv/bin/moto_server"
    if [ ! -x "$MOTO_SERVER" ]; then
        # A private venv: works where the system Python refuses pip (PEP 668).
        echo "moto_server missing: pip install 'moto[server]' into $MOTO_DIR/venv" >&2
        python3 -m venv "$MOTO_DIR/venv" >&2 || {
            apt_install python3-venv
            python3 -m venv "$MOTO_DIR/venv" >&2
        }
        "$MOTO_DIR/venv/bin/pip" install --quiet 'moto[server]' >&2
    fi
fi
MOTO_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$MOTO_SERVER" -H 127.0.0.1 -p "$MOTO_PORT" >"$MOTO_DIR/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 1 60); do
    kill -0 "$MOTO_PID" 2>/dev/null || { tail -20 "$MOTO_DIR/moto.log" >&2; die "moto_server exited; log: $MOTO_DIR/moto.log"; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null; then break; fi
    sleep 0.5
done
(exec 3<>"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null \
    || die "moto_server did not listen on 127.0.0.1:$MOTO_PORT within 30s; log: $MOTO_DIR/moto.log"
export TIDEMARK_TEST_S3_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
# Dummy credentials for moto; the S3 client reads them like real ones.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3
echo "TIDEMARK_TEST_S3_ENDPOINT=$TIDEMARK_TEST_S3_ENDPOINT (moto, pid $MOTO_PID, log $MOTO_DIR/moto.log)" >&2

# ------------------------------------------------------------------ client libraries
section "Client libraries for the endpoint tests (psycopg, SQLAlchemy, pgjdbc)"
PYCLIENTS_DIR="$REPO/target/test-services/pyclients"
PYCLIENTS_PY="$PYCLIENTS_DIR/venv/bin/python"
if ! "$PYCLIENTS_PY" -c 'import psycopg, sqlalchemy, duckdb, deltalake, pyarrow, confluent_kafka.schema_registry.avro, fastavro, selenium' >/dev/null 2>&1; then
    echo "psycopg/SQLAlchemy/DuckDB/deltalake/selenium missing: pip install into $PYCLIENTS_DIR/venv" >&2
    mkdir -p "$PYCLIENTS_DIR"
    python3 -m venv "$PYCLIENTS_DIR/venv" >&2 || {
        apt_install python3-venv
        python3 -m venv "$PYCLIENTS_DIR/venv" >&2
    }
    # duckdb and deltalake: the models' equivalence test runs the same SQL in an
    # engine that shares no code with tidemark.
    # confluent-kafka[avro]: Confluent's own AvroSerializer writes the Avro stream
    # tests' messages (issue 21), registering schemas through the registry below.
    # selenium: the web console's browser test (issue 20) drives headless Chromium
    # through Debian's chromedriver (installed above), never a downloaded driver.
    "$PYCLIENTS_DIR/venv/bin/pip" install --quiet 'psycopg[binary]' sqlalchemy duckdb 'deltalake[pyarrow]' 'confluent-kafka[avro]' selenium >&2
fi
export TIDEMARK_TEST_PYTHON="$PYCLIENTS_PY"
TIDEMARK_TEST_PGJDBC=/usr/share/java/postgresql.jar
if [ ! -f "$TIDEMARK_TEST_PGJDBC" ]; then
    echo "pgjdbc missing: installing libpostgresql-jdbc-java" >&2
    apt_install libpostgresql-jdbc-java
fi
export TIDEMARK_TEST_PGJDBC
# `java File.java` compiles the test's client in memory: that needs a JDK, not a JRE.
if ! command -v javac >/dev/null 2>&1; then
    echo "javac missing: installing default-jdk-headless" >&2
    apt_install default-jdk-headless
fi
echo "TIDEMARK_TEST_PYTHON=$TIDEMARK_TEST_PYTHON TIDEMARK_TEST_PGJDBC=$TIDEMARK_TEST_PGJDBC" >&2

# ------------------------------------------------------------------ Kafka (tansu)
section "Private Kafka-protocol broker (scripts/tansu.sh)"
# Built once with cargo install (about 10-20 minutes on 2 cores), then reused.
if ! "$REPO/scripts/tansu.sh" status >/dev/null 2>&1; then TANSU_STARTED=1; fi
TIDEMARK_TEST_KAFKA="$("$REPO/scripts/tansu.sh" start)"
export TIDEMARK_TEST_KAFKA
echo "TIDEMARK_TEST_KAFKA=$TIDEMARK_TEST_KAFKA" >&2

# ------------------------------------------------------------------ schema registry
section "Schema registry stand-in (scripts/schema_registry.py)"
# No Confluent-compatible registry installs here (Karapace is not on PyPI; Confluent's
# and Apicurio's need Docker or Maven): a minimal one implementing the documented
# REST endpoints that the AvroSerializer and tidemark use, on a free loopback port.
REGISTRY_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
REGISTRY_LOG="$REPO/target/test-services/schema_registry.log"
mkdir -p "$(dirname "$REGISTRY_LOG")"
python3 "$REPO/scripts/schema_registry.py" --port "$REGISTRY_PORT" >"$REGISTRY_LOG" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 1 50); do
    grep -q "listening" "$REGISTRY_LOG" 2>/dev/null && break
    sleep 0.1
done
grep -q "listening" "$REGISTRY_LOG" || { cat "$REGISTRY_LOG" >&2; echo "the schema registry did not start" >&2; exit 1; }
export TIDEMARK_TEST_REGISTRY="http://127.0.0.1:$REGISTRY_PORT"
echo "TIDEMARK_TEST_REGISTRY=$TIDEMARK_TEST_REGISTRY" >&2

# ------------------------------------------------------------------ lint
if [ "${TIDEMARK_TEST_SKIP_LINT:-0}" = 1 ]; then
    section "Lint skipped (TIDEMARK_TEST_SKIP_LINT=1)"
else
    section "cargo fmt --all -- --check"
    cargo fmt --all -- --check
    if [ "${TIDEMARK_TEST_CLIPPY:-build}" = separate ]; then
        section "cargo clippy --workspace --all-targets --locked -- -D warnings"
        cargo clippy --workspace --all-targets --locked -- -D warnings
    else
        # Clippy inside the build the tests need: clippy-driver compiles the
        # workspace's own crates (RUSTC_WORKSPACE_WRAPPER; dependencies still go
        # through rustc), so its lints are those of `cargo clippy --workspace
        # --all-targets -- -D warnings`, without the check-only second compile of
        # every dependency that `cargo clippy` does (a large part of a cold run on
        # 2 cores). Exported for the rest of the script: the test runner then finds
        # the crates built as they are, with nothing to compile again.
        CLIPPY_DRIVER="$(command -v clippy-driver)" \
            || die "clippy-driver is missing (rustup component add clippy), or set TIDEMARK_TEST_SKIP_LINT=1"
        export RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER"
        export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
        section "clippy -D warnings, in cargo build --workspace --all-targets --locked"
        cargo build --workspace --all-targets --locked
    fi
fi

# ------------------------------------------------------------------ tests
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
# The fault-injection tests and the fuzzers append what they did here; it is totalled
# at the end (issue 14: the counts are part of the run's output).
export TIDEMARK_FAULT_LOG="$REPO/target/test-services/faults.log"
mkdir -p "$(dirname "$TIDEMARK_FAULT_LOG")"
: > "$TIDEMARK_FAULT_LOG"
common=(--workspace --locked)
if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then common+=(--no-fail-fast); fi

rc=0
if [ "$RUNNER" = nextest ]; then
    # nextest does not run doctests; run them first on full (unfiltered) runs, so
    # that nextest's summary ("N tests run: N passed") is the run's closing line.
    if [ $# -eq 0 ]; then
        section "cargo test --doc ${common[*]}"
        cargo test --doc "${common[@]}" || rc=$?
    fi
    section "cargo nextest run ${common[*]} -- $*"
    nrc=0
    cargo nextest run "${common[@]}" -- "$@" || nrc=$?
    [ "$rc" -ne 0 ] || rc=$nrc
else
    section "cargo test ${common[*]} -- $*"
    cargo test "${common[@]}" -- "$@" || rc=$?
fi

section "Faults injected, fuzzing, rows checked after faults"
awk '
    $1 == "fault" { faults[$2]++; nfaults++ }
    $1 == "fuzz" {
        targets++
        split($3, a, "="); inputs += a[2]
        split($4, b, "="); secs += b[2]
        split($5, c, "="); crashes += c[2]
    }
    $1 == "checked" { rows += $2 }
    END {
        printf "faults injected: %d", nfaults
        for (k in faults) printf " (%s: %d)", k, faults[k]
        printf "\nfuzzing: %d targets, %d inputs in %.0f s, %d crashes\n", targets, inputs, secs, crashes
        printf "rows checked after faults: %d\n", rows
    }' "$TIDEMARK_FAULT_LOG" >&2

if [ "$rc" -eq 0 ]; then
    section "All tests passed"
else
    section "Tests FAILED (exit $rc)"
fi
exit "$rc"
