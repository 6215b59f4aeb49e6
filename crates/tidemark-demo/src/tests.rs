use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use tidemark_core::change::{Op, Value};
use tidemark_core::names::Naming;
use tidemark_core::types::parse_decimal;

use super::*;
use crate::util::DAY_US;

/// 2024-06-01 00:00:00 UTC.
const END: i64 = 1_717_200_000_000_000;

fn cfg(seed: u64, days: u32) -> WorkloadConfig {
    WorkloadConfig {
        scale: 1.0,
        days,
        end_us: END,
        seed,
    }
}

fn all_events(cfg: WorkloadConfig) -> Vec<Event> {
    Workload::new(cfg).flatten().collect()
}

fn dec(v: &Value) -> i64 {
    match v {
        Value::Decimal(s) => parse_decimal(s, 2).unwrap() as i64,
        other => panic!("not a decimal: {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an int: {other:?}"),
    }
}

fn text(v: &Value) -> &str {
    match v {
        Value::Text(s) => s,
        other => panic!("not text: {other:?}"),
    }
}

#[test]
fn same_seed_same_events_other_seed_other_events() {
    let a = all_events(cfg(42, 30));
    let b = all_events(cfg(42, 30));
    assert_eq!(a, b);
    let c = all_events(cfg(43, 30));
    assert_ne!(a, c);
    // The window moves instants only.
    let d = all_events(WorkloadConfig {
        end_us: END + 7 * DAY_US,
        ..cfg(42, 30)
    });
    assert_eq!(a.len(), d.len());
    assert!(a
        .iter()
        .zip(&d)
        .all(|(x, y)| x.ts_us + 7 * DAY_US == y.ts_us && x.table == y.table));
}

#[test]
fn end_is_rounded_down_to_midnight() {
    let a = all_events(cfg(42, 5));
    let b = all_events(WorkloadConfig {
        end_us: END + 5_000_000,
        ..cfg(42, 5)
    });
    assert_eq!(a, b);
}

#[test]
fn days_are_ordered_utc_days() {
    let days = 90;
    let mut w = Workload::new(cfg(42, days));
    let mut last_ts = i64::MIN;
    let mut last_txn = 0;
    let mut seen_txns = std::collections::HashSet::new();
    for d in 0..days {
        let events = w.next_day().expect("a day");
        let start = END - i64::from(days - d) * DAY_US;
        assert!(!events.is_empty(), "day {d} is empty");
        for e in &events {
            assert!(e.ts_us > last_ts, "not strictly increasing on day {d}");
            assert!(
                (start..start + DAY_US).contains(&e.ts_us),
                "outside day {d}"
            );
            last_ts = e.ts_us;
            // Transactions are consecutive and numbered in commit order.
            if e.txn != last_txn {
                assert!(e.txn > last_txn);
                assert!(seen_txns.insert(e.txn));
                last_txn = e.txn;
            }
            // updated_at is the last column and the event instant of c/u.
            if e.op != Op::Delete {
                assert_eq!(e.row.last(), Some(&Value::Timestamp(e.ts_us)));
            }
        }
    }
    assert!(last_ts < END);
    assert!(w.next_day().is_none());
    assert!(w.next_day().is_none());
}

