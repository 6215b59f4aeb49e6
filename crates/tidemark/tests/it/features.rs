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

/// Standard base64 with padding (HTTP Basic).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One statement through psql, unaligned and tuples only.
fn psql(port: u16, user: &str, password: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} dbname=tidemark connect_timeout=5"
        ))
        .args(["-X", "-At", "-F", "|", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql (Debian postgresql-client)")
}

/// The training set at `now` for every customer: customer id → the four features as
/// text ("" for NULL), read from the command's Parquet output.
async fn training_now(dir: &Path) -> std::collections::BTreeMap<i64, Vec<String>> {
    let out = dir.join("now.parquet");
    ok(tidemark(
        dir,
        &[
            "features",
            "training-set",
            "--view",
            "customer",
            "--view",
            "last_invoice",
            "--entities-sql",
            "SELECT id AS customer_id, now() AS event_timestamp FROM invoicing.customers",
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    let mut m = std::collections::BTreeMap::new();
    for b in read_parquet(&out).await {
        for i in 0..b.num_rows() {
            let id = int_at(column(&b, "customer_id"), i).unwrap();
            let f = [
                "country",
                "name_length",
                "last_invoice_status",
                "last_invoice_total",
            ]
            .iter()
            .map(|c| string_at(column(&b, c), i).unwrap_or_default())
            .collect();
            m.insert(id, f);
        }
    }
    m
}

/// A JSON feature value as the training set's text form.
fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => {
                // As Arrow writes a Float64 as text.
                let f = n.as_f64().unwrap();
                string_at(&deltalake::arrow::array::Float64Array::from(vec![f]), 0).unwrap()
            }
        },
        other => other.to_string(),
    }
}

/// Every customer's online features over HTTP (batch lookups of up to 1000 keys).
async fn online_http(
    base: &str,
    auth: &str,
    ids: &[i64],
) -> std::collections::BTreeMap<i64, Vec<String>> {
    let client = reqwest::Client::new();
    let mut out = std::collections::BTreeMap::new();
    for (view, names) in [
        ("customer", ["country", "name_length"]),
        (
            "last_invoice",
            ["last_invoice_status", "last_invoice_total"],
        ),
    ] {
        for chunk in ids.chunks(1000) {
            let r = client
                .post(format!("{base}/api/v1/features/{view}"))
                .header("Authorization", auth)
                .json(&serde_json::json!({ "keys": chunk }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{view}: {}", r.text().await.unwrap());
            let body: serde_json::Value = r.json().await.unwrap();
            for (id, res) in chunk.iter().zip(body["results"].as_array().unwrap()) {
                let e: &mut Vec<String> = out.entry(*id).or_default();
                e.extend(names.iter().map(|n| json_text(&res["features"][n])));
            }
        }
    }
    out
}

/// The online half on the demo data, end to end: `tidemark features materialize`,
/// then `tidemark run --serve` serving the same features as the training set gives
/// for now, over HTTP and over the PostgreSQL endpoint, with grants and masks; a
/// commit landed while it runs is served within seconds; a SIGKILL in the middle of
/// materialize leaves a snapshot the next start loads or ignores, never a wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_features_over_http_and_postgres_equal_the_training_set() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().join("wh").to_str().unwrap(), Default::default()).unwrap();
    let mut lander = Lander::open(&wh, Naming::SnakeCase).await.unwrap();
    let mut workload = Workload::new(WorkloadConfig {
        days: 11,
        ..Default::default()
    });
    let mut days = Vec::new();
    while let Some(day) = workload.next_day() {
        days.push(day);
    }
    let last_day = days.pop().unwrap();
    for day in &days {
        lander.land(day).await.unwrap();
    }
    let (pg, api) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("tidemark.toml"),
        format!(
            "{CONFIG}
[features.customer_in]
source = \"invoicing.customers\"
entity = [\"customer_id\", \"country\"]
join_on = [\"id\", \"country\"]
features = [{{ name = \"cname_length\", sql = \"length(name)\" }}]

[server]
listen = \"127.0.0.1:{pg}\"
users_file = \"{users}\"
refresh_interval_ms = 200

[server.roles.analyst]
grants = [\"invoicing.*\"]

[server.roles.finance]
grants = [\"invoicing.*\"]
masks = {{ \"invoicing.customers.name\" = \"'xxxxxxxx'\" }}

[server.roles.outsider]
grants = [\"invoicing.payments\"]

[server.roles.scorer]
grants = [\"features.customer\"]

[daemon]
api_listen = \"127.0.0.1:{api}\"
tokens_file = \"{tokens}\"

[jobs.noop]
kind = \"sql\"
sql = \"SELECT 1 AS one\"
target = \"reports.noop\"
",
            users = dir.path().join("users.toml").display(),
            tokens = dir.path().join("tokens.toml").display(),
        ),
    )
    .unwrap();
    let add_user = |name: &str, role: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .arg("--config")
            .arg(dir.path().join("tidemark.toml"))
            .args(["user", "add", name, "--role", role])
            .env("TIDEMARK_USER_PASSWORD", format!("pw-{name}"))
            .output()
            .unwrap();
        ok(o);
    };
    add_user("ana", "analyst");
    add_user("fin", "finance");
    add_user("out", "outsider");
    add_user("sco", "scorer");
    let token = |name: &str, extra: &[&str]| {
        let mut args = vec!["token", "add", name, "--role", "viewer"];
        args.extend(extra);
        let o = tidemark(dir.path(), &args);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let reader = token("reader", &["--sql-role", "analyst"]);
    let no_data = token("nodata", &[]);

    // A SIGKILL in the middle of materialize, at several moments: the next one
    // starts from a whole snapshot or from the lake, and all end the same.
    let snapshot = dir.path().join("wh/.tidemark/features/online/customer.bin");
    for delay_ms in [150u64, 400, 900, 1500] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .arg("--warehouse")
            .arg(dir.path().join("wh"))
            .arg("--config")
            .arg(dir.path().join("tidemark.toml"))
            .args(["features", "materialize", "--full"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // The snapshot in place, if any, is whole: written aside and renamed.
        if let Ok(bytes) = std::fs::read(&snapshot) {
            assert!(
                bytes.starts_with(b"TMFEAT01") && bytes.ends_with(b"TMFEAEND"),
                "a torn snapshot in place after a SIGKILL at {delay_ms} ms"
            );
        }
    }
    let first = ok(tidemark(dir.path(), &["features", "materialize"]));
    let again = ok(tidemark(dir.path(), &["features", "materialize"]));
    let entities = |o: &str| -> Vec<String> {
        o.lines()
            .filter(|l| l.contains(" entities at log version "))
            .map(|l| l.split(", snapshot").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(entities(&first).len(), 3, "{first}");
    assert_eq!(
        entities(&first),
        entities(&again),
        "materialize is idempotent"
    );

    let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
    let daemon = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--warehouse")
        .arg(dir.path().join("wh"))
        .arg("--config")
        .arg(dir.path().join("tidemark.toml"))
        .args(["run", "--serve"])
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env_remove("TIDEMARK_ENV")
        .env_remove("TIDEMARK_API_LISTEN")
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let daemon = Kill(daemon);
    let base = format!("http://127.0.0.1:{api}");
    let bearer = format!("Bearer {reader}");
    let client = reqwest::Client::new();
    let start = std::time::Instant::now();
    loop {
        let r = client
            .get(format!("{base}/api/v1/features/customer/1"))
            .header("Authorization", &bearer)
            .send()
            .await;
        if let Ok(r) = r {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(90),
            "the daemon did not serve features: {}",
            std::fs::read_to_string(dir.path().join("run.log")).unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The same features online as the training set gives for now.
    let want = training_now(dir.path()).await;
    let ids: Vec<i64> = want.keys().copied().collect();
    assert!(ids.len() > 50, "{} customers", ids.len());
    let got = online_http(&base, &bearer, &ids).await;
    assert_eq!(got, want, "HTTP vs the training set at now");
    assert!(
        want.values().filter(|f| !f[2].is_empty()).count() > 0,
        "some customers have an invoice within the TTL"
    );

    // One key by GET, and the PostgreSQL endpoint, for a few customers.
    let pw = |u: &str| format!("pw-{u}");
    for id in ids.iter().step_by(ids.len() / 5) {
        let r: serde_json::Value = client
            .get(format!("{base}/api/v1/features/customer/{id}"))
            .header("Authorization", &bearer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["found"], true, "{r}");
        assert_eq!(json_text(&r["features"]["country"]), want[id][0]);
        let o = psql(
            pg,
            "ana",
            &pw("ana"),
            &format!("SELECT country, name_length FROM features.customer WHERE customer_id = {id}"),
        );
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("{}|{}", want[id][0], want[id][1])
        );
    }
    // A batch takes at most 1000 keys, and says so.
    let r = client
        .post(format!("{base}/api/v1/features/customer"))
        .header("Authorization", &bearer)
        .json(&serde_json::json!({ "keys": (0..1001).collect::<Vec<i64>>() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("1001 keys; a batch takes at most 1000"));
    // A composite key: one path segment per key column, each percent-encoded.
    let enc = |v: &str| -> String {
        v.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    for id in ids.iter().take(5) {
        for (country, found) in [(want[id][0].as_str(), true), ("Nowhere/Land", false)] {
            let r: serde_json::Value = client
                .get(format!(
                    "{base}/api/v1/features/customer_in/{id}/{}",
                    enc(country)
                ))
                .header("Authorization", &bearer)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(r["found"], found, "{r}");
            assert_eq!(r["key"]["country"], country, "{r}");
            if found {
                assert_eq!(
                    json_text(&r["features"]["cname_length"]),
                    want[id][1],
                    "{r}"
                );
            }
        }
    }
    let o = psql(
        pg,
        "ana",
        &pw("ana"),
        "SELECT count(*) FROM features.customer",
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        ids.len().to_string(),
        "{}",
        text(&o)
    );

    // The training set as a table function over the wire: the same values as the
    // command's, the entity query planned under the role's grants.
    let o = psql(
        pg,
        "ana",
        &pw("ana"),
        "SELECT count(*), count(country) FROM training_set('customer,last_invoice', \
         'SELECT id AS customer_id, now() AS event_timestamp FROM invoicing.customers')",
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!(
            "{}|{}",
            ids.len(),
            want.values().filter(|f| !f[0].is_empty()).count()
        ),
        "{}",
        text(&o)
    );
    for id in ids.iter().step_by(ids.len() / 4) {
        let o = psql(
            pg,
            "ana",
            &pw("ana"),
            &format!(
                "SELECT country, name_length, last_invoice_status FROM training_set('customer, last_invoice', \
                 'SELECT id AS customer_id, now() AS event_timestamp FROM invoicing.customers WHERE id = {id}', 'known')"
            ),
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("{}|{}|{}", want[id][0], want[id][1], want[id][2]),
            "{}",
            text(&o)
        );
    }
    for (user, sql, refusal) in [
        (
            "out",
            "SELECT * FROM training_set('customer', 'SELECT 1 AS customer_id, now() AS event_timestamp')",
            "permission denied for feature view customer",
        ),
        (
            "fin",
            "SELECT * FROM training_set('customer', 'SELECT 1 AS customer_id, now() AS event_timestamp')",
            "through masks, which training sets do not apply",
        ),
        (
            "ana",
            "SELECT * FROM training_set('customer', 'SELECT 1 AS customer_id, now() AS event_timestamp FROM tidemark.audit')",
            "permission denied for table tidemark.audit",
        ),
    ] {
        let o = psql(pg, user, &pw(user), sql);
        assert!(!o.status.success() && text(&o).contains(refusal), "{user}: {}", text(&o));
    }

    // Masks: finance sees the masked name's length, the country as it is.
    let basic = |u: &str| format!("Basic {}", base64(format!("{u}:{}", pw(u)).as_bytes()));
    let masked = online_http(&base, &basic("fin"), &ids).await;
    for (id, f) in &masked {
        assert_eq!(f[0], want[id][0], "country of {id} is not masked");
        assert_eq!(f[1], "8", "name_length of {id} is over the mask");
    }
    let o = psql(
        pg,
        "fin",
        &pw("fin"),
        &format!(
            "SELECT name_length FROM features.customer WHERE customer_id = {}",
            ids[0]
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "8",
        "{}",
        text(&o)
    );

    // Grants: a role without the source's grant is refused, on both surfaces; so is
    // a token that reads no data.
    let r = client
        .get(format!("{base}/api/v1/features/customer/1"))
        .header("Authorization", basic("out"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("role outsider has no grant on it nor on its source invoicing.customers"),
        "{body}"
    );
    let o = psql(
        pg,
        "out",
        &pw("out"),
        "SELECT * FROM features.customer WHERE customer_id = 1",
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("permission denied for feature view customer"),
        "{}",
        text(&o)
    );
    // A grant on the view itself reads its features, and nothing more: not the
    // source table, not the other views over it.
    let r = client
        .get(format!("{base}/api/v1/features/customer/{}", ids[0]))
        .header("Authorization", basic("sco"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["found"], true, "{body}");
    let o = psql(
        pg,
        "sco",
        &pw("sco"),
        &format!(
            "SELECT count(*) FROM features.customer WHERE customer_id = {}",
            ids[0]
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "1",
        "{}",
        text(&o)
    );
    for sql in [
        "SELECT count(*) FROM invoicing.customers",
        "SELECT * FROM features.customer_in LIMIT 1",
    ] {
        let o = psql(pg, "sco", &pw("sco"), sql);
        assert!(!o.status.success(), "{sql}: {}", text(&o));
    }
    let r = client
        .get(format!("{base}/api/v1/features/customer/1"))
        .header("Authorization", format!("Bearer {no_data}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("reads no data"));
    let r = client
        .get(format!("{base}/api/v1/features/nope/1"))
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client
        .get(format!("{base}/api/v1/features/customer/abc"))
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("key customer_id = \\\"abc\\\" is not an integer"));

    // A day landed while the daemon runs (several commits) is served within a
    // second: poll the online answers every 20 ms, keeping when each one was seen,
    // until they stop changing; then the last must equal the training set at now,
    // and the first time it was seen is the freshness (printed; bounded at 5 s here,
    // which a loaded CI machine needs; docs/features.md has the figures).
    lander.land(&last_day).await.unwrap();
    let landed = std::time::Instant::now();
    let mut seen: Vec<(
        std::time::Duration,
        std::collections::BTreeMap<i64, Vec<String>>,
    )> = Vec::new();
    loop {
        let got = online_http(&base, &bearer, &ids).await;
        let t = landed.elapsed();
        let settled = seen.last().is_some_and(|(_, last)| *last == got)
            && seen
                .iter()
                .rev()
                .take_while(|(_, s)| *s == got)
                .last()
                .is_some_and(|(first, _)| t - *first > std::time::Duration::from_millis(1500));
        if seen.last().is_none_or(|(_, last)| *last != got) {
            seen.push((t, got));
        }
        if settled || t > std::time::Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let want = training_now(dir.path()).await;
    let want: std::collections::BTreeMap<i64, Vec<String>> = want
        .into_iter()
        .filter(|(id, _)| ids.contains(id))
        .collect();
    let last = seen.last().unwrap();
    assert_eq!(
        last.1, want,
        "the online store after the new day vs the training set at now"
    );
    let served = seen.iter().find(|(_, s)| *s == want).unwrap().0;
    eprintln!(
        "online store: the new day served {} ms after its landing ended ({} distinct states seen)",
        served.as_millis(),
        seen.len()
    );
    assert!(served < std::time::Duration::from_secs(5), "{served:?}");
    drop(daemon);
}
