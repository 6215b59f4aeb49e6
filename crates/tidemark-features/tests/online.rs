//! The online store equals the latest offline values after every commit.
//!
//! Random histories are landed through the lake's own writer (merge-on-read, with
//! compactions at random points) with inserts, updates, deletes, re-inserts and
//! same-instant changes. After every commit the store follows (it reads only what
//! the commit touched), and for every key the online value must equal both the
//! training set built at `t = now` (the offline store's answer) and a brute-force
//! oracle over every change. Also: masks computed into the features, the TTL, the
//! SQL table (point lookup and scan), and a snapshot saved, loaded and followed on.
//!
//! A failure names the seed; `TIDEMARK_FEATURES_SEEDS=n` runs more of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake::datafusion::prelude::SessionContext;
use tidemark_core::change::{ChangeBatchBuilder, Op, Value as V};
use tidemark_features::{
    training_set, Clock, Entities, FeatureViews, OnlineStore, OnlineTable, Request, Value, Variant,
};
use tidemark_lake::{TableWriter, Warehouse};
use tidemark_query::Engine;

mod common;
use common::{items_schema, state, Rng};

#[derive(Debug, Clone)]
struct Change {
    id: i64,
    grp: i64,
    name: String,
    qty: i64,
    delete: bool,
    vf: i64,
    seq: i64,
}

const VIEWS: &str = r#"
[features.item]
source = "shop.items"
entity = "item_id"
join_on = "id"
features = ["name", "qty", { name = "qty2", sql = "qty * 2" }]

[features.item_ttl]
source = "shop.items"
entity = "item_id"
join_on = "id"
ttl = "1h"
features = [{ name = "fresh_qty", sql = "qty" }]

[features.by_grp]
source = "shop.items"
entity = "grp"
features = [{ name = "grp_name", sql = "name" }, { name = "grp_item", sql = "id" }]

[features.grp_item]
source = "shop.items"
entity = ["grp", "item_id"]
join_on = ["grp", "id"]
description = "a composite key that moves: an item changes group"
features = [{ name = "gi_qty", sql = "qty" }]
"#;

