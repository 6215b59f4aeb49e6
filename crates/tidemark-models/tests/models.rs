//! The example models (examples/models) over the demo's invoicing data, landed the
//! way capture lands it: built whole, then incrementally after more days of inserts,
//! updates and deletes; each time every model must equal its SQL run directly on the
//! same input state, and its history must answer `FOR SYSTEM_TIME AS OF` with the
//! earlier build.

use std::path::PathBuf;
use std::sync::Arc;

use tidemark_core::config::ModelsConfig;
use tidemark_core::names::Naming;
use tidemark_demo::{Lander, Workload, WorkloadConfig};
use tidemark_lake::Warehouse;
use tidemark_models::{Options, Outcome, Project};
use tidemark_query::Engine;

/// The demo workload, landed a few days at a time.
struct Landing {
    lander: Lander,
    workload: Workload,
}

impl Landing {
    async fn new(wh: &Warehouse) -> Self {
        Self {
            lander: Lander::open(wh, Naming::SnakeCase).await.unwrap(),
            workload: Workload::new(WorkloadConfig {
                days: 60,
                end_us: 1_717_200_000_000_000,
                ..Default::default()
            }),
        }
    }

    /// Land the next `days` days, a commit per table per day.
    async fn days(&mut self, days: u32) {
        for _ in 0..days {
            let events = self.workload.next_day().expect("a day left");
            self.lander.land(&events).await.unwrap();
        }
    }
}

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/models")
}