#[test]
fn replay_gives_a_consistent_business() {
    let mut tables: Vec<HashMap<i64, Vec<Value>>> = vec![HashMap::new(); TABLES.len()];
    let events = all_events(cfg(42, 90));
    let schemas = schemas(Naming::SnakeCase);
    for e in &events {
        assert_eq!(e.row.len(), schemas[e.table].columns.len());
        let id = int(&e.row[0]);
        let t = &mut tables[e.table];
        match e.op {
            Op::Create => assert!(t.insert(id, e.row.clone()).is_none(), "duplicate {e:?}"),
            Op::Update => assert!(t.insert(id, e.row.clone()).is_some(), "missing {e:?}"),
            Op::Delete => {
                let old = t.remove(&id);
                assert_eq!(old.as_ref(), Some(&e.row), "delete image is the last row");
            }
            Op::Read => panic!("the workload does not read"),
        }
    }
    let [customers, products, invoices, lines, payments] = &tables[..] else {
        unreachable!()
    };

    let mut sums: BTreeMap<i64, i64> = BTreeMap::new();
    for l in lines.values() {
        let invoice = int(&l[1]);
        assert!(invoices.contains_key(&invoice), "orphan line {l:?}");
        assert!(products.contains_key(&int(&l[2])));
        assert_eq!(dec(&l[5]), int(&l[3]) * dec(&l[4]), "amount of {l:?}");
        *sums.entry(invoice).or_default() += dec(&l[5]);
    }
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for (id, inv) in invoices {
        assert!(customers.contains_key(&int(&inv[1])));
        assert_eq!(
            dec(&inv[6]),
            sums.get(id).copied().unwrap_or(0),
            "total of {inv:?}"
        );
        let status = text(&inv[2]);
        match status {
            "draft" => assert!(inv[4] == Value::Null && inv[5] == Value::Null),
            "open" | "paid" | "void" => {
                assert!(matches!(inv[4], Value::Timestamp(_)));
                assert!(matches!(inv[5], Value::Date(_)));
            }
            other => panic!("status {other}"),
        }
        *by_status.entry(status.to_string()).or_default() += 1;
    }
    for s in ["draft", "open", "paid", "void"] {
        assert!(
            by_status.get(s).copied().unwrap_or(0) > 0,
            "no {s} invoices"
        );
    }
    let mut paid_invoices = std::collections::HashSet::new();
    for p in payments.values() {
        let inv = invoices
            .get(&int(&p[1]))
            .expect("payment of a known invoice");
        assert_eq!(text(&inv[2]), "paid");
        assert_eq!(dec(&p[2]), dec(&inv[6]));
        assert!(["card", "transfer", "cash"].contains(&text(&p[3])));
        assert!(paid_invoices.insert(int(&p[1])), "paid twice");
    }
    assert_eq!(paid_invoices.len(), by_status["paid"]);
    for c in customers.values() {
        assert!(text(&c[1]).len() <= 100 && text(&c[2]).len() <= 200);
        assert_eq!(text(&c[3]).len(), 2);
    }
    for p in products.values() {
        assert!(text(&p[1]).len() <= 32);
        assert!(matches!(p[4], Value::Int(0 | 1)));
    }
}

#[test]
fn later_lines_use_the_new_price() {
    let events = all_events(cfg(42, 90));
    let mut price: HashMap<i64, i64> = HashMap::new();
    let mut changed = 0;
    for e in &events {
        match (e.table, e.op) {
            (PRODUCTS, Op::Create) => {
                price.insert(int(&e.row[0]), dec(&e.row[3]));
            }
            (PRODUCTS, Op::Update) => {
                let old = price.insert(int(&e.row[0]), dec(&e.row[3]));
                changed += usize::from(old != Some(dec(&e.row[3])));
            }
            (INVOICE_LINES, Op::Create) => {
                assert_eq!(dec(&e.row[4]), price[&int(&e.row[2])]);
            }
            _ => {}
        }
    }
    assert!(changed > 10, "{changed} price changes");
}

#[test]
fn counts_at_scale_one() {
    let events = all_events(cfg(42, 90));
    let mut counts = [[0usize; 3]; 5];
    for e in &events {
        let op = match e.op {
            Op::Create | Op::Read => 0,
            Op::Update => 1,
            Op::Delete => 2,
        };
        counts[e.table][op] += 1;
    }
    for (t, c) in TABLES.iter().zip(counts) {
        println!("{t:14} c {:5}  u {:5}  d {:4}", c[0], c[1], c[2]);
    }
    let txns = events.last().unwrap().txn;
    println!("{} events, {txns} transactions", events.len());
    let [customers, products, invoices, _, payments] = counts;
    assert!((350..650).contains(&customers[0]), "{customers:?}");
    assert!((50..90).contains(&products[0]), "{products:?}");
    assert!((2_200..3_200).contains(&invoices[0]), "{invoices:?}");
    assert!(
        invoices[2] > 30 && payments[0] > 1_000,
        "{invoices:?} {payments:?}"
    );

    // Scale multiplies the counts.
    let doubled = all_events(WorkloadConfig {
        scale: 2.0,
        ..cfg(42, 90)
    })
    .len();
    let ratio = doubled as f64 / events.len() as f64;
    assert!((1.8..2.2).contains(&ratio), "{ratio}");
}

#[test]
fn tiny_and_odd_scales_still_work() {
    for scale in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let events = all_events(WorkloadConfig {
            scale,
            ..cfg(1, 10)
        });
        assert_eq!(events.len(), 2, "scale {scale}: one customer, one product");
    }
    let events = all_events(WorkloadConfig {
        scale: 0.01,
        ..cfg(1, 30)
    });
    assert!(events.iter().any(|e| e.table == INVOICES));
    assert_eq!(all_events(cfg(1, 0)).len(), 0);
}