fn views() -> FeatureViews {
    #[derive(serde::Deserialize)]
    struct File {
        features: BTreeMap<String, toml::Table>,
    }
    let f: File = toml::from_str(VIEWS).unwrap();
    FeatureViews::parse(&f.features).unwrap()
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The current state by brute force: per key, the last change by (source instant,
/// sequence), unless a delete.
fn current(log: &[Change]) -> BTreeMap<i64, &Change> {
    let mut last: BTreeMap<i64, &Change> = BTreeMap::new();
    for c in log {
        match last.get(&c.id) {
            Some(p) if (p.vf, p.seq) > (c.vf, c.seq) => {}
            _ => {
                last.insert(c.id, c);
            }
        }
    }
    last.retain(|_, c| !c.delete);
    last
}

/// What the online store and the training set must say for one entity row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    name: Option<String>,
    qty: Option<i64>,
    qty2: Option<i64>,
    fresh_qty: Option<i64>,
    grp_name: Option<String>,
    grp_item: Option<i64>,
}

const KEYS: i64 = 12;

fn oracle(log: &[Change], item: i64, grp: i64) -> Row {
    let s = current(log);
    let v = s.get(&item);
    let g = s
        .values()
        .filter(|c| c.grp == grp)
        .max_by(|a, b| a.vf.cmp(&b.vf).then(b.id.cmp(&a.id)));
    Row {
        name: v.map(|c| c.name.clone()),
        qty: v.map(|c| c.qty),
        qty2: v.map(|c| c.qty * 2),
        fresh_qty: v.map(|c| c.qty),
        grp_name: g.map(|c| c.name.clone()),
        grp_item: g.map(|c| c.id),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        Value::Null => None,
        other => panic!("not text: {other:?}"),
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Null => None,
        other => panic!("not an integer: {other:?}"),
    }
}

/// The online store's answer for entity row (item, grp).
fn online(store: &OnlineStore, item: i64, grp: i64, variant: Variant, now: i64) -> Row {
    let get = |view: &str, key: i64| {
        let v = store.view(view).unwrap();
        let k = v.key(&[&key.to_string()]).unwrap();
        v.lookup(&[k], variant, now).unwrap().pop().unwrap()
    };
    let (i, t, g) = (get("item", item), get("item_ttl", item), get("by_grp", grp));
    Row {
        name: text(&i.values[0]),
        qty: int(&i.values[1]),
        qty2: int(&i.values[2]),
        fresh_qty: int(&t.values[0]),
        grp_name: text(&g.values[0]),
        grp_item: int(&g.values[1]),
    }
}

fn ints(a: &ArrayRef) -> Vec<Option<i64>> {
    let a = cast(a, &DataType::Int64).unwrap();
    let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

fn strings(a: &ArrayRef) -> Vec<Option<String>> {
    let a = cast(a, &DataType::Utf8).unwrap();
    let a = a.as_any().downcast_ref::<StringArray>().unwrap();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
        .collect()
}

/// The training set at `t` for every (item, grp) pair: row number → row.
async fn offline(engine: &Engine, dir: &Path, t: i64) -> BTreeMap<i64, Row> {
    let pairs: Vec<(i64, i64)> = (0..KEYS).map(|i| (i, i % 4)).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("row_no", DataType::Int64, false),
        Field::new("item_id", DataType::Int64, false),
        Field::new("grp", DataType::Int64, false),
        Field::new(
            "event_timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from((0..KEYS).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(
                pairs.iter().map(|p| p.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                pairs.iter().map(|p| p.1).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMicrosecondArray::from(vec![t; KEYS as usize]).with_timezone("UTC")),
        ],
    )
    .unwrap();
    let path = dir.join("entities.parquet");
    let file = std::fs::File::create(&path).unwrap();
    let mut w = deltalake::parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let set = training_set(
        engine,
        &views(),
        &Request {
            views: vec!["item".into(), "item_ttl".into(), "by_grp".into()],
            entities: Entities::File(path),
            timestamp_column: None,
            clock: Clock::Event,
            full_feature_names: false,
            memory_limit: None,
        },
    )
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for b in set.frame.collect().await.unwrap() {
        let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
        let (rows, name, qty, qty2, fresh, gname, gitem) = (
            ints(&col("row_no")),
            strings(&col("name")),
            ints(&col("qty")),
            ints(&col("qty2")),
            ints(&col("fresh_qty")),
            strings(&col("grp_name")),
            ints(&col("grp_item")),
        );
        for i in 0..b.num_rows() {
            out.insert(
                rows[i].unwrap(),
                Row {
                    name: name[i].clone(),
                    qty: qty[i],
                    qty2: qty2[i],
                    fresh_qty: fresh[i],
                    grp_name: gname[i].clone(),
                    grp_item: gitem[i],
                },
            );
        }
    }
    out
}

/// Every entity of a view, sorted, as text (to compare two stores).
fn dump(store: &OnlineStore, view: &str) -> Vec<String> {
    let b = store
        .view(view)
        .unwrap()
        .batch(None, Variant::Plain, now_us())
        .unwrap();
    let mut rows: Vec<String> = (0..b.num_rows())
        .map(|i| {
            b.columns()
                .iter()
                .map(|c| strings(c)[i].clone().unwrap_or_else(|| "NULL".into()))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    rows.sort();
    rows
}

async fn run(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().join("wh").to_str().unwrap(), Default::default()).unwrap();
    let ts = Arc::new(items_schema());
    let mut w = TableWriter::open(&wh, ts.clone()).await.unwrap();
    w.start_merge_on_read().await.unwrap();
    let engine = Engine::open(&wh).await.unwrap();
    let masks = BTreeMap::from([(
        ("shop".to_string(), "items".to_string()),
        vec![
            vec![("name".to_string(), "'***'".to_string())],
            vec![("id".to_string(), "0".to_string())],
        ],
    )]);
    let store = OnlineStore::new(views().iter(), &masks);
    let mut log: Vec<Change> = Vec::new();
    let mut live: BTreeMap<i64, bool> = BTreeMap::new();
    let mut seq = 0i64;
    let (mut compared, mut deletes, mut found) = (0, 0, 0);
    let batches = 10 + rng.below(6);
    for b_no in 0..batches {
        let base = now_us();
        let mut instant = base - base % 1_000 - 5_000;
        let n = 1 + rng.below(8) as usize;
        let mut b = ChangeBatchBuilder::new(ts.clone(), n);
        for _ in 0..n {
            seq += 1;
            let id = rng.below(KEYS as u64 - 2) as i64;
            let exists = live.get(&id).copied().unwrap_or(false);
            let delete = exists && rng.below(4) == 0;
            deletes += usize::from(delete);
            let op = match (exists, delete) {
                (false, _) => Op::Create,
                (true, true) => Op::Delete,
                (true, false) => Op::Update,
            };
            live.insert(id, !delete);
            // Several changes share an instant; instants move forward, and never
            // before the key's newest version (the binlog's order).
            if rng.below(3) == 0 {
                instant += 1_000;
            }
            let newest = log.iter().filter(|c| c.id == id).map(|c| c.vf).max();
            let vf = newest.map_or(instant, |n| n.max(instant));
            let c = Change {
                id,
                grp: rng.below(3) as i64,
                name: format!("n{}", rng.below(1000)),
                qty: rng.below(100) as i64,
                delete,
                vf,
                seq,
            };
            b.push_values(
                &[
                    V::Int(c.id),
                    V::Int(c.grp),
                    V::Text(c.name.clone()),
                    V::Int(c.qty),
                ],
                op,
                c.vf,
                &format!("pos:{seq}"),
                seq,
            )
            .unwrap();
            log.push(c);
        }
        w.append_history(&b.finish().unwrap(), state())
            .await
            .unwrap();
        if rng.below(3) == 0 {
            w.compact_current().await.unwrap();
        }
        engine.refresh().await.unwrap();
        store.catch_up(&engine, true).await;
        for v in store.views() {
            assert_eq!(v.error(), None, "seed {seed}: view {}", v.def.name);
        }
        let t = now_us();
        let off = offline(&engine, dir.path(), t).await;
        for item in 0..KEYS {
            let grp = item % 4;
            let want = oracle(&log, item, grp);
            let got = online(&store, item, grp, Variant::Plain, t);
            assert_eq!(
                got, want,
                "seed {seed}, commit {b_no}: online vs oracle for item {item}, grp {grp}"
            );
            assert_eq!(
                off[&item], want,
                "seed {seed}, commit {b_no}: training set vs oracle for item {item}"
            );
            // The composite key (group, item): a value only under the item's group now.
            let gi = store.view("grp_item").unwrap();
            let now_state = current(&log);
            for g in 0..3i64 {
                let k = gi.key(&[&g.to_string(), &item.to_string()]).unwrap();
                let got = int(&gi.lookup(&[k], Variant::Plain, t).unwrap()[0].values[0]);
                let want = now_state.get(&item).filter(|c| c.grp == g).map(|c| c.qty);
                assert_eq!(
                    got, want,
                    "seed {seed}, commit {b_no}: grp_item ({g}, {item})"
                );
            }
            compared += 1;
            found += usize::from(got.name.is_some());
        }
    }
    assert!(
        compared > 100 && deletes > 0 && found > 0,
        "seed {seed}: vacuous ({compared} compared, {deletes} deletes, {found} found)"
    );

    // Masks: features over a masked column are computed over the mask.
    let item = store.view("item").unwrap();
    let by_grp = store.view("by_grp").unwrap();
    let masked = item
        .variant_for(&[("name".into(), "'***'".into())])
        .unwrap();
    assert_eq!(masked, Variant::Masked(0));
    assert_eq!(
        item.variant_for(&[("id".into(), "0".into())]),
        None,
        "a masked key column is refused"
    );
    assert_eq!(
        item.variant_for(&[("qty".into(), "0".into())]),
        None,
        "masks not built for are refused"
    );
    let ids_masked = by_grp.variant_for(&[("id".into(), "0".into())]).unwrap();
    let t = now_us();
    for id in 0..KEYS {
        let plain = online(&store, id, id % 4, Variant::Plain, t);
        let k = item.key(&[&id.to_string()]).unwrap();
        let m = item.lookup(&[k], masked, t).unwrap().pop().unwrap();
        assert_eq!(
            text(&m.values[0]),
            plain.name.as_ref().map(|_| "***".to_string())
        );
        assert_eq!(
            int(&m.values[1]),
            plain.qty,
            "an unmasked feature is as it is"
        );
        let g = by_grp.key(&[&(id % 4).to_string()]).unwrap();
        let gm = by_grp.lookup(&[g], ids_masked, t).unwrap().pop().unwrap();
        assert_eq!(int(&gm.values[1]), plain.grp_item.map(|_| 0));
        assert_eq!(text(&gm.values[0]), plain.grp_name);
    }

    // The TTL: two hours on, a value from now is stale, and not served.
    let ttl = store.view("item_ttl").unwrap();
    let some = current(&log).keys().next().copied().unwrap();
    let k = ttl.key(&[&some.to_string()]).unwrap();
    let later = ttl
        .lookup(
            std::slice::from_ref(&k),
            Variant::Plain,
            t + 2 * 3_600_000_000,
        )
        .unwrap()
        .pop()
        .unwrap();
    assert!(
        !later.found && later.stale && later.values[0] == Value::Null,
        "{later:?}"
    );
    assert!(ttl.lookup(&[k], Variant::Plain, t).unwrap()[0].found);

    // Keys that are not keys say so.
    let e = item.key(&["abc"]).unwrap_err().to_string();
    assert!(
        e.contains("feature view item: key item_id = \"abc\" is not an integer"),
        "{e}"
    );
    let e = item.key(&["1", "2"]).unwrap_err().to_string();
    assert!(
        e.contains("keyed by item_id (1 column); got 2 key parts"),
        "{e}"
    );

    // As a SQL table: a key filter is a point lookup; anything else a scan.
    let ctx = SessionContext::new();
    ctx.register_table(
        "item",
        Arc::new(OnlineTable::new(item.clone(), Variant::Plain).unwrap()),
    )
    .unwrap();
    let live_now = current(&log);
    let n: i64 = ints(
        ctx.sql("SELECT count(*) FROM item")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()[0]
            .column(0),
    )[0]
    .unwrap();
    assert_eq!(n as usize, live_now.len());
    let (id, c) = live_now.iter().next().unwrap();
    let b = ctx
        .sql(&format!("SELECT name, qty2 FROM item WHERE item_id = {id}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(strings(b[0].column(0)), vec![Some(c.name.clone())]);
    assert_eq!(ints(b[0].column(1)), vec![Some(c.qty * 2)]);
    let none: usize = ctx
        .sql("SELECT * FROM item WHERE item_id = 999")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(none, 0);

    // A snapshot: saved, loaded by another store, followed on from its version.
    let saved = store.save(&wh, &[]).await.unwrap();
    assert_eq!(saved.len(), 4);
    let again = OnlineStore::new(views().iter(), &masks);
    let loaded = again.load(&engine, &wh).await.unwrap();
    assert_eq!(loaded.len(), 4, "{loaded:?}");
    for view in ["item", "item_ttl", "by_grp", "grp_item"] {
        assert_eq!(
            dump(&again, view),
            dump(&store, view),
            "seed {seed}: snapshot of {view}"
        );
        assert_eq!(
            again.view(view).unwrap().mark(),
            store.view(view).unwrap().mark()
        );
    }
    let mut b = ChangeBatchBuilder::new(ts.clone(), 1);
    let (id, c) = live_now.iter().next().unwrap();
    seq += 1;
    b.push_values(
        &[
            V::Int(*id),
            V::Int(c.grp),
            V::Text("after".into()),
            V::Int(c.qty),
        ],
        Op::Update,
        now_us().max(c.vf),
        &format!("pos:{seq}"),
        seq,
    )
    .unwrap();
    w.append_history(&b.finish().unwrap(), state())
        .await
        .unwrap();
    engine.refresh().await.unwrap();
    store.catch_up(&engine, true).await;
    again.catch_up(&engine, true).await;
    for view in ["item", "item_ttl", "by_grp", "grp_item"] {
        assert_eq!(
            dump(&again, view),
            dump(&store, view),
            "seed {seed}: {view} after the snapshot"
        );
    }
    assert!(dump(&again, "item").iter().any(|r| r.contains("|after|")));
    // A torn snapshot is not loaded (the view is built from the lake instead).
    let path = dir.path().join("wh/.tidemark/features/online/item.bin");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let third = OnlineStore::new(views().iter(), &masks);
    let loaded = third.load(&engine, &wh).await.unwrap();
    assert!(loaded.iter().all(|s| s.view != "item"), "{loaded:?}");
    third.catch_up(&engine, true).await;
    assert_eq!(dump(&third, "item"), dump(&store, "item"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_values_equal_the_latest_offline_values_after_every_commit() {
    let seeds: u64 = std::env::var("TIDEMARK_FEATURES_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    for seed in 1..=seeds {
        run(seed).await;
    }
}
