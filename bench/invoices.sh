# The benchmark invoice table, shared by bench/*.sh (sourced, not run). Callers define
# `q SQL` (run one statement, tab-separated output without headers) and `log`.

# load_invoices DB TABLE ROWS: (re)create DB.TABLE with ROWS deterministic rows.
load_invoices() {
    local DB="$1" TABLE="$2" ROWS="$3" LOAD_BATCH=1000000 t0 lo hi
    q "CREATE DATABASE IF NOT EXISTS $DB"
    q "DROP TABLE IF EXISTS $DB.$TABLE"
    q "CREATE TABLE $DB.$TABLE (
        id          BIGINT PRIMARY KEY,
        customer_id BIGINT NOT NULL,
        status      ENUM('draft','open','paid','void') NOT NULL,
        currency    CHAR(3) NOT NULL,
        issued_at   DATETIME(6) NULL,
        due_date    DATE NULL,
        total       DECIMAL(12,2) NOT NULL,
        notes       VARCHAR(200) NULL,
        updated_at  DATETIME(6) NOT NULL
    ) ENGINE=InnoDB"
    t0=$SECONDS
    lo=1
    while [ "$lo" -le "$ROWS" ]; do
        hi=$(( lo + LOAD_BATCH - 1 )); [ "$hi" -gt "$ROWS" ] && hi="$ROWS"
        # Deterministic pseudo-random values from seq; ~10% of invoices are drafts
        # without issue/due dates, ~1/3 have no notes. The load is kept out of the
        # binlog (sql_log_bin=0): it is bench data, not a change to capture.
        q "SET SESSION sql_log_bin = 0;
           INSERT INTO $DB.$TABLE
           SELECT seq,
                  seq * 7919 % 100000 + 1,
                  IF(seq % 10 = 0, 'draft', ELT(1 + seq * 37 % 9, 'paid','paid','paid','paid','paid','open','open','open','void')),
                  ELT(1 + seq % 5, 'EUR','USD','GBP','EUR','CHF'),
                  IF(seq % 10 = 0, NULL,
                     TIMESTAMP'2020-01-01 00:00:00' + INTERVAL (seq * 7907 % 157680000) SECOND
                                                    + INTERVAL (seq * 104723 % 1000000) MICROSECOND),
                  IF(seq % 10 = 0, NULL,
                     DATE'2020-01-01' + INTERVAL ((seq * 7907 % 157680000) DIV 86400 + 30) DAY),
                  (seq * 104729 % 10000000) / 100,
                  IF(seq % 3 = 0, NULL,
                     CONCAT('PO-', LPAD(seq * 13 % 1000000, 6, '0'), ' net 30, ',
                            ELT(1 + seq % 3, 'priority', 'standard', 'deferred'))),
                  TIMESTAMP'2020-01-01 00:00:00' + INTERVAL (seq * 7907 % 157680000 + seq % 2592000) SECOND
                                                 + INTERVAL (seq * 7919 % 1000000) MICROSECOND
           FROM $DB.seq_${lo}_to_${hi}"
        log "  loaded $hi / $ROWS"
        lo=$(( hi + 1 ))
    done
    q "ANALYZE TABLE $DB.$TABLE" >/dev/null
    log "load took $(( SECONDS - t0 ))s"
}

# fit_buffer_pool DB TABLE: grow (never shrink) the InnoDB buffer pool so the table
# fits in it, so that readers measure memory, not disk.
fit_buffer_pool() {
    local DB="$1" TABLE="$2" table_bytes pool_bytes want status
    # Make sure the table fits in the buffer pool (O_DIRECT: no OS page cache behind it).
    table_bytes="$(q "SELECT data_length + index_length FROM information_schema.tables WHERE table_schema='$DB' AND table_name='$TABLE'")"
    pool_bytes="$(q "SELECT @@innodb_buffer_pool_size")"
    want=$(( (table_bytes * 3 / 2 / 134217728 + 1) * 134217728 ))
    if [ "$pool_bytes" -lt "$want" ]; then
        log "growing innodb_buffer_pool_size $((pool_bytes >> 20)) MiB -> $((want >> 20)) MiB (table is $((table_bytes >> 20)) MiB)"
        q "SET GLOBAL innodb_buffer_pool_size = $want"
        for _ in $(seq 1 120); do
            status="$(q "SHOW STATUS LIKE 'Innodb_buffer_pool_resize_status'" | cut -f2-)"
            case "$status" in *"Completed"*|"") break ;; esac
            sleep 0.5
        done
        pool_bytes="$(q "SELECT @@innodb_buffer_pool_size")"
    fi
}
