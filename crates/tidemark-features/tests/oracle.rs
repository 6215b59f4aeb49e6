//! Training sets equal a brute-force oracle, for both clocks.
//!
//! Random histories are landed through the lake's own writer (merge-on-read, with
//! compactions at random points, so reads go through the closed history, its base
//! and its tail), with:
//! * same-instant changes (several changes to one key at one source instant);
//! * deletes and re-inserts of a key;
//! * late changes: landed well after their source instant (the event clock sees them
//!   at that instant, the known clock only from their landing), after other batches.
//!
//! With `TIDEMARK_FEATURES_OUT_OF_ORDER=1` the histories also get out-of-order
//! corrections (a change whose source instant is before the key's newest version,
//! landed after it), which no binlog or per-key Kafka partition delivers; those
//! histories are not compacted, because compaction assumes a key's changes arrive in
//! source order (see the comment in `land`).
//!
//! The generator keeps every change in memory with the `_ingest_ts` its commit got.
//! For each entity row (a key and an instant `t`, some on a change's exact source
//! or landing instant) the oracle scans that whole list: the key's last change by
//! (source instant, sequence) with source instant ≤ t (and, for the known clock,
//! landed at or before t); a delete there means no value. The training set, built by
//! the crate's plan over the warehouse, must give the same values for every row.
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
use deltalake::datafusion::prelude::{ParquetReadOptions, SessionContext};
use indicatif::ProgressBar;
use tidemark_core::change::{ChangeBatchBuilder, Op, Value};
use tidemark_features::{training_set, write, Clock, Entities, FeatureViews, Format, Request};
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
    ingest: i64,
}

const VIEWS: &str = r#"
[features.item]
source = "shop.items"
entity = "item_id"
join_on = "id"
features = ["name", "qty", { name = "qty2", sql = "qty * 2" }]

[features.item_fresh]
source = "shop.items"
entity = "item_id"
join_on = "id"
ttl = "4ms"
features = [{ name = "fresh_qty", sql = "qty" }]

[features.by_grp]
source = "shop.items"
entity = "grp"
description = "the most recently changed item of the group, as of t"
features = [{ name = "grp_name", sql = "name" }, { name = "grp_item", sql = "id" }]
"#;

const TTL_US: i64 = 4_000;

fn views() -> FeatureViews {
    #[derive(serde::Deserialize)]
    struct File {
        features: BTreeMap<String, toml::Table>,
    }
    let f: File = toml::from_str(VIEWS).unwrap();
    FeatureViews::parse(&f.features).unwrap()
}

/// What each entity row's features must be.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    name: Option<String>,
    qty: Option<i64>,
    qty2: Option<i64>,
    fresh_qty: Option<i64>,
    grp_name: Option<String>,
    grp_item: Option<i64>,
}

