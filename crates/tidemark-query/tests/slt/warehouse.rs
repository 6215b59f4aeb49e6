//! The small warehouse the `.slt` files query, written through the real lake writer
//! with known source instants. Every expected result in the `.slt` files is derived
//! from the tables below; the comments on each table list its versions.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tidemark_core::change::{ChangeBatchBuilder, Op, Value};
use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::SourceState;
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_lake::{TableKind, TableWriter, Warehouse};

const DAY_US: i64 = 86_400 * 1_000_000;

/// Microseconds since the epoch of a UTC civil time (days from civil date, after
/// Howard Hinnant's algorithm), so the instants below read as the `.slt` files spell
/// them.
pub fn utc(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * DAY_US + ((hh * 60 + mm) * 60 + ss) * 1_000_000
}

fn col(name: &str, data_type: &str, column_type: &str, ps: Option<(u64, u64)>) -> ColumnSchema {
    ColumnSchema {
        source_name: name.into(),
        name: String::new(),
        column_type: column_type.into(),
        data_type: data_type.into(),
        precision: ps.map(|p| p.0),
        scale: ps.map(|p| p.1),
        stored: Vec::new(),
    }
}

fn table(db: &str, name: &str, columns: Vec<ColumnSchema>, key: &[&str]) -> Arc<TableSchema> {
    let key: Vec<String> = key.iter().map(|k| k.to_string()).collect();
    Arc::new(
        TableSchema::new(
            TableName::new(db, name, Naming::SnakeCase),
            columns,
            &key,
            Naming::SnakeCase,
        )
        .expect("valid test schema"),
    )
}

/// One change: operation, row values, source instant (µs), `_seq`.
type Change = (Op, Vec<Value>, i64, i64);

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn dec(s: &str) -> Value {
    Value::Decimal(s.into())
}

/// Land change batches, one Delta commit per batch in each of the two tables.
///
/// A batch is `(source order, history order)`: the history log is written in the
/// second order so that tests show `_seq`, not file order, orders changes within one
/// instant; the current table is merged in source order, as a real source delivers.
async fn land(wh: &Warehouse, schema: Arc<TableSchema>, batches: &[(Vec<Change>, Vec<usize>)]) {
    let mut w = TableWriter::open(wh, schema.clone()).await.unwrap();
    for (n, (changes, history_order)) in batches.iter().enumerate() {
        let build = |order: &mut dyn Iterator<Item = &Change>| {
            let mut b = ChangeBatchBuilder::new(schema.clone(), changes.len());
            for (op, values, ts, seq) in order {
                b.push_values(values, *op, *ts, &format!("pos:{seq}"), *seq)
                    .unwrap();
            }
            b.finish().unwrap()
        };
        let source = build(&mut changes.iter());
        let history = if history_order.is_empty() {
            source.clone()
        } else {
            assert_eq!(history_order.len(), changes.len(), "a permutation");
            build(&mut history_order.iter().map(|&i| &changes[i]))
        };
        // Landed one minute after the last change of the batch.
        let ingest = changes.iter().map(|c| c.2).max().unwrap() + 60_000_000;
        let state = SourceState {
            source: "slt".into(),
            source_table: schema.name.source(),
            stream_offset: Some(n as u64 + 1),
            ..Default::default()
        };
        w.apply(TableKind::History, &history, ingest, state.clone())
            .await
            .unwrap();
        w.apply(TableKind::Current, &source, ingest, state)
            .await
            .unwrap();
    }
}

/// `shop.Items (Id INT PRIMARY KEY, Name VARCHAR(20), Price DECIMAL(10,2))`, SQL
/// `shop.items (id, name, price)`. Instants T1..T6 and changes:
///
/// ```text
/// T1 2026-09-01 00:00:00  r 1 apple 1.00 | r 2 bread 2.50 | r 3 cheese 7.25   (snapshot, _seq 0)
/// T2 2026-09-15 12:00:00  c 4 dates 4.00 (10) | u 1 apple 1.20 (11)
/// T3 2026-10-01 00:00:00  u 2 bread 2.60 (20) | u 2 brown bread 2.60 (21)
///                         | u 2 brown bread 2.75 (22) | d 3, key only (23)
///                         history log written in the order 22, 23, 20, 21
/// T4 2026-10-10 08:30:00  d 4 dates 4.00, full image (30) | c 5 eggs 3.10 (31)
/// T5 2026-10-20 00:00:00  c 3 cheddar 8.00 (40, re-insert) | u 5 eggs 3.30 (41)
/// T6 2026-11-05 00:00:00  u 1 apple 1.50 (50) | d 5 eggs 3.30 (51)
///                         | d 2, key only (52) | c 2 rye 3.00 (53, re-insert, same instant)
/// ```
///
/// One batch per instant, so the current table's Delta versions are 0 (created,
/// empty) and 1..=6 after T1..T6.
async fn items(wh: &Warehouse) {
    let schema = table(
        "shop",
        "Items",
        vec![
            col("Id", "int", "int(11)", None),
            col("Name", "varchar", "varchar(20)", None),
            col("Price", "decimal", "decimal(10,2)", Some((10, 2))),
        ],
        &["Id"],
    );
    let t1 = utc(2026, 9, 1, 0, 0, 0);
    let t2 = utc(2026, 9, 15, 12, 0, 0);
    let t3 = utc(2026, 10, 1, 0, 0, 0);
    let t4 = utc(2026, 10, 10, 8, 30, 0);
    let t5 = utc(2026, 10, 20, 0, 0, 0);
    let t6 = utc(2026, 11, 5, 0, 0, 0);
    let row = |id: i64, name: &str, price: &str| vec![Value::Int(id), text(name), dec(price)];
    let key_only = |id: i64| vec![Value::Int(id), Value::Null, Value::Null];
    let batches = vec![
        (
            vec![
                (Op::Read, row(1, "apple", "1.00"), t1, 0),
                (Op::Read, row(2, "bread", "2.50"), t1, 0),
                (Op::Read, row(3, "cheese", "7.25"), t1, 0),
            ],
            vec![],
        ),
        (
            vec![
                (Op::Create, row(4, "dates", "4.00"), t2, 10),
                (Op::Update, row(1, "apple", "1.20"), t2, 11),
            ],
            vec![],
        ),
        (
            vec![
                (Op::Update, row(2, "bread", "2.60"), t3, 20),
                (Op::Update, row(2, "brown bread", "2.60"), t3, 21),
                (Op::Update, row(2, "brown bread", "2.75"), t3, 22),
                (Op::Delete, key_only(3), t3, 23),
            ],
            vec![2, 3, 0, 1],
        ),
        (
            vec![
                (Op::Delete, row(4, "dates", "4.00"), t4, 30),
                (Op::Create, row(5, "eggs", "3.10"), t4, 31),
            ],
            vec![],
        ),
        (
            vec![
                (Op::Create, row(3, "cheddar", "8.00"), t5, 40),
                (Op::Update, row(5, "eggs", "3.30"), t5, 41),
            ],
            vec![],
        ),
        (
            vec![
                (Op::Update, row(1, "apple", "1.50"), t6, 50),
                (Op::Delete, row(5, "eggs", "3.30"), t6, 51),
                (Op::Delete, key_only(2), t6, 52),
                (Op::Create, row(2, "rye", "3.00"), t6, 53),
            ],
            vec![],
        ),
    ];
    land(wh, schema, &batches).await;
}