async fn rows(engine: &Engine, sql: &str) -> Vec<String> {
    let batches = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            out.push(
                (0..b.num_columns())
                    .map(|c| {
                        deltalake::arrow::util::display::array_value_to_string(b.column(c), r)
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out.sort();
    out
}

/// Every model's table equals its SQL run now, on the same inputs.
async fn assert_models_equal_their_sql(wh: &Warehouse, project: &Project) -> usize {
    let engine = Engine::open(wh).await.unwrap();
    let mut total = 0;
    for (name, d) in tidemark_models::drift::drift_all(&engine, project)
        .await
        .unwrap()
    {
        assert!(d.is_none(), "model {name} differs from its SQL: {d:#?}");
        total += d.landed;
    }
    total
}

fn built(report: &tidemark_models::Report, name: &str) -> tidemark_models::Built {
    match report.get(name) {
        Some(Outcome::Built(b)) => b.clone(),
        other => panic!("{name}: {other:?}\n{report:#?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_models_build_incrementally_and_travel_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let mut landing = Landing::new(&wh).await;
    landing.days(30).await;

    let config = ModelsConfig {
        path: models_dir(),
        ..Default::default()
    };
    let engine = Arc::new(Engine::open(&wh).await.unwrap());
    let project = Project::load(&config, Some(&engine.landed_names()), "dev").unwrap();
    assert!(project.broken.is_empty(), "{:#?}", project.broken);
    assert_eq!(project.models.len(), 6);
    assert!(project.models["revenue_by_country"]
        .deps
        .contains("customer_summary"));
    let options = Options {
        threads: 2,
        ..Default::default()
    };

    // First build: every model whole.
    let first = tidemark_models::build(&wh, engine, &project, &options)
        .await
        .unwrap();
    assert!(first.failures().is_empty(), "{first:#?}");
    // Its data tests' outcomes landed in tidemark.model_tests in one commit: the
    // table's creation is version 0, the build's append version 1.
    let tests_table = tidemark_lake::existing_model_tests(&wh)
        .await
        .unwrap()
        .expect("the build recorded its tests");
    assert_eq!(tests_table.version(), Some(1));
    let last = tidemark_lake::last_model_tests(&wh).await.unwrap();
    assert!(
        last.len() >= 3
            && last.iter().all(|r| r.outcome == "pass"
                && r.ran_by == "tidemark build"
                && r.ended_us >= r.started_us),
        "{last:#?}"
    );
    assert!(last
        .iter()
        .any(|r| r.model == "customer_summary" && r.test == "unique(customer_id)"));
    let order: Vec<&str> = first.models.iter().map(|(n, _)| n.as_str()).collect();
    let at = |n: &str| order.iter().position(|x| *x == n).unwrap();
    assert!(at("customer_summary") < at("revenue_by_country"));
    let summary_1 = built(&first, "customer_summary");
    assert!(!summary_1.incremental && summary_1.inserted > 0);
    let rows_1 = assert_models_equal_their_sql(&wh, &project).await;
    assert!(rows_1 > 100, "{rows_1}");
    let engine = Engine::open(&wh).await.unwrap();
    // The view answers now, and refuses time travel with the way to do it.
    let overdue = rows(&engine, "SELECT count(*) FROM analytics.overdue_invoices").await;
    assert_eq!(
        overdue,
        rows(
            &engine,
            "SELECT count(*) FROM invoicing.invoices WHERE status = 'open' AND due_date < current_date"
        )
        .await
    );
    let e = engine
        .sql("SELECT * FROM analytics.overdue_invoices FOR SYSTEM_TIME AS OF now()")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a view"), "{e}");
    let receivables = "customer_id, name, open_invoices, open_amount, oldest_due_date";
    let open_1 = rows(
        &engine,
        &format!("SELECT {receivables} FROM analytics.open_receivables"),
    )
    .await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    // Nothing changed: nothing to do.
    let engine = Arc::new(Engine::open(&wh).await.unwrap());
    let again = tidemark_models::build(&wh, engine, &project, &options)
        .await
        .unwrap();
    assert!(
        again
            .models
            .iter()
            .all(|(_, o)| matches!(o, Outcome::UpToDate)),
        "{again:#?}"
    );
    // Nothing built, no test ran: no commit.
    let tests_table = tidemark_lake::existing_model_tests(&wh)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tests_table.version(), Some(1));

    // Ten more days: new invoices, payments (updates), drafts deleted.
    landing.days(10).await;
    let engine = Arc::new(Engine::open(&wh).await.unwrap());
    let second = tidemark_models::build(&wh, engine, &project, &options)
        .await
        .unwrap();
    assert!(second.failures().is_empty(), "{second:#?}");
    for name in ["customer_summary", "open_receivables"] {
        let b = built(&second, name);
        assert!(b.incremental, "{name} should build incrementally: {b:?}");
        assert!(b.inserted + b.updated > 0, "{name}: {b:?}");
    }
    // The ledger of payments grew by the new payments only.
    let ledger = built(&second, "payments_received");
    assert!(
        ledger.appended && ledger.inserted > 0 && ledger.updated == 0 && ledger.deleted == 0,
        "{ledger:?}"
    );
    // Customers whose last open invoice was settled left the receivables.
    assert!(
        built(&second, "open_receivables").deleted > 0,
        "{second:#?}"
    );
    assert!(
        built(&second, "customer_summary").rows < summary_1.rows,
        "only the touched customers were recomputed"
    );
    assert_models_equal_their_sql(&wh, &project).await;

    // The model as it stood after the first build.
    let engine = Engine::open(&wh).await.unwrap();
    let then = rows(
        &engine,
        &format!(
            "SELECT {receivables} FROM analytics.open_receivables FOR SYSTEM_TIME AS OF TIMESTAMP '{}'",
            between.format("%Y-%m-%d %H:%M:%S%.6f")
        ),
    )
    .await;
    assert_eq!(then, open_1, "AS OF the first build");
    let history = rows(
        &engine,
        "SELECT count(*) FROM analytics_history.open_receivables",
    )
    .await;
    let versions: usize = history[0].parse().unwrap();
    assert!(versions > open_1.len(), "{versions}");

    // Ten more days, then a full refresh gives the same tables.
    landing.days(10).await;
    let engine = Arc::new(Engine::open(&wh).await.unwrap());
    let third = tidemark_models::build(&wh, engine, &project, &options)
        .await
        .unwrap();
    assert!(third.failures().is_empty(), "{third:#?}");
    assert_models_equal_their_sql(&wh, &project).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_model_stops_only_what_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().join("wh").to_str().unwrap(), Default::default()).unwrap();
    let mut landing = Landing::new(&wh).await;
    landing.days(3).await;
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let write = |name: &str, text: &str| std::fs::write(models.join(name), text).unwrap();
    write(
        "good.sql",
        "SELECT id, name FROM {{ source('invoicing', 'customers') }}",
    );
    write(
        "bad.sql",
        "SELECT id,\n  FROM {{ source('invoicing', 'customers') }} WHERE nope > 1",
    );
    write("downstream.sql", "SELECT id FROM {{ ref('bad') }}");
    write("typo.sql", "SELECT 1 AS x FROM {{ ref('godo') }}");
    write(
        "dupes.sql",
        "SELECT country FROM {{ source('invoicing', 'customers') }}",
    );
    write("loop_a.sql", "SELECT x FROM {{ ref('loop_b') }}");
    write("loop_b.sql", "SELECT x FROM {{ ref('loop_a') }}");
    let config = ModelsConfig {
        path: models.clone(),
        ..Default::default()
    };
    let engine = Arc::new(Engine::open(&wh).await.unwrap());
    let project = Project::load(&config, Some(&engine.landed_names()), "dev").unwrap();
    let typo = project.broken["typo"].to_string();
    assert!(
        typo.contains("typo.sql:1") && typo.contains("no model godo"),
        "{typo}"
    );
    let report = tidemark_models::build(&wh, engine, &project, &Options::default())
        .await
        .unwrap();
    assert!(
        matches!(report.get("good"), Some(Outcome::Built(_))),
        "{report:#?}"
    );
    let text = |n: &str| match report.get(n) {
        Some(Outcome::Failed(e) | Outcome::Skipped(e)) => e.clone(),
        other => panic!("{n}: {other:?}"),
    };
    assert!(text("bad").contains("bad.sql"), "{}", text("bad"));
    assert!(
        text("downstream").contains("bad failed"),
        "{}",
        text("downstream")
    );
    assert!(text("dupes").contains("repeats rows"), "{}", text("dupes"));
    assert!(text("loop_a").contains("cycle"), "{}", text("loop_a"));
    // Nothing of the failed models landed.
    let engine = Engine::open(&wh).await.unwrap();
    assert!(engine.sql("SELECT * FROM analytics.dupes").await.is_err());
    assert_eq!(
        rows(&engine, "SELECT count(*) FROM analytics.good").await,
        rows(&engine, "SELECT count(*) FROM invoicing.customers").await
    );
}

/// Append models: each build adds the rows of the input rows landed since the last
/// one, once. Over an insert-only input (payments) the model equals its SQL after
/// every build; over inputs that are updated (customers' emails) or deleted from
/// (draft invoices) it keeps what it appended, as dbt's append does. Builds run
/// again, or at the same time, append nothing twice. A model whose new rows cannot
/// be told from its inputs' (an aggregate) is refused with the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_models_add_what_is_new_once() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().join("wh").to_str().unwrap(), Default::default()).unwrap();
    let mut landing = Landing::new(&wh).await;
    landing.days(10).await;
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let write = |name: &str, text: &str| std::fs::write(models.join(name), text).unwrap();
    let append = "{{ config(materialized = 'incremental', incremental_strategy = 'append') }}\n";
    write(
        "payments_log.sql",
        &format!("{append}SELECT id AS payment_id, invoice_id, amount, method FROM {{{{ source('invoicing', 'payments') }}}} WHERE amount > 0"),
    );
    write(
        "customer_emails.sql",
        &format!("{append}SELECT id AS customer_id, email FROM {{{{ source('invoicing', 'customers') }}}}"),
    );
    write(
        "invoice_ids.sql",
        &format!("{append}SELECT id AS invoice_id, customer_id FROM {{{{ source('invoicing', 'invoices') }}}}"),
    );
    write(
        "per_customer.sql",
        &format!("{append}SELECT customer_id, count(*) AS invoices FROM {{{{ source('invoicing', 'invoices') }}}} GROUP BY customer_id"),
    );
    let config = ModelsConfig {
        path: models.clone(),
        ..Default::default()
    };
    let build = |wh: Warehouse, config: ModelsConfig| async move {
        let engine = Arc::new(Engine::open(&wh).await.unwrap());
        let project = Project::load(&config, Some(&engine.landed_names()), "dev").unwrap();
        assert!(project.broken.is_empty(), "{:#?}", project.broken);
        tidemark_models::build(&wh, engine, &project, &Options::default())
            .await
            .unwrap()
    };
    let drift = |wh: Warehouse, config: ModelsConfig, name: &'static str| async move {
        let engine = Engine::open(&wh).await.unwrap();
        let project = Project::load(&config, Some(&engine.landed_names()), "dev").unwrap();
        tidemark_models::drift::drift(&engine, &project.models[name])
            .await
            .unwrap()
    };
    let count = |wh: Warehouse, sql: &'static str| async move {
        let engine = Engine::open(&wh).await.unwrap();
        rows(&engine, sql).await[0].parse::<u64>().unwrap()
    };

    let first = build(wh.clone(), config.clone()).await;
    let b = built(&first, "payments_log");
    assert!(
        !b.incremental && b.full_because.as_deref() == Some("first build"),
        "{b:?}"
    );
    // Refused on its first build, with why and the way out.
    let refused = match first.get("per_customer") {
        Some(Outcome::Failed(e)) => e.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        refused.contains("aggregates") && refused.contains("'merge' with a unique_key"),
        "{refused}"
    );
    assert!(drift(wh.clone(), config.clone(), "payments_log")
        .await
        .is_none());

    for round in 0..3 {
        let before = count(
            wh.clone(),
            "SELECT count(*) FROM invoicing.payments WHERE amount > 0",
        )
        .await;
        landing.days(5).await;
        let after = count(
            wh.clone(),
            "SELECT count(*) FROM invoicing.payments WHERE amount > 0",
        )
        .await;
        let report = build(wh.clone(), config.clone()).await;
        let b = built(&report, "payments_log");
        assert!(
            b.appended && b.incremental && b.updated == 0 && b.deleted == 0,
            "round {round}: {b:?}"
        );
        assert_eq!(
            b.inserted,
            after - before,
            "round {round}: the new payments, once"
        );
        assert_eq!(
            b.rows, b.inserted,
            "round {round}: only the new rows were made"
        );
        let d = drift(wh.clone(), config.clone(), "payments_log").await;
        assert!(d.is_none(), "round {round}: {d:#?}");
    }

    // Nothing new: nothing to do.
    let again = build(wh.clone(), config.clone()).await;
    for name in ["payments_log", "customer_emails", "invoice_ids"] {
        assert!(
            matches!(again.get(name), Some(Outcome::UpToDate)),
            "{name}: {again:#?}"
        );
    }
    // Two builds at once after more days: one appends, the other finds its commit
    // (and lands nothing) or the model up to date; no row twice.
    landing.days(3).await;
    let (a, b) = tokio::join!(
        build(wh.clone(), config.clone()),
        build(wh.clone(), config.clone())
    );
    let appended: Vec<u64> = [&a, &b]
        .iter()
        .filter_map(|r| match r.get("payments_log") {
            Some(Outcome::Built(b)) => Some(b.inserted),
            Some(Outcome::UpToDate) => None,
            Some(Outcome::Failed(e)) => {
                assert!(e.contains("another build of this model landed"), "{e}");
                None
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(appended.len(), 1, "{a:#?}\n{b:#?}");
    let d = drift(wh.clone(), config.clone(), "payments_log").await;
    assert!(d.is_none(), "{d:#?}");
    let again = build(wh.clone(), config.clone()).await;
    assert!(
        matches!(again.get("payments_log"), Some(Outcome::UpToDate)),
        "{again:#?}"
    );

    // Updates are not reflected: every customer once, some with the email they had
    // when appended.
    let d = drift(wh.clone(), config.clone(), "customer_emails").await;
    assert_eq!(d.landed, d.expected, "one row per customer: {d:#?}");
    assert!(
        !d.only_landed.is_empty(),
        "an email changed after it was appended: {d:#?}"
    );
    // Deletes are not either: every invoice there is, and drafts deleted since.
    let d = drift(wh.clone(), config.clone(), "invoice_ids").await;
    assert!(
        d.only_expected.is_empty() && d.landed > d.expected,
        "{d:#?}"
    );
}

/// A row of `bench.events` and what happened to it: (id, customer, amount, status, op).
type EventRow<'a> = (i64, i64, i64, &'a str, &'a str);

/// `bench.events` (id, customer_id, amount, status) landed as a change stream lands:
/// history log, merge-on-read current table.
struct Events {
    schema: Arc<tidemark_core::schema::TableSchema>,
    writer: tidemark_lake::TableWriter,
    ts: i64,
    seq: i64,
}

impl Events {
    async fn new(wh: &Warehouse) -> Self {
        use tidemark_core::names::TableName;
        use tidemark_core::schema::{ColumnSchema, TableSchema};
        let column = |name: &str, data_type: &str, column_type: &str| ColumnSchema {
            source_name: name.into(),
            name: name.into(),
            column_type: column_type.into(),
            data_type: data_type.into(),
            precision: None,
            scale: None,
            stored: Vec::new(),
        };
        let schema = Arc::new(
            TableSchema::new(
                TableName::new("bench", "events", Naming::SnakeCase),
                vec![
                    column("id", "bigint", "bigint(20)"),
                    column("customer_id", "bigint", "bigint(20)"),
                    column("amount", "bigint", "bigint(20)"),
                    column("status", "varchar", "varchar(10)"),
                ],
                &["id".to_string()],
                Naming::SnakeCase,
            )
            .unwrap(),
        );
        let mut writer = tidemark_lake::TableWriter::open(wh, schema.clone())
            .await
            .unwrap();
        writer.start_merge_on_read().await.unwrap();
        Self {
            schema,
            writer,
            ts: 1_717_200_000_000_000,
            seq: 0,
        }
    }

    /// One commit of (id, customer, amount, status, op) rows, in order.
    async fn land(&mut self, rows: &[EventRow<'_>]) {
        use deltalake::arrow::array::TimestampMicrosecondArray;
        use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray};
        self.ts += 1_000_000;
        let n = rows.len();
        let data = RecordBatch::try_new(
            self.schema.change_schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
                Arc::new(TimestampMicrosecondArray::from(vec![self.ts; n]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec!["test"; n])),
                Arc::new(Int64Array::from_iter_values(
                    (0..n as i64).map(|i| self.seq + i),
                )),
            ],
        )
        .unwrap();
        self.seq += n as i64;
        let batch = tidemark_core::change::ChangeBatch {
            table: self.schema.clone(),
            data,
        };
        let state = tidemark_core::position::SourceState {
            source: "test".into(),
            source_table: "bench.events".into(),
            ..Default::default()
        };
        self.writer.append_history(&batch, state).await.unwrap();
    }
}

/// A model keyed by its input's own key reads the rows that input changed from its
/// log's tail alone (not its whole table) while the input's base is older than the
/// last build, and from base and tail once a compaction moved the base past it; the
/// model equals its SQL either way. An aggregate by another column (which needs
/// every row of a touched customer) reads the base.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_keyed_by_its_inputs_key_reads_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().join("wh").to_str().unwrap(), Default::default()).unwrap();
    let mut events = Events::new(&wh).await;
    let first: Vec<EventRow> = (0..2_000)
        .map(|i| (i, i % 300, i * 7 % 1_000, "open", "c"))
        .collect();
    events.land(&first).await;
    events.writer.compact_current().await.unwrap();

    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    // models_bench measures these two models.
    for (name, sql) in [
        (
            "events_clean.sql",
            include_str!("bench_models/events_clean.sql"),
        ),
        (
            "customer_totals.sql",
            include_str!("bench_models/customer_totals.sql"),
        ),
    ] {
        std::fs::write(models.join(name), sql).unwrap();
    }
    let config = ModelsConfig {
        path: models,
        ..Default::default()
    };
    let build = || async {
        let engine = Arc::new(Engine::open(&wh).await.unwrap());
        let project = Project::load(&config, Some(&engine.landed_names()), "dev").unwrap();
        let report = tidemark_models::build(&wh, engine, &project, &Options::default())
            .await
            .unwrap();
        let equal = assert_models_equal_their_sql(&wh, &project).await;
        assert!(equal > 0);
        (
            built(&report, "events_clean"),
            built(&report, "customer_totals"),
        )
    };
    let (clean, totals) = build().await;
    assert!(!clean.incremental && !totals.incremental);

    // Updates (some to 'void', which leave the model), deletes, inserts, a key
    // changed twice in one commit, a key deleted and inserted again.
    let rounds: [Vec<EventRow>; 4] = [
        vec![
            (5, 5, 999, "paid", "u"),
            (6, 6, 6, "void", "u"),
            (7, 7, 49, "open", "d"),
            (8, 8, 56, "paid", "u"),
            (8, 8, 57, "open", "u"),
            (2_000, 17, 100, "open", "c"),
            (9, 9, 63, "open", "d"),
        ],
        vec![
            (9, 9, 64, "open", "c"),
            (6, 6, 6, "open", "u"),
            (10, 10, 1, "paid", "u"),
            (2_000, 17, 0, "open", "d"),
        ],
        // Landed, compacted (the base now holds a change the last build did not
        // read), then more: the base must be read.
        vec![(11, 11, 5, "paid", "u"), (12, 12, 85, "open", "u")],
        vec![(11, 11, 5, "void", "u"), (2_001, 3, 1, "open", "c")],
    ];
    for (round, rows) in rounds.iter().enumerate() {
        events.land(rows).await;
        if round == 2 {
            events.writer.compact_current().await.unwrap();
            events.land(&[(13, 13, 2, "paid", "u")]).await;
        }
        let (clean, totals) = build().await;
        assert!(
            clean.incremental && totals.incremental,
            "{clean:?} {totals:?}"
        );
        let expect_tail = round != 2;
        assert_eq!(
            clean.from_tail.as_deref(),
            expect_tail.then_some("bench.events"),
            "round {round}: {clean:?}"
        );
        assert_eq!(totals.from_tail, None, "round {round}: {totals:?}");
        assert!(
            clean.inserted + clean.updated + clean.deleted > 0,
            "{clean:?}"
        );
    }
}
