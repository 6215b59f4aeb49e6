//! A SIGKILL during compaction never shows a version twice and never loses one.
//!
//! Compaction makes two commits: the new base (with the new mark) to the current
//! table, then the versions the tail closed to the closed history. A process killed
//! between them leaves the closed history behind the base; readers must not take it
//! for complete, and the next compaction must rebuild it. The test lands a streamed
//! table's history through the lake writer (no MySQL needed), then kills `tidemark
//! maintain` at random moments and right after its first commit, and after each kill
//! compares the history, `AS OF` and `changes()` with the window over the whole log
//! (the oracle).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::datafusion::prelude::SessionContext;
use tidemark_core::change::{ChangeBatchBuilder, Op, Value};
use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::SourceState;
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_lake::{closed, committed_state, mor, TableKind, TableWriter, Warehouse};
use tidemark_query::Engine;

use crate::support::{record_checked, record_fault, rows_of, Lcg};

const KEYS: u64 = 20_000;

/// `shop.items (id INT PRIMARY KEY, qty INT, note VARCHAR(20))` (the publish tests
/// land it too).
pub(crate) fn schema() -> Arc<TableSchema> {
    let c = |n: &str, dt: &str, ct: &str| ColumnSchema {
        source_name: n.into(),
        name: String::new(),
        column_type: ct.into(),
        data_type: dt.into(),
        precision: None,
        scale: None,
        stored: Vec::new(),
    };
    Arc::new(
        TableSchema::new(
            TableName::new("shop", "items", Naming::SnakeCase),
            vec![
                c("id", "int", "int(11)"),
                c("qty", "int", "int(11)"),
                c("note", "varchar", "varchar(20)"),
            ],
            &["id".to_string()],
            Naming::SnakeCase,
        )
        .unwrap(),
    )
}

/// Land `n` random changes (inserts, updates, deletes) as one history commit.
pub(crate) async fn land(
    w: &mut TableWriter,
    rng: &mut Lcg,
    clock: &mut i64,
    seq: &mut i64,
    n: usize,
) {
    let mut b = ChangeBatchBuilder::new(w.schema().clone(), n);
    for _ in 0..n {
        if rng.next(4) == 0 {
            *clock += 1_000_000;
        }
        *seq += 1;
        let id = rng.next(KEYS) as i64;
        let op = match rng.next(10) {
            0 => Op::Delete,
            1..=3 => Op::Create,
            _ => Op::Update,
        };
        b.push_values(
            &[
                Value::Int(id),
                Value::Int(rng.next(1000) as i64),
                Value::Text(format!("n{}", rng.next(100))),
            ],
            op,
            *clock,
            &format!("pos:{seq}"),
            *seq,
        )
        .unwrap();
    }
    let state = SourceState {
        source: "test".into(),
        source_table: "shop.items".into(),
        ..Default::default()
    };
    w.append_history(&b.finish().unwrap(), state).await.unwrap();
}

/// The aggregates compared after each kill: every version once (`_source_pos` is
/// unique per version), the same ones current, the same table at three instants,
/// the same changes over an interval.
const CHECKS: [&str; 5] = [
    "SELECT count(*), count(DISTINCT _source_pos), sum(CASE WHEN _is_current THEN 1 ELSE 0 END), sum(qty), min(_valid_to), max(_valid_to) FROM {h}",
    "SELECT count(*), sum(qty), count(DISTINCT id) FROM {h} WHERE _valid_from <= to_timestamp_micros({t1}) AND (_valid_to IS NULL OR _valid_to > to_timestamp_micros({t1}))",
    "SELECT count(*), sum(qty), count(DISTINCT id) FROM {h} WHERE _valid_from <= to_timestamp_micros({t2}) AND (_valid_to IS NULL OR _valid_to > to_timestamp_micros({t2}))",
    "SELECT count(*), sum(qty) FROM {h} WHERE _is_current",
    "SELECT count(*), count(DISTINCT _source_pos), sum(CASE WHEN _op = 'd' THEN 1 ELSE 0 END) FROM {c}",
];

