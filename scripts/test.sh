#!/usr/bin/env bash
# tidemark's one test command:
#
#   scripts/test.sh [TEST ARGS...]
#
# 1. checks the Rust toolchain (cargo, rustfmt, clippy),
# 2. installs missing system packages with apt (mariadb-server/-client via
#    scripts/mariadb.sh, postgresql-client for psql),
# 3. starts a private MariaDB (scripts/mariadb.sh; never the system one on
#    3306) and exports TIDEMARK_TEST_MYSQL_URL,
# 4. runs `cargo fmt --check` and `cargo clippy -D warnings`,
# 5. runs the tests: `cargo nextest run` if cargo-nextest is installed, else
#    `cargo test`; both with --workspace --locked.
#
# TEST ARGS go after `--`, libtest style, so they mean the same to both
# runners: a name filter, --exact, --skip PAT, --ignored, --include-ignored,
# --nocapture.  Example: scripts/test.sh replication --nocapture
#
# Environment:
#   TIDEMARK_TEST_SKIP_LINT=1     skip fmt and clippy
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

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

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
# mariadb-server / mariadb-client are installed by scripts/mariadb.sh start if missing.

# ------------------------------------------------------------------ MariaDB
section "Private MariaDB (scripts/mariadb.sh)"
MARIADB_WAS_RUNNING=0
if "$REPO/scripts/mariadb.sh" status >/dev/null 2>&1; then MARIADB_WAS_RUNNING=1; fi

cleanup() {
    local rc=$?
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

# ------------------------------------------------------------------ lint
if [ "${TIDEMARK_TEST_SKIP_LINT:-0}" = 1 ]; then
    section "Lint skipped (TIDEMARK_TEST_SKIP_LINT=1)"
else
    section "cargo fmt --all -- --check"
    cargo fmt --all -- --check
    section "cargo clippy --workspace --all-targets --locked -- -D warnings"
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi

# ------------------------------------------------------------------ tests
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
common=(--workspace --locked)
if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then common+=(--no-fail-fast); fi

rc=0
if [ "$RUNNER" = nextest ]; then
    section "cargo nextest run ${common[*]} -- $*"
    cargo nextest run "${common[@]}" -- "$@" || rc=$?
    # nextest does not run doctests; run them on full (unfiltered) runs.
    if [ $# -eq 0 ]; then
        section "cargo test --doc ${common[*]}"
        drc=0
        cargo test --doc "${common[@]}" || drc=$?
        [ "$rc" -ne 0 ] || rc=$drc
    fi
else
    section "cargo test ${common[*]} -- $*"
    cargo test "${common[@]}" -- "$@" || rc=$?
fi

if [ "$rc" -eq 0 ]; then
    section "All tests passed"
else
    section "Tests FAILED (exit $rc)"
fi
exit "$rc"
