//! `tidemark features training-set` as users run it, on the demo's invoicing data
//! (landed by the test itself; no MariaDB): feature views defined in the config, a
//! training set built from entity rows given as a SQL query and as a CSV file, under
//! both clocks, checked against `FOR SYSTEM_TIME AS OF` (time travel's own code path).

use std::path::Path;
use std::process::Command;

use deltalake::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::{ParquetReadOptions, SessionContext};
use tidemark_core::names::Naming;
use tidemark_demo::{Lander, Workload, WorkloadConfig};
use tidemark_lake::Warehouse;
use tidemark_query::Engine;

use crate::support::{ok, text};

const CONFIG: &str = r#"
[features.customer]
source = "invoicing.customers"
entity = "customer_id"
join_on = "id"
description = "who the customer is"
owner = "ml-platform"
tags = ["demo"]
features = ["country", { name = "name_length", sql = "length(name)" }]

[features.last_invoice]
source = "invoicing.invoices"
entity = "customer_id"
event_time = "issued_at"
ttl = "30d"
features = [
  { name = "last_invoice_status", sql = "status" },
  { name = "last_invoice_total", sql = "CAST(total AS DOUBLE)" },
]
"#;

fn tidemark(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--warehouse")
        .arg(dir.join("wh"))
        .arg("--config")
        .arg(dir.join("tidemark.toml"))
        .args(args)
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env_remove("TIDEMARK_ENV")
        .output()
        .expect("run tidemark")
}

async fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    SessionContext::new()
        .read_parquet(path.to_str().unwrap(), ParquetReadOptions::default())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> &'a dyn Array {
    b.column(b.schema().index_of(name).unwrap()).as_ref()
}