/// The source state at `t` under `clock`, by brute force over every change: per key,
/// the last change by (source instant, sequence) among those the clock admits, unless
/// it is a delete.
fn state_at(log: &[Change], t: i64, clock: Clock) -> BTreeMap<i64, &Change> {
    let mut last: BTreeMap<i64, &Change> = BTreeMap::new();
    for c in log {
        if c.vf > t || (clock == Clock::Known && c.ingest > t) {
            continue;
        }
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

fn oracle(log: &[Change], item: i64, grp: i64, t: i64, clock: Clock) -> Expected {
    let s = state_at(log, t, clock);
    let v = s.get(&item);
    // By group: the latest event time (here `_valid_from`), then the smallest key.
    let g = s
        .values()
        .filter(|c| c.grp == grp)
        .max_by(|a, b| a.vf.cmp(&b.vf).then(b.id.cmp(&a.id)));
    Expected {
        name: v.map(|c| c.name.clone()),
        qty: v.map(|c| c.qty),
        qty2: v.map(|c| c.qty * 2),
        fresh_qty: v.filter(|c| c.vf >= t - TTL_US).map(|c| c.qty),
        grp_name: g.map(|c| c.name.clone()),
        grp_item: g.map(|c| c.id),
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Land a random history; returns the warehouse and every change.
async fn land(seed: u64, dir: &Path, in_order: bool) -> (Warehouse, Vec<Change>) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let wh = Warehouse::new(dir.join("wh").to_str().unwrap(), Default::default()).unwrap();
    let ts = Arc::new(items_schema());
    let mut w = TableWriter::open(&wh, ts.clone()).await.unwrap();
    w.start_merge_on_read().await.unwrap();
    let start = now_us();
    let mut log: Vec<Change> = Vec::new();
    // Per key, whether it exists as the generator last wrote it.
    let mut live: BTreeMap<i64, bool> = BTreeMap::new();
    let mut seq = 0i64;
    let batches = 8 + rng.below(8);
    for _ in 0..batches {
        let base = now_us();
        // Source instants on a 1 ms grid just before now, often shared by several
        // changes, moving forward within the batch.
        let mut instant = base - base % 1_000 - 3_000;
        let n = 1 + rng.below(12) as usize;
        let mut b = ChangeBatchBuilder::new(ts.clone(), n);
        let mut batch: Vec<Change> = Vec::new();
        for _ in 0..n {
            seq += 1;
            let id = rng.below(10) as i64;
            let exists = live.get(&id).copied().unwrap_or(false);
            let delete = exists && rng.below(5) == 0;
            let op = match (exists, delete) {
                (false, _) => Op::Create,
                (true, true) => Op::Delete,
                (true, false) => Op::Update,
            };
            live.insert(id, !delete);
            let newest = log
                .iter()
                .chain(&batch)
                .filter(|c| c.id == id)
                .map(|c| c.vf)
                .max()
                .unwrap_or(start);
            let vf = match rng.below(6) {
                // Late: happened a while ago (after the key's newest version), lands
                // only now, after other batches have landed.
                0 => rng.range(newest.min(base), base),
                // An out-of-order correction: before the key's newest version.
                1 if !in_order => rng.range(start.min(newest), newest),
                _ => {
                    if rng.below(3) == 0 && instant < base {
                        instant += 1_000;
                    }
                    if in_order {
                        instant.max(newest)
                    } else {
                        instant
                    }
                }
            };
            let c = Change {
                id,
                grp: rng.below(3) as i64,
                name: format!("n{}", rng.below(1000)),
                qty: rng.below(100) as i64,
                delete,
                vf,
                seq,
                ingest: 0,
            };
            b.push_values(
                &[
                    Value::Int(c.id),
                    Value::Int(c.grp),
                    Value::Text(c.name.clone()),
                    Value::Int(c.qty),
                ],
                op,
                c.vf,
                &format!("pos:{seq}"),
                seq,
            )
            .unwrap();
            batch.push(c);
        }
        let ingest = w
            .append_history(&b.finish().unwrap(), state())
            .await
            .unwrap();
        for mut c in batch {
            c.ingest = ingest;
            log.push(c);
        }
        // Compaction assumes a key's changes arrive in source order (it closes the
        // base row with the tail's first instant and makes the tail's last version
        // the new base): with out-of-order corrections the history view after a
        // compaction differs from the window over the log, so that mode leaves the
        // table uncompacted (the log window is the meaning of history).
        if rng.below(3) == 0 && in_order {
            w.compact_current().await.unwrap();
        }
        // Landing instants a few ms apart, so they interleave with source instants.
        tokio::time::sleep(std::time::Duration::from_millis(1 + rng.below(4))).await;
    }
    (wh, log)
}

/// Entity rows: (row_no, item_id, grp, t), with instants across the whole history
/// and on exact source and landing instants.
fn entity_rows(rng: &mut Rng, log: &[Change], n: usize) -> Vec<(i64, i64, i64, i64)> {
    let lo = log.iter().map(|c| c.vf).min().unwrap() - 3_000;
    let hi = log.iter().map(|c| c.ingest).max().unwrap() + 3_000;
    (0..n)
        .map(|i| {
            let pick = &log[rng.below(log.len() as u64) as usize];
            let t = match rng.below(4) {
                0 => pick.vf,
                1 => pick.ingest,
                _ => rng.range(lo, hi),
            };
            (i as i64, rng.below(12) as i64, rng.below(3) as i64, t)
        })
        .collect()
}

fn entity_batch(rows: &[(i64, i64, i64, i64)]) -> RecordBatch {
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
    let col = |f: fn(&(i64, i64, i64, i64)) -> i64| -> Vec<i64> { rows.iter().map(f).collect() };
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(col(|r| r.0))),
            Arc::new(Int64Array::from(col(|r| r.1))),
            Arc::new(Int64Array::from(col(|r| r.2))),
            Arc::new(TimestampMicrosecondArray::from(col(|r| r.3)).with_timezone("UTC")),
        ],
    )
    .unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut w =
        deltalake::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
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

/// The training set file read back: row_no → features.
async fn read_back(path: &Path) -> (Vec<String>, BTreeMap<i64, Expected>) {
    let ctx = SessionContext::new();
    let batches = ctx
        .read_parquet(path.to_str().unwrap(), ParquetReadOptions::default())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut names = Vec::new();
    let mut out = BTreeMap::new();
    for b in &batches {
        names = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
        let rows = ints(&col("row_no"));
        let (name, qty, qty2, fresh) = (
            strings(&col("name")),
            ints(&col("qty")),
            ints(&col("qty2")),
            ints(&col("fresh_qty")),
        );
        let (gname, gitem) = (strings(&col("grp_name")), ints(&col("grp_item")));
        for i in 0..b.num_rows() {
            let prev = out.insert(
                rows[i].unwrap(),
                Expected {
                    name: name[i].clone(),
                    qty: qty[i],
                    qty2: qty2[i],
                    fresh_qty: fresh[i],
                    grp_name: gname[i].clone(),
                    grp_item: gitem[i],
                },
            );
            assert!(
                prev.is_none(),
                "row {} twice in the training set",
                rows[i].unwrap()
            );
        }
    }
    (names, out)
}

/// What a seed's rows exercised, so the test can show it is not vacuous.
#[derive(Debug, Default)]
struct Tally {
    rows: usize,
    with_value: usize,
    stale: usize,
    by_group: usize,
    clocks_differ: usize,
}

async fn one(seed: u64, in_order: bool, tally: &mut Tally) {
    let dir = tempfile::tempdir().unwrap();
    let (wh, log) = land(seed, dir.path(), in_order).await;
    let engine = Engine::open(&wh).await.unwrap();
    let views = views();
    let mut rng = Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B);
    let rows = entity_rows(&mut rng, &log, 80);
    let entities = dir.path().join("entities.parquet");
    write_parquet(&entities, &entity_batch(&rows));
    let mut answers: Vec<BTreeMap<i64, Expected>> = Vec::new();
    for clock in [Clock::Event, Clock::Known] {
        let request = Request {
            views: vec!["item".into(), "item_fresh".into(), "by_grp".into()],
            entities: Entities::File(entities.clone()),
            timestamp_column: None,
            clock,
            full_feature_names: false,
            memory_limit: Some(256 << 20),
        };
        let set = training_set(&engine, &views, &request).await.unwrap();
        assert_eq!(set.rows, rows.len() as u64);
        let out = dir.path().join(format!("ts-{}.parquet", clock.as_str()));
        let written = write(set, &out, Format::Parquet, &ProgressBar::hidden())
            .await
            .unwrap();
        assert_eq!(
            written.rows,
            rows.len() as u64,
            "seed {seed}: one row per entity row"
        );
        let (names, got) = read_back(&out).await;
        assert_eq!(
            names,
            [
                "row_no",
                "item_id",
                "grp",
                "event_timestamp",
                "name",
                "qty",
                "qty2",
                "fresh_qty",
                "grp_name",
                "grp_item"
            ],
            "seed {seed}: columns"
        );
        for &(row, item, grp, t) in &rows {
            let want = oracle(&log, item, grp, t, clock);
            assert_eq!(
                got[&row],
                want,
                "seed {seed}, clock {}: item {item}, group {grp} at {t}\nthe key's changes: {:#?}",
                clock.as_str(),
                log.iter().filter(|c| c.id == item).collect::<Vec<_>>()
            );
            tally.rows += 1;
            tally.with_value += usize::from(want.qty.is_some());
            tally.stale += usize::from(want.qty.is_some() && want.fresh_qty.is_none());
            tally.by_group += usize::from(want.grp_item.is_some());
        }
        answers.push(got);
    }
    tally.clocks_differ += answers[0]
        .iter()
        .filter(|(row, e)| answers[1][*row] != **e)
        .count();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_sets_equal_the_brute_force_oracle() {
    let seeds: u64 = std::env::var("TIDEMARK_FEATURES_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    // TIDEMARK_FEATURES_OUT_OF_ORDER=1: also corrections before a key's newest
    // version (which binlog and per-key Kafka partitions never deliver).
    let in_order = std::env::var_os("TIDEMARK_FEATURES_OUT_OF_ORDER").is_none();
    let mut tally = Tally::default();
    for seed in 1..=seeds {
        one(seed, in_order, &mut tally).await;
    }
    // Not vacuous: values found and missing, stale values, the non-key view, and
    // rows where the clocks disagree (late changes) all occurred.
    eprintln!("{tally:?}");
    assert!(
        tally.with_value > tally.rows / 4 && tally.with_value < tally.rows,
        "{tally:?}"
    );
    assert!(tally.stale > 0 && tally.by_group > 0, "{tally:?}");
    assert!(tally.clocks_differ > 0, "{tally:?}");
}
