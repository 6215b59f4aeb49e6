//! Entity rows from CSV and SQL, CSV output, `read = "table"` views, and the
//! messages of mistakes, on a small landed table.

use std::collections::BTreeMap;
use std::sync::Arc;

use indicatif::ProgressBar;
use tidemark_core::change::{ChangeBatchBuilder, Op, Value};
use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::SourceState;
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_features::{training_set, write, Clock, Entities, FeatureViews, Format, Request};
use tidemark_lake::{TableWriter, Warehouse};
use tidemark_query::Engine;

fn column(name: &str, dt: &str, ct: &str) -> ColumnSchema {
    ColumnSchema {
        source_name: name.into(),
        name: String::new(),
        column_type: ct.into(),
        data_type: dt.into(),
        precision: None,
        scale: None,
        stored: Vec::new(),
    }
}

fn views(text: &str) -> FeatureViews {
    #[derive(serde::Deserialize)]
    struct File {
        features: BTreeMap<String, toml::Table>,
    }
    let f: File = toml::from_str(text).unwrap();
    FeatureViews::parse(&f.features).unwrap()
}

const VIEWS: &str = r#"
[features.price]
source = "shop.prices"
entity = "sku"
features = ["price"]

[features.price_now]
source = "shop.prices"
read = "table"
event_time = "changed_at"
entity = "sku"
features = [{ name = "price_now", sql = "price" }]

[features.bad_column]
source = "shop.prices"
entity = "sku"
features = [{ name = "x", sql = "nope + 1" }]

[features.bad_source]
source = "shop.nothing"
entity = "sku"
features = ["price"]
"#;