#[test]
fn change_batches_match_the_events() {
    let schemas = schemas(Naming::SnakeCase);
    let mut w = Workload::new(cfg(42, 3));
    let mut offset = 1_000;
    for _ in 0..3 {
        let events = w.next_day().unwrap();
        let batches = to_change_batches(&schemas, &events, offset).unwrap();
        let rows: usize = batches.iter().map(|b| b.data.num_rows()).sum();
        assert_eq!(rows, events.len());
        let mut expected: BTreeMap<String, (usize, i64)> = BTreeMap::new();
        for b in &batches {
            let table = b.table.name.table.clone();
            let data = &b.data;
            let pos = data
                .column_by_name("_source_pos")
                .unwrap()
                .as_string::<i32>();
            let seq = data
                .column_by_name("_seq")
                .unwrap()
                .as_primitive::<Int64Type>();
            let op = data.column_by_name("_op").unwrap().as_string::<i32>();
            for r in 0..data.num_rows() {
                let s = seq.value(r);
                assert_eq!(pos.value(r), format!("demo:{s}"));
                let e = &events[(s as u64 - offset) as usize];
                assert_eq!(TABLES[e.table], table);
                assert_eq!(op.value(r), e.op.code());
                if r > 0 {
                    assert!(seq.value(r - 1) < s, "rows in source order");
                }
            }
            expected.insert(table, (data.num_rows(), seq.value(0)));
        }
        for (t, name) in TABLES.iter().enumerate() {
            let n = events.iter().filter(|e| e.table == t).count();
            assert_eq!(expected.get(*name).map_or(0, |x| x.0), n, "{name}");
        }
        offset += events.len() as u64;
    }
    // Decimal text lands exactly.
    let events = all_events(cfg(42, 1));
    let batches = to_change_batches(&schemas, &events, 0).unwrap();
    let products = batches
        .iter()
        .find(|b| b.table.name.table == "products")
        .unwrap();
    let price = products.data.column_by_name("unit_price").unwrap();
    assert_eq!(price.data_type(), &DataType::Decimal128(10, 2));
    let first = events.iter().find(|e| e.table == PRODUCTS).unwrap();
    assert_eq!(
        price
            .as_primitive::<arrow::datatypes::Decimal128Type>()
            .value(0),
        i128::from(dec(&first.row[3]))
    );
    assert_eq!(price.null_count(), 0);
}

#[test]
fn change_batches_reject_an_unknown_table() {
    let schemas = schemas(Naming::SnakeCase);
    let mut events = all_events(cfg(42, 1));
    events.truncate(1);
    assert!(to_change_batches(&schemas[..0], &events, 0).is_err());
}

#[test]
fn ddl_matches_the_schemas() {
    let sql = create_sql();
    assert_eq!(sql.len(), 1 + TABLES.len());
    assert!(sql[0].starts_with("CREATE DATABASE IF NOT EXISTS `invoicing`"));
    for naming in [Naming::SnakeCase, Naming::Preserve] {
        for (t, schema) in schemas(naming).iter().enumerate() {
            let ddl = &sql[t + 1];
            assert_eq!(schema.name.source_db, DATABASE);
            assert_eq!(schema.name.source_table, TABLES[t]);
            assert!(ddl.starts_with(&format!(
                "CREATE TABLE IF NOT EXISTS `invoicing`.`{}` (",
                TABLES[t]
            )));
            assert!(ddl.ends_with(") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"));
            assert_eq!(schema.key_names(), ["id"]);
            assert_eq!(schema.columns.last().unwrap().source_name, "updated_at");
            for c in &schema.columns {
                assert_eq!(c.name, c.source_name, "already lower snake_case");
                let line = ddl
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("`{}` ", c.source_name)))
                    .unwrap_or_else(|| panic!("{} not in {ddl}", c.source_name));
                // The DDL type is the reported COLUMN_TYPE, less the integer width.
                let ty = c.column_type.split('(').next().unwrap();
                assert!(
                    line.to_lowercase().contains(ty),
                    "{line} vs {}",
                    c.column_type
                );
            }
            let ddl_columns = ddl.lines().filter(|l| l.trim_start().starts_with('`'));
            assert_eq!(ddl_columns.count(), schema.columns.len());
        }
    }
    let types: Vec<DataType> = schemas(Naming::SnakeCase)[INVOICES]
        .source_fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        [
            DataType::Int64,
            DataType::Int64,
            DataType::Utf8,
            DataType::Utf8,
            tidemark_core::types::timestamp_type(),
            DataType::Date32,
            DataType::Decimal128(12, 2),
            tidemark_core::types::timestamp_type(),
        ]
    );
}