async fn check(wh: &Warehouse, t1: i64, t2: i64, what: &str) {
    let ts = schema();
    // The oracle: the window over the whole log.
    let (hist, _) = wh
        .delta_table(&wh.table_url("shop", "items", TableKind::History))
        .await
        .unwrap();
    let ctx = SessionContext::new();
    let log = mor::logical_log(&ctx, &ts, hist.table_provider().await.unwrap()).unwrap();
    ctx.register_table("log", log).unwrap();
    let v = ctx
        .sql(&closed::log_versions_sql(&ts, "log"))
        .await
        .unwrap();
    ctx.register_table("v", v.into_view()).unwrap();
    let live = ctx.sql("SELECT * FROM v WHERE _op <> 'd'").await.unwrap();
    ctx.register_table("live", live.into_view()).unwrap();
    let hv = ctx
        .sql(&closed::history_view_sql(&ts, "live"))
        .await
        .unwrap();
    ctx.register_table("hv", hv.into_view()).unwrap();
    let ch = ctx
        .sql(&format!(
            "SELECT * FROM v WHERE _valid_from > to_timestamp_micros({t1}) AND _valid_from <= to_timestamp_micros({t2})"
        ))
        .await
        .unwrap();
    ctx.register_table("ch", ch.into_view()).unwrap();

    let engine = Engine::open(wh).await.unwrap();
    let mut rows = 0;
    for q in CHECKS {
        let sub = |h: &str, c: &str| {
            q.replace("{h}", h)
                .replace("{c}", c)
                .replace("{t1}", &t1.to_string())
                .replace("{t2}", &t2.to_string())
        };
        let want = rows_of(
            &ctx.sql(&sub("hv", "ch"))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
        );
        let got = rows_of(
            &engine
                .query(&sub(
                    "shop_history.items",
                    &format!(
                        "changes('shop.items', to_timestamp_micros({t1}), to_timestamp_micros({t2}))"
                    ),
                ))
                .await
                .unwrap(),
        );
        assert_eq!(got, want, "{what}: {q}");
        rows += 1;
    }
    record_checked(rows, "compaction aggregates after a kill");
}

/// What one of the table's Delta tables has committed now.
async fn committed(wh: &Warehouse, kind: TableKind) -> tidemark_lake::Committed {
    let (t, _) = wh
        .delta_table(&wh.table_url("shop", "items", kind))
        .await
        .unwrap();
    committed_state(&t).await.unwrap()
}

/// Run `tidemark maintain` and SIGKILL it: after `delay`, or (`None`) as soon as it
/// logs its commit of the new base, between compaction's two commits.
fn maintain_killed(wh: &Path, log: &Path, delay: Option<Duration>) -> bool {
    let _ = std::fs::remove_file(log);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        // Each daemon its own API port: tests run side by side.
        .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
        .arg("--warehouse")
        .arg(wh)
        .args(["maintain", "--no-vacuum"])
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env("TIDEMARK_LOG", "tidemark_lake=debug,info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let due = match delay {
            Some(d) => start.elapsed() >= d,
            None => std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("items/current") && l.contains("written")),
        };
        if due || start.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    record_fault("sigkill", "tidemark maintain (compaction)");
    let _ = child.kill();
    let _ = child.wait();
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_killed_at_any_moment_shows_every_version_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("wh");
    let wh = Warehouse::new(root.to_str().unwrap(), Default::default()).unwrap();
    let mut w = TableWriter::open(&wh, schema()).await.unwrap();
    w.start_merge_on_read().await.unwrap();
    let mut rng = Lcg(7);
    let t0 = 1_767_225_600_000_000i64;
    let (mut clock, mut seq) = (t0, 0i64);
    for _ in 0..6 {
        land(&mut w, &mut rng, &mut clock, &mut seq, 10_000).await;
    }
    let log = dir.path().join("maintain.log");
    let mut between = 0;
    for round in 0..8 {
        // Every other kill lands between the two commits; the others anywhere.
        let delay = (round % 2 == 0).then(|| Duration::from_millis(rng.next(3000)));
        let killed = maintain_killed(&root, &log, delay);
        let (cur, clo) = (
            committed(&wh, TableKind::Current).await,
            committed(&wh, TableKind::Closed).await,
        );
        let mark = cur.state.merged_through_us;
        let through = clo.state.closed_through_us;
        if killed && through < mark {
            between += 1;
        }
        let (t1, t2) = (
            t0 + rng.next((clock - t0) as u64) as i64,
            clock - rng.next(50_000_000) as i64,
        );
        check(&wh, t1.min(t2), t2.max(t1), &format!("round {round}")).await;
        // More changes, so the next compaction has a tail again.
        let mut w = TableWriter::open(&wh, schema()).await.unwrap();
        land(&mut w, &mut rng, &mut clock, &mut seq, 5_000).await;
    }
    assert!(
        between > 0,
        "no kill landed between compaction's two commits; the window was not tested"
    );
    // A compaction that runs to the end picks up after every kill.
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        // Each daemon its own API port: tests run side by side.
        .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
        .arg("--warehouse")
        .arg(&root)
        .args(["maintain", "--no-vacuum"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(&wh, t0 + 1, clock, "after a full compaction").await;
    let (cur, clo) = (
        committed(&wh, TableKind::Current).await,
        committed(&wh, TableKind::Closed).await,
    );
    assert!(
        closed::serves(&clo, cur.state.merged_through_us),
        "after a full compaction the closed history serves reads"
    );
}