/// `shop.prices`: sku 1 costs 10 from 2026-01-01, 12 from 2026-02-01; sku 2 costs
/// 5 from 2026-01-15 and is deleted on 2026-03-01.
async fn warehouse(dir: &std::path::Path) -> Warehouse {
    let wh = Warehouse::new(dir.join("wh").to_str().unwrap(), Default::default()).unwrap();
    let ts = Arc::new(
        TableSchema::new(
            TableName::new("shop", "prices", Naming::SnakeCase),
            vec![
                column("sku", "int", "int(11)"),
                column("price", "int", "int(11)"),
                column("changed_at", "datetime", "datetime(6)"),
            ],
            &["sku".to_string()],
            Naming::SnakeCase,
        )
        .unwrap(),
    );
    let mut w = TableWriter::open(&wh, ts.clone()).await.unwrap();
    w.start_merge_on_read().await.unwrap();
    let day = |m: u32, d: u32| {
        chrono::NaiveDate::from_ymd_opt(2026, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros()
    };
    let changes = [
        (1, 10, day(1, 1), Op::Create),
        (2, 5, day(1, 15), Op::Create),
        (1, 12, day(2, 1), Op::Update),
        (2, 5, day(3, 1), Op::Delete),
    ];
    let mut b = ChangeBatchBuilder::new(ts.clone(), changes.len());
    for (i, (sku, price, at, op)) in changes.into_iter().enumerate() {
        b.push_values(
            &[Value::Int(sku), Value::Int(price), Value::Timestamp(at)],
            op,
            at,
            &format!("pos:{i}"),
            i as i64,
        )
        .unwrap();
    }
    let state = SourceState {
        source: "test".into(),
        source_table: "shop.prices".into(),
        ..Default::default()
    };
    w.append_history(&b.finish().unwrap(), state).await.unwrap();
    wh
}

fn request(views: &[&str], entities: Entities, clock: Clock) -> Request {
    Request {
        views: views.iter().map(|v| v.to_string()).collect(),
        entities,
        timestamp_column: None,
        clock,
        full_feature_names: false,
        memory_limit: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_sql_entities_csv_out_and_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let wh = warehouse(dir.path()).await;
    let engine = Engine::open(&wh).await.unwrap();
    let views = views(VIEWS);

    // Entity rows from CSV, instants as text (with a zone, and naive = UTC).
    let csv = dir.path().join("entities.csv");
    std::fs::write(
        &csv,
        "sku,event_timestamp,note\n\
         1,2026-01-20T00:00:00Z,a\n\
         1,2026-02-01 00:00:00,b\n\
         2,2026-02-10T00:00:00Z,c\n\
         2,2026-03-10T00:00:00Z,d\n\
         3,2026-02-10T00:00:00Z,e\n\
         1,2025-12-31T23:59:59Z,f\n",
    )
    .unwrap();
    let set = training_set(
        &engine,
        &views,
        &request(
            &["price", "price_now"],
            Entities::File(csv.clone()),
            Clock::Event,
        ),
    )
    .await
    .unwrap();
    assert_eq!(set.rows, 6);
    assert_eq!(set.features, ["price", "price_now"]);
    let out = dir.path().join("out.csv");
    let written = write(set, &out, Format::Csv, &ProgressBar::hidden())
        .await
        .unwrap();
    assert_eq!(written.rows, 6);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.remove(0), "sku,event_timestamp,note,price,price_now");
    // price: the version valid then; price_now: today's row if dated at or before t
    // (sku 1 now costs 12 from 2026-02-01; sku 2 is gone).
    let by_note: BTreeMap<String, String> = lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].to_string(), format!("{},{}", f[3], f[4]))
        })
        .collect();
    let want: BTreeMap<String, String> = [
        ("a", "10,"),
        ("b", "12,12"),
        ("c", "5,"),
        ("d", ","),
        ("e", ","),
        ("f", ","),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(by_note, want, "{text}");
    assert!(!dir.path().join(".out.csv.partial").exists());

    // Entity rows from SQL, with time travel, written as Parquet.
    let sql = "SELECT sku, changed_at AS at FROM shop.prices FOR SYSTEM_TIME AS OF TIMESTAMP '2026-02-15 00:00:00'";
    let mut r = request(&["price"], Entities::Sql(sql.into()), Clock::Event);
    r.timestamp_column = Some("at".into());
    r.full_feature_names = true;
    let set = training_set(&engine, &views, &r).await.unwrap();
    assert_eq!(set.rows, 2);
    assert_eq!(set.features, ["price__price"]);
    let pq = dir.path().join("out.parquet");
    write(set, &pq, Format::Parquet, &ProgressBar::hidden())
        .await
        .unwrap();
    assert!(pq.is_file());

    // Mistakes, each named.
    let err = |r: Request| {
        let engine = &engine;
        let views = &views;
        async move {
            training_set(engine, views, &r)
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let file = || Entities::File(csv.clone());
    let e = err(request(&["bad_column"], file(), Clock::Event)).await;
    assert!(
        e.starts_with("features.bad_column.features[0]: \"nope + 1\""),
        "{e}"
    );
    let e = err(request(&["bad_source"], file(), Clock::Event)).await;
    assert!(
        e.contains("features.bad_source.source: no table or model shop.nothing"),
        "{e}"
    );
    let e = err(request(&["price_now"], file(), Clock::Known)).await;
    assert!(
        e.starts_with("features.price_now.read: the known clock needs"),
        "{e}"
    );
    let e = err(request(&["nope"], file(), Clock::Event)).await;
    assert!(
        e.contains("\"nope\" is not defined; defined: bad_column, bad_source, price, price_now"),
        "{e}"
    );
    let mut twice = request(&["price", "price"], file(), Clock::Event);
    twice.full_feature_names = true;
    assert!(err(twice).await.contains("view price is named twice"));
    // A clash of output names without --full-feature-names.
    let clash = views_with_clash();
    let e = training_set(&engine, &clash, &request(&["a", "b"], file(), Clock::Event))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("two output columns would be named \"price\""),
        "{e}"
    );
    let missing = dir.path().join("missing.parquet");
    let e = err(request(&["price"], Entities::File(missing), Clock::Event)).await;
    assert!(e.contains("missing.parquet: no such file"), "{e}");
    let e = err(Request {
        timestamp_column: Some("sku".into()),
        ..request(&["price"], file(), Clock::Event)
    })
    .await;
    assert!(
        e.starts_with("entity rows: column \"sku\" is Int64, not a timestamp"),
        "{e}"
    );
}

fn views_with_clash() -> FeatureViews {
    views(
        r#"
[features.a]
source = "shop.prices"
entity = "sku"
features = ["price"]
[features.b]
source = "shop.prices"
entity = "sku"
features = ["price"]
"#,
    )
}
