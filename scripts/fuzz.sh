#!/usr/bin/env bash
# Run every fuzz target of tidemark's decoders of outside bytes for a while each
# (default 600 s; CI runs each for a few seconds as part of scripts/test.sh).
#
#   scripts/fuzz.sh [SECONDS]
#
# Targets and what they feed (crates/tidemark-fuzz explains the fuzzer):
#   debezium, dms, jsonl       change events (tidemark-events)
#   avro                       Confluent-framed Avro envelopes and their schemas
#   mariadb_gtid               MariaDB GTID and GTID-list events (tidemark-mysql)
#   mariadb_compressed         MariaDB compressed query/rows events (log_bin_compress)
#   transaction_payload        MySQL 8 transaction payloads (binlog_transaction_compression)
#   config                     the config file (tidemark-core)
#   users, scram               the users file and SCRAM client messages (tidemark-server)
#
# A crash is saved under fuzz/crashes/ and fails the run; once fixed, copy the file
# into fuzz/corpus/<target>/ so every CI run replays it. The totals go to stdout.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO"
SECS="${1:-600}"
export TIDEMARK_FUZZ_SECS="$SECS"
export TIDEMARK_FAULT_LOG="$REPO/target/fuzz.log"
: > "$TIDEMARK_FAULT_LOG"
# One target at a time: each gets a core to itself for its whole budget.
cargo nextest run --workspace --locked -j 1 -E 'test(/^(.*::)?fuzz_/)'
cat "$TIDEMARK_FAULT_LOG"