fn string_at(a: &dyn Array, i: usize) -> Option<String> {
    let a = cast(
        &deltalake::arrow::array::make_array(a.to_data()),
        &DataType::Utf8,
    )
    .unwrap();
    let a = a.as_any().downcast_ref::<StringArray>().unwrap();
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

fn int_at(a: &dyn Array, i: usize) -> Option<i64> {
    let a = cast(
        &deltalake::arrow::array::make_array(a.to_data()),
        &DataType::Int64,
    )
    .unwrap();
    let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
    (!a.is_null(i)).then(|| a.value(i))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_set_from_the_command_line_on_the_demo_data() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().join("wh").to_str().unwrap(), Default::default()).unwrap();
    let mut lander = Lander::open(&wh, Naming::SnakeCase).await.unwrap();
    let mut workload = Workload::new(WorkloadConfig {
        days: 20,
        ..Default::default()
    });
    while let Some(day) = workload.next_day() {
        lander.land(&day).await.unwrap();
    }
    std::fs::write(dir.path().join("tidemark.toml"), CONFIG).unwrap();

    let out = ok(tidemark(dir.path(), &["features", "list"]));
    assert!(
        out.contains("customer") && out.contains("invoicing.customers (history)"),
        "{out}"
    );

    // Entity rows from SQL: each payment's customer, as of the payment.
    let entities = "SELECT i.customer_id, p.id AS payment_id, p.paid_at AS event_timestamp \
                    FROM invoicing.payments p JOIN invoicing.invoices i ON i.id = p.invoice_id";
    let set = dir.path().join("set.parquet");
    let out = ok(tidemark(
        dir.path(),
        &[
            "features",
            "training-set",
            "--view",
            "customer",
            "--view",
            "last_invoice",
            "--entities-sql",
            entities,
            "--out",
            set.to_str().unwrap(),
        ],
    ));
    assert!(
        out.contains("wrote ") && out.contains("clock: event"),
        "{out}"
    );

    let engine = Engine::open(&wh).await.unwrap();
    let payments = engine
        .query("SELECT count(*) AS n FROM invoicing.payments")
        .await
        .unwrap();
    let n = int_at(column(&payments[0], "n"), 0).unwrap();
    assert!(n > 20, "the demo made payments: {n}");
    let batches = read_parquet(&set).await;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows as i64, n, "one training row per entity row");
    let names: Vec<String> = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "customer_id",
            "payment_id",
            "event_timestamp",
            "country",
            "name_length",
            "last_invoice_status",
            "last_invoice_total"
        ]
    );
    // Every customer existed when it paid, and had an invoice issued within 30 days
    // before (the one being paid, in the demo's workload) unless it was issued later.
    let mut checked = 0;
    let mut with_invoice = 0;
    for b in &batches {
        for i in 0..b.num_rows() {
            let customer = int_at(column(b, "customer_id"), i).unwrap();
            assert!(
                string_at(column(b, "country"), i).is_some(),
                "customer {customer} has a country when it pays"
            );
            if string_at(column(b, "last_invoice_status"), i).is_some() {
                with_invoice += 1;
            }
            // Spot checks against time travel, an independent code path.
            if checked < 12 && i % 7 == 0 {
                let t = int_at(
                    &cast(
                        &deltalake::arrow::array::make_array(
                            column(b, "event_timestamp").to_data(),
                        ),
                        &DataType::Int64,
                    )
                    .unwrap(),
                    i,
                )
                .unwrap();
                let q = format!(
                    "SELECT country, CAST(length(name) AS BIGINT) AS l FROM invoicing.customers \
                     FOR SYSTEM_TIME AS OF to_timestamp_micros({t}) WHERE id = {customer}"
                );
                let want = engine.query(&q).await.unwrap();
                assert_eq!(
                    string_at(column(b, "country"), i),
                    string_at(column(&want[0], "country"), 0),
                    "{q}"
                );
                assert_eq!(
                    int_at(column(b, "name_length"), i),
                    int_at(column(&want[0], "l"), 0),
                    "{q}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
    assert!(
        with_invoice > 0,
        "some payments follow an invoice issued within 30 days"
    );

    // The known clock: the test landed everything just now, so at the payments'
    // instants (days ago) nothing was known yet.
    let known = dir.path().join("known.parquet");
    ok(tidemark(
        dir.path(),
        &[
            "features",
            "training-set",
            "--view",
            "customer",
            "--entities-sql",
            entities,
            "--clock",
            "known",
            "--out",
            known.to_str().unwrap(),
        ],
    ));
    for b in read_parquet(&known).await {
        assert_eq!(
            column(&b, "country").null_count(),
            b.num_rows(),
            "known before landing"
        );
    }

    // Entity rows from a CSV file, written as CSV; the rows' instant named explicitly.
    let csv_in = dir.path().join("entities.csv");
    std::fs::write(
        &csv_in,
        "customer_id,asof\n1,2099-01-01T00:00:00Z\n2,2099-01-01T00:00:00Z\n999999,2099-01-01T00:00:00Z\n1,1970-01-02T00:00:00Z\n",
    )
    .unwrap();
    let csv_out = dir.path().join("set.csv");
    ok(tidemark(
        dir.path(),
        &[
            "features",
            "training-set",
            "--view",
            "customer",
            "--entities",
            csv_in.to_str().unwrap(),
            "--timestamp-column",
            "asof",
            "--out",
            csv_out.to_str().unwrap(),
        ],
    ));
    let text_out = std::fs::read_to_string(&csv_out).unwrap();
    let mut lines: Vec<&str> = text_out.lines().collect();
    assert_eq!(lines.remove(0), "customer_id,asof,country,name_length");
    lines.sort();
    let now = engine
        .query("SELECT id, country, CAST(length(name) AS BIGINT) AS l FROM invoicing.customers WHERE id IN (1, 2) ORDER BY id")
        .await
        .unwrap();
    assert_eq!(lines.len(), 4, "{text_out}");
    for (i, id) in [1, 2].iter().enumerate() {
        let want = format!(
            // The instant is written back as read: CSV inference made it a naive
            // (UTC) timestamp.
            "{id},2099-01-01T00:00:00,{},{}",
            string_at(column(&now[0], "country"), i).unwrap(),
            int_at(column(&now[0], "l"), i).unwrap()
        );
        assert!(lines.contains(&want.as_str()), "{want} in {lines:?}");
    }
    assert!(
        lines.contains(&"1,1970-01-02T00:00:00,,"),
        "before it existed: {lines:?}"
    );
    assert!(
        lines.contains(&"999999,2099-01-01T00:00:00,,"),
        "no such customer: {lines:?}"
    );
    assert!(!dir.path().join(".set.csv.partial").exists());

    // Mistakes are named.
    let o = tidemark(
        dir.path(),
        &[
            "features",
            "training-set",
            "--view",
            "nope",
            "--entities-sql",
            entities,
            "--out",
            "x.parquet",
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("feature view \"nope\" is not defined; defined: customer, last_invoice"),
        "{}",
        text(&o)
    );
}