/// `shop.Stock (Store VARCHAR(10), ItemId INT, Qty INT, PRIMARY KEY (Store, ItemId))`,
/// SQL `shop.stock (store, item_id, qty)`: a composite key whose parts repeat across
/// keys, so a window over only part of the key would pair the wrong versions.
///
/// ```text
/// S1 2026-09-01 00:00:00  c north 1 qty 10 (1) | c south 1 qty 5 (2)
/// S2 2026-10-01 00:00:00  u north 1 qty 7 (3)  | c north 2 qty 3 (4)
/// S3 2026-11-01 00:00:00  d south 1 qty 5 (5)
/// ```
async fn stock(wh: &Warehouse) {
    let schema = table(
        "shop",
        "Stock",
        vec![
            col("Store", "varchar", "varchar(10)", None),
            col("ItemId", "int", "int(11)", None),
            col("Qty", "int", "int(11)", None),
        ],
        &["Store", "ItemId"],
    );
    let s1 = utc(2026, 9, 1, 0, 0, 0);
    let s2 = utc(2026, 10, 1, 0, 0, 0);
    let s3 = utc(2026, 11, 1, 0, 0, 0);
    let row =
        |store: &str, item: i64, qty: i64| vec![text(store), Value::Int(item), Value::Int(qty)];
    let batches = vec![
        (
            vec![
                (Op::Create, row("north", 1, 10), s1, 1),
                (Op::Create, row("south", 1, 5), s1, 2),
            ],
            vec![],
        ),
        (
            vec![
                (Op::Update, row("north", 1, 7), s2, 3),
                (Op::Create, row("north", 2, 3), s2, 4),
            ],
            vec![],
        ),
        (vec![(Op::Delete, row("south", 1, 5), s3, 5)], vec![]),
    ];
    land(wh, schema, &batches).await;
}

/// `crm.Accounts (Id INT PRIMARY KEY, Plan VARCHAR(10))`, SQL `crm.accounts (id, plan)`,
/// with instants relative to when the test runs, for "now vs one month ago" written
/// as an analyst would, with `now() - INTERVAL '1 month'`:
///
/// ```text
/// now - 90 days  r 1 free | r 2 free | r 3 free
/// now - 40 days  u 2 pro
/// now - 10 days  u 3 pro | d 1 free | c 4 pro
/// ```
///
/// A month ago (28 to 31 days) lies between the second and third instants.
async fn accounts(wh: &Warehouse) {
    let schema = table(
        "crm",
        "Accounts",
        vec![
            col("Id", "int", "int(11)", None),
            col("Plan", "varchar", "varchar(10)", None),
        ],
        &["Id"],
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let (a1, a2, a3) = (now - 90 * DAY_US, now - 40 * DAY_US, now - 10 * DAY_US);
    let row = |id: i64, plan: &str| vec![Value::Int(id), text(plan)];
    let batches = vec![
        (
            vec![
                (Op::Read, row(1, "free"), a1, 0),
                (Op::Read, row(2, "free"), a1, 0),
                (Op::Read, row(3, "free"), a1, 0),
            ],
            vec![],
        ),
        (vec![(Op::Update, row(2, "pro"), a2, 1)], vec![]),
        (
            vec![
                (Op::Update, row(3, "pro"), a3, 2),
                (Op::Delete, row(1, "free"), a3, 3),
                (Op::Create, row(4, "pro"), a3, 4),
            ],
            vec![],
        ),
    ];
    land(wh, schema, &batches).await;
}

/// Write all test tables into the warehouse at `dir`.
pub async fn build(dir: &std::path::Path) -> Warehouse {
    let wh = Warehouse::new(dir.to_str().unwrap(), Default::default()).unwrap();
    items(&wh).await;
    stock(&wh).await;
    accounts(&wh).await;
    wh
}

/// The `.slt` files in `root` that both runners (in-process and over the wire) run,
/// sorted; `SLT=<part of a file name>` picks some.
pub fn slt_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let filter = std::env::var("SLT").unwrap_or_default();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(&filter))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", root.display());
    files
}
