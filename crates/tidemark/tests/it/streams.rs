//! Change events from Kafka, against a real Kafka-protocol broker (tansu, started by
//! scripts/test.sh): Debezium messages for one table, keyed by row over three
//! partitions — a snapshot, then inserts, updates and deletes with tombstones, a
//! message that is not JSON, one whose value does not fit its column, and the
//! connector "restarting" and sending a stretch of changes again under new offsets.
//! `tidemark run` is SIGKILLed at random moments while the messages arrive. Then:
//! the current table equals the model, history has exactly one version per change,
//! and the two bad messages are in `tidemark.dead_letters`, once each.

use std::collections::BTreeMap;
use std::time::Duration;

use tidemark_capture::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use tidemark_capture::rdkafka::client::DefaultClientContext;
use tidemark_capture::rdkafka::config::ClientConfig;
use tidemark_capture::rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::{kill, ok, spawn_run_with, wait_for_log, Lcg, TestDb};

/// The test broker's address.
pub fn broker() -> String {
    std::env::var("TIDEMARK_TEST_KAFKA").expect(
        "TIDEMARK_TEST_KAFKA is not set: run the tests with scripts/test.sh, which starts a private Kafka-protocol broker (tansu)",
    )
}

pub async fn create_topic(topic: &str, partitions: i32) {
    create_topic_on(&broker(), topic, partitions).await
}

/// [`create_topic`] on the broker at `bootstrap`.
pub async fn create_topic_on(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let r = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topic");
    for t in r {
        t.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// An idempotent producer: each partition keeps the order messages were sent in,
/// even when a request is retried, as Kafka Connect's producer does for Debezium
/// (tidemark's replay check relies on that order).
///
/// One message per record batch: tansu 0.6.0 answers a fetch from an offset inside
/// a batch with the batches after it, so a consumer resuming mid-batch silently
/// skips the rest of that batch (Kafka returns the whole batch and the client skips
/// what it does not need). `scripts/kafka-order-check.py` shows it. Batches of one
/// make every offset a batch start, so the tests see tidemark, not that fault.
pub fn producer() -> FutureProducer {
    producer_on(&broker())
}

/// [`producer`] for the broker at `bootstrap`.
pub fn producer_on(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("batch.num.messages", "1")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

/// Send `msgs` (partition, key, value) in order and wait for every delivery.
pub async fn produce(p: &FutureProducer, topic: &str, msgs: &[(i32, String, Option<String>)]) {
    for chunk in msgs.chunks(200) {
        let sends = chunk.iter().map(|(part, key, value)| {
            let mut rec = FutureRecord::to(topic).partition(*part).key(key.as_str());
            if let Some(v) = value {
                rec = rec.payload(v.as_str());
            }
            p.send(rec, Duration::from_secs(30))
        });
        for r in futures::future::join_all(sends).await {
            r.unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
        }
    }
}

/// A test database with the `invoices` table every event here is for.
async fn invoices_db(test: &str) -> TestDb {
    let db = TestDb::new(test).await;
    db.exec("CREATE TABLE invoices (id INT PRIMARY KEY, customer VARCHAR(40), total DECIMAL(10,2), issued DATE)")
        .await;
    db
}

/// The config of a files stream named `stream` of `format` events under `path`.
fn files_config(
    db: &TestDb,
    stream: &str,
    format: &str,
    path: &str,
    extra: &str,
) -> std::path::PathBuf {
    db.config(&format!(
        "capture = \"none\"\n\n[streams.{stream}]\nkind = \"files\"\nformat = \"{format}\"\nschema_from = \"main\"\npath = \"{path}\"\ndecimal_handling = \"string\"\n{extra}"
    ))
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    customer: String,
    total: String,
    issued: i32,
    /// The column added at the source mid-stream (`None` before it exists).
    note: Option<String>,
}

fn image(id: i64, r: &Row) -> String {
    let note = r
        .note
        .as_ref()
        .map(|n| format!(r#", "note": "{n}""#))
        .unwrap_or_default();
    format!(
        r#"{{"id": {id}, "customer": "{}", "total": "{}", "issued": {}{note}}}"#,
        r.customer, r.total, r.issued
    )
}

/// A Debezium envelope without schema (decimal.handling.mode=string).
fn envelope(
    db: &str,
    op: &str,
    before: Option<String>,
    after: Option<String>,
    pos: u64,
    ts_ms: i64,
) -> String {
    let snapshot = if op == "r" { "true" } else { "false" };
    format!(
        r#"{{"before": {}, "after": {}, "source": {{"version": "2.7.0.Final", "connector": "mysql", "name": "shop", "ts_ms": {ts_ms}, "snapshot": "{snapshot}", "db": "{db}", "table": "invoices", "server_id": 1, "gtid": null, "file": "mysql-bin.000003", "pos": {pos}, "row": 0}}, "op": "{op}", "ts_ms": {ts_ms}}}"#,
        before.as_deref().unwrap_or("null"),
        after.as_deref().unwrap_or("null"),
    )
}

type Messages = Vec<(i32, String, Option<String>)>;

/// A generated Debezium stream for one `invoices` table, keyed by row over
/// `partitions` partitions, with the rows and history versions it makes.
struct Workload {
    db: String,
    partitions: i64,
    msgs: Messages,
    model: BTreeMap<i64, Row>,
    versions: i64,
    pos: u64,
    ts: i64,
    next_id: i64,
}

impl Workload {
    fn new(db: &str, partitions: i64) -> Self {
        Self {
            db: db.to_string(),
            partitions,
            msgs: Vec::new(),
            model: BTreeMap::new(),
            versions: 0,
            pos: 4,
            ts: 1_767_225_600_000,
            next_id: 1,
        }
    }

    fn push(&mut self, id: i64, value: Option<String>) {
        let part = (id % self.partitions) as i32;
        self.msgs.push((part, format!(r#"{{"id": {id}}}"#), value));
    }

    /// The snapshot's read events of `rows` rows.
    fn snapshot(&mut self, rng: &mut Lcg, rows: i64) {
        for _ in 0..rows {
            let id = self.next_id;
            self.next_id += 1;
            let r = Row {
                customer: format!("c{}", rng.next(50)),
                total: format!("{}.{:02}", rng.next(10_000), rng.next(100)),
                issued: 20_000 + rng.next(400) as i32,
                note: None,
            };
            let ev = envelope(&self.db, "r", None, Some(image(id, &r)), 4, self.ts);
            self.push(id, Some(ev));
            self.model.insert(id, r);
            self.versions += 1;
        }
    }

    /// `n` inserts, updates and deletes (with their tombstones); rows written get
    /// `note` when the column exists.
    fn changes(&mut self, rng: &mut Lcg, n: usize, note: Option<&str>) {
        for _ in 0..n {
            self.pos += 100;
            self.ts += 7;
            let (pos, ts) = (self.pos, self.ts);
            let choice = rng.next(10);
            if choice < 2 || self.model.is_empty() {
                let id = self.next_id;
                self.next_id += 1;
                let r = Row {
                    customer: format!("n{id}"),
                    total: "1.50".into(),
                    issued: 20_500,
                    note: note.map(String::from),
                };
                let ev = envelope(&self.db, "c", None, Some(image(id, &r)), pos, ts);
                self.push(id, Some(ev));
                self.model.insert(id, r);
                self.versions += 1;
            } else {
                let ids: Vec<i64> = self.model.keys().copied().collect();
                let id = ids[rng.next(ids.len() as u64) as usize];
                let old = self.model[&id].clone();
                if choice == 9 {
                    let ev = envelope(&self.db, "d", Some(image(id, &old)), None, pos, ts);
                    self.push(id, Some(ev));
                    self.push(id, None); // the tombstone that follows
                    self.model.remove(&id);
                } else {
                    let r = Row {
                        total: format!("{}.{:02}", rng.next(10_000), rng.next(100)),
                        note: note.map(String::from).or(old.note.clone()),
                        ..old.clone()
                    };
                    let ev = envelope(
                        &self.db,
                        "u",
                        Some(image(id, &old)),
                        Some(image(id, &r)),
                        pos,
                        ts,
                    );
                    self.push(id, Some(ev));
                    self.model.insert(id, r);
                    self.versions += 1;
                }
            }
        }
    }

    /// The source added `note` with default `default`: every row has it now, and
    /// gets a version saying so.
    fn add_note(&mut self, default: &str) {
        for r in self.model.values_mut() {
            r.note = Some(default.to_string());
        }
        self.versions += self.model.len() as i64;
    }

    /// A message that is not JSON, and one whose value does not fit the table, for
    /// partition `p` (both become dead letters).
    fn bad_messages(&self, part: i32) -> [(i32, String, Option<String>); 2] {
        let key = |id: i64| format!(r#"{{"id": {id}}}"#);
        [
            (part, key(1), Some("this is not json {".to_string())),
            (
                part,
                key(4),
                Some(envelope(
                    &self.db,
                    "u",
                    None,
                    Some(
                        r#"{"id": 4, "customer": "x", "total": "not a number", "issued": 1}"#
                            .into(),
                    ),
                    10_000_000_000,
                    1_767_225_700_000,
                )),
            ),
        ]
    }
}

/// A snapshot of 300 rows, then `changes` inserts, updates and deletes (with their
/// tombstones), keyed by row over `partitions` partitions; returns the messages, the
/// final rows, the number of history versions they make, and where streaming starts.
fn workload(
    db: &str,
    rng: &mut Lcg,
    changes: usize,
    partitions: i64,
) -> (Messages, BTreeMap<i64, Row>, i64, usize) {
    let mut w = Workload::new(db, partitions);
    w.snapshot(rng, 300);
    let stream_start = w.msgs.len();
    w.changes(rng, changes, None);
    (w.msgs, w.model, w.versions, stream_start)
}

/// The config of a Kafka stream over the test database's topics, in a consumer
/// group of its own. A SIGKILLed member is noticed after the session timeout, so it
/// is short. (tansu 0.6.0 held the group's next assignment about 45 s after a
/// SIGKILL even so, and over 2 minutes with librdkafka's defaults.)
fn kafka_config(db: &TestDb) -> std::path::PathBuf {
    kafka_config_in(db, &db.name)
}

/// [`kafka_config`] with consumer group `group`.
fn kafka_config_in(db: &TestDb, group: &str) -> std::path::PathBuf {
    kafka_config_on(db, group, &broker())
}

/// [`kafka_config`] with consumer group `group`, on the broker at `bootstrap`.
fn kafka_config_on(db: &TestDb, group: &str, bootstrap: &str) -> std::path::PathBuf {
    db.config(&format!(
        "capture = \"none\"\n\n[streams.events]\nkind = \"kafka\"\nformat = \"debezium\"\nschema_from = \"main\"\nbrokers = \"{}\"\ntopics = [\"^shop\\\\.{}\\\\..*\"]\ngroup_id = \"{}\"\ndecimal_handling = \"string\"\nflush_interval_ms = 100\nflush_rows = 300\n\n[streams.events.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\"max.poll.interval.ms\" = \"10000\"\n",
        bootstrap,
        db.name,
        group
    ))
}

/// Every message of `topic` whose key is one of `ids`, read with a fresh consumer:
/// (partition, offset, the value's start), for diagnosing a failed comparison.
async fn topic_messages_about(topic: &str, ids: &[String]) -> Vec<String> {
    use tidemark_capture::rdkafka::consumer::{Consumer, StreamConsumer};
    use tidemark_capture::rdkafka::Message;
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", format!("diag-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let keys: Vec<String> = ids.iter().map(|i| format!(r#"{{"id": {i}}}"#)).collect();
    let mut out = Vec::new();
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        if key.is_some_and(|k| keys.contains(&k)) {
            let v = m.payload().map(|v| {
                let v = String::from_utf8_lossy(v);
                let field = |name: &str| {
                    v.find(name)
                        .map(|i| v[i..].chars().take(name.len() + 14).collect::<String>())
                        .unwrap_or_default()
                };
                format!("{} {}", field("\"op\": "), field("\"pos\": "))
            });
            out.push(format!(
                "{} {} {:?} {v:?}",
                m.partition(),
                m.offset(),
                m.key().map(|k| String::from_utf8_lossy(k).into_owned())
            ));
        }
    }
    out
}

/// The current table equals `model`; history has `versions` versions, none twice.
async fn check_landed(db: &TestDb, model: &BTreeMap<i64, Row>, versions: i64, msgs: &Messages) {
    check_landed_with(db, model, versions, false, msgs).await
}

/// What the history lacks of `msgs` (inserts and updates, by binlog position), as
/// "partition offset op pos key" lines, for a failed check.
async fn missing_changes(db: &TestDb, msgs: &Messages) -> Vec<String> {
    use deltalake::arrow::array::AsArray;
    let s = &db.name;
    let landed = db
        .sql(&format!(
            "SELECT DISTINCT CAST(_source_pos AS VARCHAR) FROM {s}_history.invoices"
        ))
        .await;
    let mut have = std::collections::HashSet::new();
    for b in &landed {
        let c = deltalake::arrow::compute::cast(
            b.column(0),
            &deltalake::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        for v in c.as_string::<i32>().iter().flatten() {
            have.extend(v.split(':').map(String::from));
        }
    }
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut missing = Vec::new();
    for (part, key, value) in msgs {
        let next = offsets.entry(*part).or_insert(0);
        let offset = *next;
        *next += 1;
        let Some(v) = value else { continue };
        let field = |name: &str| {
            v.split(&format!("\"{name}\": "))
                .nth(1)
                .and_then(|r| r.split([',', '}']).next())
                .map(|f| f.trim_matches('"').to_string())
        };
        if let (Some(op), Some(pos)) = (field("op"), field("pos")) {
            if (op == "c" || op == "u") && !have.contains(&pos) {
                missing.push(format!("p{part} offset {offset} {op} pos {pos} key {key}"));
            }
        }
    }
    missing
}

/// Each Delta commit under `wh` (path, version, and the partitions' positions it
/// recorded), for a failed check.
fn delta_log_states(wh: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![wh.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if f.is_dir() {
                dirs.push(f);
            } else if f.extension().is_some_and(|x| x == "json")
                && f.parent().is_some_and(|p| p.ends_with("_delta_log"))
            {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                let parts = text
                    .find("\"partitions\"")
                    .map(|i| text[i..].chars().take(400).collect::<String>())
                    .unwrap_or_default();
                let rows = text.matches("\"add\"").count();
                out.push(format!(
                    "{} adds={rows} {parts}",
                    f.strip_prefix(wh).unwrap_or(&f).display()
                ));
            }
        }
    }
    out
}

/// [`check_landed`]; `note`: the table has the added column `note`, compared too.
async fn check_landed_with(
    db: &TestDb,
    model: &BTreeMap<i64, Row>,
    versions: i64,
    note: bool,
    msgs: &Messages,
) {
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::{Int32Type, Int64Type};
    let s = &db.name;
    let landed = db
        .sql(&format!(
            "SELECT id, customer, CAST(total AS VARCHAR) AS total, CAST(CAST(issued AS INT) AS BIGINT) AS issued, {} AS note FROM {s}.invoices ORDER BY id",
            if note { "note" } else { "CAST(NULL AS VARCHAR)" }
        ))
        .await;
    let mut got = BTreeMap::new();
    let utf8 = |c: &deltalake::arrow::array::ArrayRef| {
        deltalake::arrow::compute::cast(c, &deltalake::arrow::datatypes::DataType::Utf8).unwrap()
    };
    for b in &landed {
        let ids = b.column(0).as_primitive::<Int32Type>();
        let (cust, total) = (utf8(b.column(1)), utf8(b.column(2)));
        let (cust, total) = (cust.as_string::<i32>(), total.as_string::<i32>());
        let issued = b.column(3).as_primitive::<Int64Type>();
        let notes = utf8(b.column(4));
        let notes = notes.as_string::<i32>();
        for i in 0..b.num_rows() {
            assert!(!ids.is_null(i));
            got.insert(
                ids.value(i) as i64,
                Row {
                    customer: cust.value(i).to_string(),
                    total: total.value(i).to_string(),
                    issued: issued.value(i) as i32,
                    note: (!notes.is_null(i)).then(|| notes.value(i).to_string()),
                },
            );
        }
    }
    let history = db
        .sql_i64(&format!("SELECT count(*) FROM {s}_history.invoices"))
        .await;
    let differ: Vec<&i64> = model
        .iter()
        .filter(|(id, r)| got.get(id) != Some(r))
        .map(|(id, _)| id)
        .collect();
    if got.len() != model.len() || !differ.is_empty() || history != versions {
        let extra: Vec<_> = got.keys().filter(|k| !model.contains_key(k)).collect();
        let missing: Vec<_> = model.keys().filter(|k| !got.contains_key(k)).collect();
        let ids: Vec<String> = extra
            .iter()
            .chain(&missing)
            .chain(differ.iter().take(20))
            .map(|k| k.to_string())
            .collect();
        let lacking = missing_changes(db, msgs).await;
        let states = delta_log_states(&db.warehouse());
        let hist = db
            .sql(&format!(
                "SELECT id, _op, _source_ts, _source_pos, _valid_from, _valid_to, _ingest_ts{} FROM {s}_history.invoices WHERE id IN ({}) ORDER BY id, _valid_from",
                if note { ", note" } else { "" },
                if ids.is_empty() { "0".to_string() } else { ids.join(",") }
            ))
            .await;
        let log = std::fs::read_to_string(db.dir.path().join("run.log")).unwrap_or_default();
        // Each commit line says where every partition had been read to.
        let log: Vec<&str> = log.lines().collect();
        let status =
            crate::support::tidemark(&db.dir.path().join("tidemark.toml"), &["status", "--json"]);
        let in_topic = topic_messages_about(&format!("shop.{s}.invoices"), &ids).await;
        panic!(
            "current rows: {} landed, {} expected; extra {extra:?}, missing {missing:?}, differing {differ:?}; history versions {history} (expected {versions}); changes history lacks (the unfit one is a dead letter):\n{}\nthe tables' commits:\n{}\ntheir history:\n{}\nrun.log:\n{}\nstatus: {}\ntheir messages in the topic (partition, offset, value prefix):\n{}",
            got.len(),
            model.len(),
            lacking.join("\n"),
            states.join("\n"),
            deltalake::arrow::util::pretty::pretty_format_batches(&hist).unwrap(),
            log.join("\n"),
            crate::support::text(&status),
            in_topic.join("\n")
        );
    }
    let doubled = db
        .sql_i64(&format!(
            "SELECT count(*) FROM (SELECT id, _valid_from FROM {s}_history.invoices GROUP BY id, _valid_from HAVING count(*) > 1) d"
        ))
        .await;
    assert_eq!(doubled, 0, "no version landed twice");
    crate::support::record_checked(got.len() + versions as usize, "Kafka rows and versions");
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_events_land_exactly_once_through_kills() {
    let db = invoices_db("kafka").await;
    let topic = format!("shop.{}.invoices", db.name);
    create_topic(&topic, 3).await;
    let config = kafka_config(&db);
    let mut rng = Lcg(u64::from(std::process::id()) ^ 0x5eed);
    let (mut msgs, model, versions, stream_start) = workload(&db.name, &mut rng, 1500, 3);
    // Two bad messages in partition 1, and the connector re-sending 200 changes.
    let key = |id: i64| format!(r#"{{"id": {id}}}"#);
    let garbage = (1, key(1), Some("this is not json {".to_string()));
    let unfit = (
        1,
        key(4),
        Some(envelope(
            &db.name,
            "u",
            None,
            Some(r#"{"id": 4, "customer": "x", "total": "not a number", "issued": 1}"#.into()),
            10_000_000_000,
            1_767_225_700_000,
        )),
    );
    msgs.insert(stream_start + 700, unfit);
    msgs.insert(stream_start + 400, garbage);
    let replay: Vec<_> = msgs[stream_start..stream_start + 200].to_vec();
    msgs.extend(replay);

    // Produce in chunks while `run` is SIGKILLed at random moments and restarted.
    // `run` is SIGKILLed at random moments while it lands, and restarted.
    let producer = producer();
    let assigned = "\"partitions assigned\"";
    let wait = Duration::from_secs(120);
    let (first, rest) = msgs.split_at(msgs.len() / 2);
    let child = spawn_run_with(&config, &[]);
    wait_for_log(&config, assigned, 1, wait);
    produce(&producer, &topic, first).await;
    tokio::time::sleep(Duration::from_millis(300 + rng.next(2500))).await;
    kill(child);
    let child = spawn_run_with(&config, &[]);
    produce(&producer, &topic, rest).await;
    wait_for_log(&config, assigned, 2, wait);
    tokio::time::sleep(Duration::from_millis(300 + rng.next(2500))).await;
    kill(child);
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));

    check_landed(&db, &model, versions, &msgs).await;
    check_dead_letters(&db, &topic).await;
    let status = ok(db.tidemark(&config, &["status"]));
    assert!(
        status.contains("dead letters: 2 from stream events"),
        "{status}"
    );
    db.drop().await;
}

/// The issue's whole story on a real broker: a Debezium stream (snapshot, inserts,
/// updates, deletes with tombstones, two malformed messages, a column added at the
/// source mid-stream) consumed by two workers of one consumer group that share four
/// partitions and write the same table; one is SIGKILLed mid-stream (the group gives
/// its partitions to the other), then the other. Current = expected, history exact
/// (each change once, the added column's default as one version per row), both
/// dead letters recorded.
///
/// The column is added while both workers are idle (everything before it landed),
/// as a source's DDL is ordered after the changes before it; see
/// docs/architecture.md for what happens when a worker still has changes of the old
/// shape in flight.
#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_partitions_through_rebalances() {
    let db = invoices_db("kafka2").await;
    let s = db.name.clone();
    let topic = format!("shop.{s}.invoices");
    create_topic(&topic, 4).await;
    let config = kafka_config(&db);
    let mut rng = Lcg(u64::from(std::process::id()) ^ 0xbeef);
    let mut w = Workload::new(&s, 4);
    w.snapshot(&mut rng, 300);
    w.changes(&mut rng, 800, None);
    let [garbage, unfit] = w.bad_messages(2);
    w.msgs.insert(500, garbage);
    w.msgs.insert(900, unfit);
    let before_alter = std::mem::take(&mut w.msgs);
    let landed_before_alter = w.versions;

    let producer = producer();
    let assigned = "\"partitions assigned\"";
    let wait = Duration::from_secs(120);
    let a = spawn_run_with(&config, &[]);
    let b = spawn_run_with(&config, &[]);
    // Both joined, and the group split the four partitions between them.
    wait_for_log(&config, "\"partitions assigned\",\"partitions\":2", 2, wait);
    produce(&producer, &topic, &before_alter).await;
    wait_for_history(&db, landed_before_alter, wait).await;

    // The source adds a column; the changes after it carry it.
    db.exec("ALTER TABLE invoices ADD COLUMN note VARCHAR(20) NOT NULL DEFAULT 'none'")
        .await;
    w.add_note("none");
    w.changes(&mut rng, 1200, Some("new"));
    let (first, rest) = w.msgs.split_at(w.msgs.len() / 2);
    produce(&producer, &topic, first).await;
    tokio::time::sleep(Duration::from_millis(500 + rng.next(1500))).await;
    // b takes a's partitions once a's session times out.
    let before = std::fs::read_to_string(config.with_file_name("run.log"))
        .unwrap()
        .matches(assigned)
        .count();
    kill(a);
    produce(&producer, &topic, rest).await;
    wait_for_log(&config, assigned, before + 1, wait);
    tokio::time::sleep(Duration::from_millis(1000 + rng.next(2000))).await;
    kill(b);
    // The rest is landed by a worker in a fresh group, which reads every partition
    // from the start: what the lake has is skipped, table by table and partition by
    // partition. (A group whose members were all SIGKILLed did not hand its partitions
    // to a new member within 120 s on tansu 0.6.0.)
    let drain = kafka_config_in(&db, &format!("{s}_drain"));
    ok(db.tidemark(&drain, &["run", "--until-caught-up"]));
    let all: Messages = before_alter.iter().chain(&w.msgs).cloned().collect();
    check_landed_with(&db, &w.model, w.versions, true, &all).await;
    // The versions before the column was added do not have it.
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT count(*) FROM {s}_history.invoices WHERE note IS NULL"
        ))
        .await,
        landed_before_alter
    );
    check_dead_letters(&db, &topic).await;
    db.drop().await;
}

/// `topic`'s two bad messages are in `tidemark.dead_letters`, once each: the one
/// that is not JSON, and the one whose value does not fit, naming its table.
async fn check_dead_letters(db: &TestDb, topic: &str) {
    let dead = db
        .sql(&format!(
            "SELECT \"partition\", \"table\", error FROM tidemark.dead_letters WHERE topic = '{topic}' ORDER BY \"offset\""
        ))
        .await;
    let text = deltalake::arrow::util::pretty::pretty_format_batches(&dead)
        .unwrap()
        .to_string();
    assert_eq!(
        dead.iter().map(|b| b.num_rows()).sum::<usize>(),
        2,
        "{text}"
    );
    assert!(text.contains("not a number"), "{text}");
    assert!(
        text.contains(&format!("{}.invoices", db.name)),
        "the unfit value names its table: {text}"
    );
}

/// Wait until `db`'s invoices history has `versions` versions.
async fn wait_for_history(db: &TestDb, versions: i64, timeout: Duration) {
    let s = &db.name;
    let start = std::time::Instant::now();
    let wh = tidemark_lake::Warehouse::new(db.warehouse().to_str().unwrap(), Default::default())
        .unwrap();
    loop {
        // The table appears with the first commit.
        let n = match tidemark_query::Engine::open(&wh).await {
            Ok(e) => match e
                .query(&format!("SELECT count(*) FROM {s}_history.invoices"))
                .await
            {
                Ok(b) => b[0]
                    .column(0)
                    .as_any()
                    .downcast_ref::<deltalake::arrow::array::Int64Array>()
                    .map_or(0, |a| a.value(0)),
                Err(_) => 0,
            },
            Err(_) => 0,
        };
        if n == versions {
            return;
        }
        if n > versions || start.elapsed() >= timeout {
            // The background run's log (if one runs) says why it stopped landing.
            let log = std::fs::read_to_string(db.dir.path().join("run.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "history has {n} versions, waiting for {versions}; the tail of run.log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The same events replayed from JSON-lines files (a backfill from an archived
/// topic): landed once however often the files are read, new files picked up, a bad
/// line kept in the dead letters.
#[tokio::test(flavor = "multi_thread")]
async fn files_of_events_land_once_however_often_they_are_read() {
    let db = invoices_db("files").await;
    let dir = db.dir.path().join("events");
    std::fs::create_dir_all(&dir).unwrap();
    let config = files_config(&db, "backfill", "debezium", &dir.display().to_string(), "");
    let row = |id: i64, total: &str| Row {
        customer: format!("c{id}"),
        total: total.into(),
        issued: 20_000,
        note: None,
    };
    let mut lines = Vec::new();
    for id in 1..=50 {
        lines.push(envelope(
            &db.name,
            "r",
            None,
            Some(image(id, &row(id, "1.00"))),
            4,
            1_767_225_600_000,
        ));
    }
    lines.push("{ not json".to_string());
    for id in 1..=10 {
        lines.push(envelope(
            &db.name,
            "u",
            Some(image(id, &row(id, "1.00"))),
            Some(image(id, &row(id, "2.00"))),
            100 + id as u64,
            1_767_225_601_000 + id,
        ));
    }
    std::fs::write(dir.join("0001.jsonl"), lines.join("\n") + "\n").unwrap();
    let s = &db.name;
    for _ in 0..2 {
        ok(db.tidemark(&config, &["run", "--until-caught-up"]));
        assert_eq!(
            db.sql_i64(&format!("SELECT count(*) FROM {s}_history.invoices"))
                .await,
            60
        );
        assert_eq!(
            db.sql_i64("SELECT count(*) FROM tidemark.dead_letters")
                .await,
            1
        );
    }
    // A second file, in the {"key", "value"} wrapper topic dumps write: a delete.
    let del = envelope(
        &db.name,
        "d",
        Some(image(50, &row(50, "1.00"))),
        None,
        500,
        1_767_225_602_000,
    );
    std::fs::write(
        dir.join("0002.jsonl"),
        format!("{{\"key\": {{\"id\": 50}}, \"value\": {del}}}\n"),
    )
    .unwrap();
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {s}.invoices"))
            .await,
        49
    );
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT count(*) FROM {s}.invoices WHERE total = 2.00"
        ))
        .await,
        10
    );
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {s}_history.invoices"))
            .await,
        60
    );
    let status = ok(db.tidemark(&config, &["status"]));
    assert!(
        status.contains("dead letters: 1 from stream backfill"),
        "{status}"
    );

    // The table changes at the source; the next event carries the new column: the
    // table evolves in place, the rows it had get the column's default as a new
    // version, and the event lands with its own value.
    db.exec("ALTER TABLE invoices ADD COLUMN note VARCHAR(20) NOT NULL DEFAULT 'none'")
        .await;
    let upd = envelope(
        &db.name,
        "u",
        Some(image(1, &row(1, "2.00"))),
        Some(
            r#"{"id": 1, "customer": "c1", "total": "3.00", "issued": 20000, "note": "hello"}"#
                .into(),
        ),
        600,
        1_767_225_603_000,
    );
    std::fs::write(dir.join("0003.jsonl"), upd + "\n").unwrap();
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT count(*) FROM {s}.invoices WHERE note = 'none'"
        ))
        .await,
        48
    );
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT count(*) FROM {s}.invoices WHERE note = 'hello' AND total = 3.00"
        ))
        .await,
        1
    );
    // 60 versions before, one per row for the default, one for the update; the
    // versions before the change have no note.
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {s}_history.invoices"))
            .await,
        60 + 49 + 1
    );
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT count(*) FROM {s}_history.invoices WHERE note IS NULL"
        ))
        .await,
        60
    );
    db.drop().await;
}

/// Files of events under an S3 prefix (the S3-compatible test server that
/// scripts/test.sh starts): read in name order, landed once however often read.
#[tokio::test(flavor = "multi_thread")]
async fn files_of_events_from_an_s3_prefix() {
    use tidemark_lake::object_store::{path::Path as ObjectPath, ObjectStoreExt, PutPayload};
    let endpoint = std::env::var("TIDEMARK_TEST_S3_ENDPOINT").expect(
        "TIDEMARK_TEST_S3_ENDPOINT is not set: run the tests with scripts/test.sh, which starts an S3-compatible server (moto)",
    );
    let db = invoices_db("s3files").await;
    let bucket = "tidemark-events";
    crate::support::create_bucket(&endpoint, bucket);
    let location = format!("s3://{bucket}/dumps/{}/", db.name);
    let options = [
        ("endpoint", endpoint.as_str()),
        ("region", "us-east-1"),
        ("allow_http", "true"),
    ];
    let wh = tidemark_lake::Warehouse::new(
        &location,
        options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .unwrap();
    let (store, prefix) = wh.object_store().unwrap();
    let row = |id: i64, total: &str| Row {
        customer: format!("c{id}"),
        total: total.into(),
        issued: 20_000,
        note: None,
    };
    let snapshot: Vec<String> = (1..=20)
        .map(|id| {
            envelope(
                &db.name,
                "r",
                None,
                Some(image(id, &row(id, "1.00"))),
                4,
                1_767_225_600_000,
            )
        })
        .collect();
    let mut updates: Vec<String> = (1..=5)
        .map(|id| {
            envelope(
                &db.name,
                "u",
                Some(image(id, &row(id, "1.00"))),
                Some(image(id, &row(id, "9.99"))),
                100 + id as u64,
                1_767_225_601_000 + id,
            )
        })
        .collect();
    updates.insert(2, "not an event".into());
    for (name, lines) in [("0001.jsonl", snapshot), ("0002.jsonl", updates)] {
        let path = ObjectPath::from(format!("{prefix}/{name}"));
        store
            .put(&path, PutPayload::from(lines.join("\n") + "\n"))
            .await
            .unwrap();
    }
    let opts: String = options
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\"\n"))
        .collect();
    let config = files_config(
        &db,
        "archive",
        "debezium",
        &location,
        &format!("[streams.archive.storage_options]\n{opts}"),
    );
    let s = &db.name;
    for _ in 0..2 {
        ok(db.tidemark(&config, &["run", "--until-caught-up"]));
        assert_eq!(
            db.sql_i64(&format!("SELECT count(*) FROM {s}_history.invoices"))
                .await,
            25
        );
        assert_eq!(
            db.sql_i64(&format!(
                "SELECT count(*) FROM {s}.invoices WHERE total = 9.99"
            ))
            .await,
            5
        );
        assert_eq!(
            db.sql_i64("SELECT count(*) FROM tidemark.dead_letters WHERE stream = 'archive'")
                .await,
            1
        );
    }
    db.drop().await;
}

/// `sql` with `{s}` standing for `db`'s schema, its result as a table.
async fn pretty_rows(db: &TestDb, sql: &str) -> String {
    let batches = db.sql(&sql.replace("{s}", &db.name)).await;
    deltalake::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

/// AWS DMS records (Kafka target, JSON) from a file: a full load, then an update and
/// a delete from change data capture, with DMS's control record for the table.
#[tokio::test(flavor = "multi_thread")]
async fn dms_events_land_like_debezium_ones() {
    let db = invoices_db("dms").await;
    let dir = db.dir.path().join("dms");
    std::fs::create_dir_all(&dir).unwrap();
    let record = |op: &str, kind: &str, data: &str, ts: &str| {
        format!(
            r#"{{"data": {data}, "metadata": {{"timestamp": "{ts}", "record-type": "{kind}", "operation": "{op}", "partition-key-type": "schema-table", "schema-name": "{}", "table-name": "invoices"}}}}"#,
            db.name
        )
    };
    let lines = [
        format!(
            r#"{{"metadata": {{"timestamp": "2026-01-01T00:00:00Z", "record-type": "control", "operation": "create-table", "partition-key-type": "task-id", "schema-name": "{}", "table-name": "invoices"}}}}"#,
            db.name
        ),
        record(
            "load",
            "data",
            r#"{"id": 1, "customer": "ann", "total": "10.50", "issued": "2026-01-01"}"#,
            "2026-01-01T00:00:01Z",
        ),
        record(
            "load",
            "data",
            r#"{"id": 2, "customer": "bob", "total": "20.00", "issued": "2026-01-02"}"#,
            "2026-01-01T00:00:01Z",
        ),
        record(
            "load",
            "data",
            r#"{"id": 3, "customer": "cy", "total": "30.00", "issued": "2026-01-03"}"#,
            "2026-01-01T00:00:01Z",
        ),
        record(
            "update",
            "data",
            r#"{"id": 2, "customer": "bob", "total": "21.00", "issued": "2026-01-02"}"#,
            "2026-01-02T10:00:00.123456Z",
        ),
        record(
            "delete",
            "data",
            r#"{"id": 3, "customer": "cy", "total": "30.00", "issued": "2026-01-03"}"#,
            "2026-01-02T11:00:00Z",
        ),
    ];
    std::fs::write(dir.join("dms.jsonl"), lines.join("\n") + "\n").unwrap();
    let config = files_config(&db, "dms", "dms", &dir.display().to_string(), "");
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    let s = &db.name;
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {s}.invoices"))
            .await,
        2
    );
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT CAST(total * 100 AS BIGINT) FROM {s}.invoices WHERE id = 2"
        ))
        .await,
        2100
    );
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {s}_history.invoices"))
            .await,
        4
    );
    // The history knows when the update happened at the source.
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT count(*) FROM {s}.invoices FOR SYSTEM_TIME AS OF TIMESTAMP '2026-01-02 10:30:00' WHERE total = 21.00"
        ))
        .await,
        1
    );
    // The same changes as Debezium events (what Debezium would have published for
    // them), landed into a twin database: the same current rows and the same
    // history. (Debezium's times are milliseconds, DMS's microseconds.)
    let twin = invoices_db("dmstwin").await;
    let t = twin.name.clone();
    let tdir = twin.dir.path().join("debezium");
    std::fs::create_dir_all(&tdir).unwrap();
    let img = |id: i64, c: &str, total: &str, day: i32| {
        Some(format!(
            r#"{{"id": {id}, "customer": "{c}", "total": "{total}", "issued": {day}}}"#
        ))
    };
    let load = 1_767_225_601_000;
    let dbz = [
        envelope(&t, "r", None, img(1, "ann", "10.50", 20454), 4, load),
        envelope(&t, "r", None, img(2, "bob", "20.00", 20455), 4, load),
        envelope(&t, "r", None, img(3, "cy", "30.00", 20456), 4, load),
        envelope(
            &t,
            "u",
            img(2, "bob", "20.00", 20455),
            img(2, "bob", "21.00", 20455),
            100,
            1_767_348_000_123,
        ),
        envelope(
            &t,
            "d",
            img(3, "cy", "30.00", 20456),
            None,
            200,
            1_767_351_600_000,
        ),
    ];
    std::fs::write(tdir.join("dbz.jsonl"), dbz.join("\n") + "\n").unwrap();
    let tconfig = files_config(&twin, "dbz", "debezium", &tdir.display().to_string(), "");
    ok(twin.tidemark(&tconfig, &["run", "--until-caught-up"]));
    let current = "SELECT id, customer, CAST(total AS VARCHAR) AS total, issued FROM {s}.invoices ORDER BY id";
    let history = "SELECT id, _op, date_trunc('millisecond', _valid_from) AS valid_from, date_trunc('millisecond', _valid_to) AS valid_to, customer, CAST(total AS VARCHAR) AS total, issued FROM {s}_history.invoices ORDER BY id, _valid_from";
    for q in [current, history] {
        assert_eq!(
            pretty_rows(&db, q).await,
            pretty_rows(&twin, q).await,
            "DMS (left) and Debezium (right) land the same rows: {q}"
        );
    }
    twin.drop().await;
    db.drop().await;
}

/// A Debezium envelope from `server_id` at binlog `file:pos`, in transaction `gtid`.
#[allow(clippy::too_many_arguments)]
fn envelope_from(
    db: &str,
    op: &str,
    before: Option<String>,
    after: Option<String>,
    server_id: u64,
    gtid: Option<&str>,
    file: &str,
    pos: u64,
    ts_ms: i64,
) -> String {
    let snapshot = if op == "r" { "true" } else { "false" };
    let gtid = gtid.map_or("null".to_string(), |g| format!("\"{g}\""));
    format!(
        r#"{{"before": {}, "after": {}, "source": {{"version": "2.7.0.Final", "connector": "mysql", "name": "shop", "ts_ms": {ts_ms}, "snapshot": "{snapshot}", "db": "{db}", "table": "invoices", "server_id": {server_id}, "gtid": {gtid}, "file": "{file}", "pos": {pos}, "row": 0}}, "op": "{op}", "ts_ms": {ts_ms}}}"#,
        before.as_deref().unwrap_or("null"),
        after.as_deref().unwrap_or("null"),
    )
}

/// Issue 14, item 3: Debezium follows a failover to a new primary (Aurora, RDS) whose
/// binlog files are numbered lower than the old one's. With GTIDs the re-sent change
/// is skipped and every new one lands; without GTIDs the run stops with an error
/// naming the partition and both positions, and lands nothing it cannot order.
#[tokio::test]
async fn a_failover_to_a_server_with_lower_binlog_numbers_loses_nothing() {
    let uuid1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let uuid2 = "4f22fa47-71ca-11e1-9e33-c80aa9429562";
    let row = |id: i64, total: &str| Row {
        customer: format!("c{id}"),
        total: total.into(),
        issued: 20_000,
        note: None,
    };
    // (server, gtid, file, pos, id, old total, new total); id 0: a snapshot read.
    let lines = |db: &str, gtids: bool| {
        let mut out = Vec::new();
        for id in 1..=5 {
            out.push(envelope_from(
                db,
                "r",
                None,
                Some(image(id, &row(id, "1.00"))),
                1,
                None,
                "mysql-bin.000042",
                4,
                1_767_225_600_000,
            ));
        }
        let changes: [(u64, String, &str, u64, i64, &str, &str); 6] = [
            (
                1,
                format!("{uuid1}:11"),
                "mysql-bin.000042",
                101,
                1,
                "1.00",
                "2.00",
            ),
            (
                1,
                format!("{uuid1}:12"),
                "mysql-bin.000042",
                102,
                2,
                "1.00",
                "2.00",
            ),
            (
                1,
                format!("{uuid1}:13"),
                "mysql-bin.000042",
                103,
                3,
                "1.00",
                "2.00",
            ),
            // The failover: the new primary re-sends a transaction it had from the
            // old one (the connector's offset lagged)…
            (
                2,
                format!("{uuid1}:12"),
                "mysql-bin.000002",
                50,
                2,
                "1.00",
                "2.00",
            ),
            // …then its own.
            (
                2,
                format!("{uuid2}:1"),
                "mysql-bin.000002",
                60,
                4,
                "1.00",
                "3.00",
            ),
            (
                2,
                format!("{uuid2}:2"),
                "mysql-bin.000002",
                70,
                5,
                "1.00",
                "3.00",
            ),
        ];
        for (i, (server, gtid, file, pos, id, old, new)) in changes.into_iter().enumerate() {
            out.push(envelope_from(
                db,
                "u",
                Some(image(id, &row(id, old))),
                Some(image(id, &row(id, new))),
                server,
                gtids.then_some(gtid.as_str()),
                file,
                pos,
                1_767_225_601_000 + i as i64,
            ));
        }
        out.join("\n") + "\n"
    };

    // With GTIDs.
    let db = invoices_db("failover").await;
    let dir = db.dir.path().join("events");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0001.jsonl"), lines(&db.name, true)).unwrap();
    let config = files_config(&db, "cdc", "debezium", &dir.display().to_string(), "");
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    let s = &db.name;
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {s}_history.invoices"))
            .await,
        10,
        "5 snapshot reads and 5 changes; the re-sent one once"
    );
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT count(*) FROM {s}.invoices WHERE total = 3.00"
        ))
        .await,
        2,
        "the new primary's changes landed"
    );
    db.drop().await;

    // Without GTIDs: positions of two servers cannot be compared.
    let db = invoices_db("failover_nogtid").await;
    let dir = db.dir.path().join("events");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0001.jsonl"), lines(&db.name, false)).unwrap();
    let config = files_config(&db, "cdc", "debezium", &dir.display().to_string(), "");
    let out = db.tidemark(&config, &["run", "--until-caught-up"]);
    let text = crate::support::text(&out);
    assert!(
        !out.status.success(),
        "must not finish as if all landed:\n{text}"
    );
    for want in [
        "partition 0001.jsonl",
        "server 2 binlog mysql-bin.000002:50:0",
        "server 1 binlog mysql-bin.000042:103:0",
        "gtid_mode=ON",
        "another server, and no GTIDs to order by",
    ] {
        assert!(text.contains(want), "the error names {want}:\n{text}");
    }
    // Nothing from the unorderable change on landed (what came before may have, or
    // lands when the run is resumed: it is not lost either way).
    let s = &db.name;
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT count(*) FROM {s}.invoices WHERE total = 3.00"
        ))
        .await,
        0
    );
    db.drop().await;
}

/// Issue 14, item 2: a worker frozen (SIGSTOP) past its group session while holding
/// rows of its partitions, whose partitions another worker takes and lands, must not
/// land those rows again, nor move a partition's committed offset back, when it
/// wakes up (SIGCONT) before it hears of the revoke.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_frozen_past_its_session_is_fenced() {
    let db = invoices_db("fenced").await;
    let s = db.name.clone();
    let topic = format!("shop.{s}.invoices");
    create_topic(&topic, 2).await;
    let config = kafka_config(&db);
    // Worker a holds what it reads for 8 s before landing it: it is frozen with rows
    // pending. Its config and log live in a directory of their own.
    let a_dir = db.dir.path().join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    let a_config = a_dir.join("tidemark.toml");
    std::fs::write(
        &a_config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("flush_interval_ms = 100", "flush_interval_ms = 8000")
            .replace("flush_rows = 300", "flush_rows = 1000000"),
    )
    .unwrap();
    let mut rng = Lcg(u64::from(std::process::id()) ^ 0xfe9ce);
    let mut w = Workload::new(&s, 2);
    w.snapshot(&mut rng, 100);
    let first = std::mem::take(&mut w.msgs);
    let landed_first = w.versions;
    w.changes(&mut rng, 300, None);
    let second = w.msgs.clone();

    let producer = producer();
    let wait = Duration::from_secs(120);
    let a = spawn_run_with(&a_config, &[]);
    wait_for_log(
        &a_config,
        "\"partitions assigned\",\"partitions\":2",
        1,
        wait,
    );
    produce(&producer, &topic, &first).await;
    wait_for_history(&db, landed_first, wait).await;
    // a reads the second lot and holds it (its flush is 8 s away); freeze it.
    produce(&producer, &topic, &second).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signal = |sig: &str, pid: u32| {
        let st = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill {sig} {pid}");
    };
    signal("-STOP", a.id());
    crate::support::record_fault("sigstop", "Kafka worker past its session");
    // b joins; once a's session (6 s) expires, the group gives b both partitions and
    // b lands the second lot from the group's offsets.
    let b = spawn_run_with(&config, &[]);
    wait_for_history(&db, w.versions, wait).await;
    // a wakes up with its rows, its flush long due. Which comes first is a race:
    // its flush (then the fence drops its rows) or librdkafka noticing the expired
    // session (then the revoke drops them). Either way nothing may land twice; the
    // test below fences deterministically.
    signal("-CONT", a.id());
    let start = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(a_dir.join("run.log")).unwrap_or_default();
        let after = log.matches("\"committed\"").count() > 0
            && (log.contains("another worker landed this partition meanwhile")
                || log.matches("partitions revoked").count() > 0);
        if after {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "a neither fenced nor revoked after SIGCONT:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill(a);
    kill(b);
    // Nothing doubled, nothing lost, and a fresh group finds nothing left to land.
    let drain = kafka_config_in(&db, &format!("{s}_drain"));
    ok(db.tidemark(&drain, &["run", "--until-caught-up"]));
    let all: Messages = first.iter().chain(&second).cloned().collect();
    check_landed_with(&db, &w.model, w.versions, false, &all).await;
    db.drop().await;
}

/// A topic deleted and created again (or a broker that lost messages) starts its
/// offsets again: the lake's positions must not take its new messages for ones
/// already landed. The stream stops, naming the partition and both offsets.
#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_topic_is_not_taken_for_landed_messages() {
    let db = invoices_db("recreated").await;
    let s = db.name.clone();
    let topic = format!("shop.{s}.invoices");
    create_topic(&topic, 1).await;
    let config = kafka_config(&db);
    let mut rng = Lcg(u64::from(std::process::id()) ^ 0x7e5e7);
    let mut w = Workload::new(&s, 1);
    w.snapshot(&mut rng, 20);
    let producer = producer();
    produce(&producer, &topic, &w.msgs).await;
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {s}.invoices"))
            .await,
        20
    );
    // The topic goes and comes back; its first messages get offsets 0, 1, 2 again.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .create()
        .unwrap();
    for r in admin
        .delete_topics(&[topic.as_str()], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap_or_else(|(t, e)| panic!("delete topic {t}: {e}"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    create_topic(&topic, 1).await;
    w.msgs.clear();
    w.changes(&mut rng, 3, None);
    produce(&producer, &topic, &w.msgs).await;
    let out = db.tidemark(&config, &["run", "--until-caught-up"]);
    let t = crate::support::text(&out);
    assert!(
        !out.status.success(),
        "must not finish as if caught up:\n{t}"
    );
    assert!(
        t.contains(&format!("partition {topic}/0"))
            && t.contains("has landed this partition up to offset 20")
            && t.contains("now ends at offset")
            && t.contains("deleted and created again"),
        "{t}"
    );
    db.drop().await;
}

/// Issue 14, item 2, deterministically: two workers that each believe a partition is
/// theirs (here: two consumer groups over one topic and one warehouse, as a worker
/// whose session expired unnoticed is) land into the same table. Each commit checks
/// that the partitions it carries still have the offsets it last saw; the loser is
/// fenced, drops its rows, adopts the winner's progress and reads on from there. Every
/// change lands once.
#[tokio::test(flavor = "multi_thread")]
async fn two_workers_owning_one_partition_are_fenced_from_each_other() {
    let db = invoices_db("twoowners").await;
    let s = db.name.clone();
    let topic = format!("shop.{s}.invoices");
    create_topic(&topic, 2).await;
    let mut rng = Lcg(u64::from(std::process::id()) ^ 0x2_0e_5e);
    let mut w = Workload::new(&s, 2);
    w.snapshot(&mut rng, 100);
    w.changes(&mut rng, 600, None);
    let a_cfg = kafka_config_in(&db, &format!("{s}_a"));
    let a_dir = db.dir.path().join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    let a_config = a_dir.join("tidemark.toml");
    std::fs::copy(&a_cfg, &a_config).unwrap();
    let b_config = kafka_config_in(&db, &format!("{s}_b"));
    let wait = Duration::from_secs(120);
    // The table exists before both start, so both open it at their first message and
    // hold rows of the same partitions at once (otherwise the one that opens late
    // finds everything landed and has nothing to be fenced from).
    let producer = producer();
    let (head, rest) = w.msgs.split_at(2);
    produce(&producer, &topic, head).await;
    let seed = kafka_config_in(&db, &format!("{s}_seed"));
    ok(db.tidemark(&seed, &["run", "--until-caught-up"]));
    let a = spawn_run_with(&a_config, &[]);
    let b = spawn_run_with(&b_config, &[]);
    wait_for_log(&a_config, "\"partitions assigned\"", 1, wait);
    wait_for_log(&b_config, "\"partitions assigned\"", 1, wait);
    produce(&producer, &topic, rest).await;
    wait_for_history(&db, w.versions, wait).await;
    // Let both settle: a late double landing would show here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    kill(a);
    kill(b);
    // Exactly once is the promise; on the old code both workers landed every change.
    check_landed_with(&db, &w.model, w.versions, false, &w.msgs).await;
    let logs = [a_config.clone(), b_config.clone()]
        .iter()
        .map(|c| std::fs::read_to_string(c.with_file_name("run.log")).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        logs.contains("another worker landed this partition meanwhile"),
        "neither worker was fenced (both held rows of the same partitions):\n{logs}"
    );
    db.drop().await;
}

/// A Kafka-protocol broker of this test's own whose log outlives it (tansu on S3
/// storage in the test S3 server), so it can be restarted mid-stream.
struct OwnBroker {
    port: u16,
    storage: String,
    endpoint: String,
    child: Option<std::process::Child>,
}

impl OwnBroker {
    fn tansu() -> std::path::PathBuf {
        let home = std::env::var("HOME").unwrap_or_default();
        let installed = std::path::Path::new(&home).join(".cargo/bin/tansu");
        if installed.exists() {
            return installed;
        }
        std::path::PathBuf::from("tansu")
    }

    fn new(bucket: &str) -> Self {
        let endpoint = std::env::var("TIDEMARK_TEST_S3_ENDPOINT").expect(
            "TIDEMARK_TEST_S3_ENDPOINT is not set: run the tests with scripts/test.sh (the restarted broker keeps its log in the test S3 server)",
        );
        crate::support::create_bucket(&endpoint, bucket);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut b = Self {
            port,
            storage: format!("s3://{bucket}/"),
            endpoint,
            child: None,
        };
        b.start();
        b
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = std::process::Command::new(Self::tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.storage])
            .env("AWS_ENDPOINT", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tansu (scripts/test.sh installs it)");
        self.child = Some(child);
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(self.address()).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tansu did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Issue 14, item 10: the broker restarts mid-stream (its log kept). The worker
/// rides it out and every change lands once.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let db = invoices_db("brokerrestart").await;
    let s = db.name.clone();
    let mut broker = OwnBroker::new(&format!("tansu-{}", std::process::id()));
    let topic = format!("shop.{s}.invoices");
    create_topic_on(&broker.address(), &topic, 2).await;
    let config = kafka_config_on(&db, &s, &broker.address());
    let mut rng = Lcg(u64::from(std::process::id()) ^ 0xb40c);
    let mut w = Workload::new(&s, 2);
    w.snapshot(&mut rng, 100);
    w.changes(&mut rng, 300, None);
    let first = std::mem::take(&mut w.msgs);
    let landed_first = w.versions;
    w.changes(&mut rng, 300, None);
    let second = w.msgs.clone();
    let wait = Duration::from_secs(120);
    let run = spawn_run_with(&config, &[]);
    wait_for_log(&config, "\"partitions assigned\"", 1, wait);
    produce(&producer_on(&broker.address()), &topic, &first).await;
    wait_for_history(&db, landed_first, wait).await;
    crate::support::record_fault("restart", "Kafka broker mid-stream");
    broker.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.start();
    produce(&producer_on(&broker.address()), &topic, &second).await;
    wait_for_history(&db, w.versions, wait).await;
    kill(run);
    let all: Messages = first.iter().chain(&second).cloned().collect();
    check_landed_with(&db, &w.model, w.versions, false, &all).await;
    db.drop().await;
}

/// A Debezium truncate (`op = t`) in a stream closes every row once, however often
/// the stream is read.
#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_truncate_closes_every_row_once() {
    let db = invoices_db("streamtrunc").await;
    let dir = db.dir.path().join("events");
    std::fs::create_dir_all(&dir).unwrap();
    let config = files_config(&db, "backfill", "debezium", &dir.display().to_string(), "");
    let row = |id: i64| Row {
        customer: format!("c{id}"),
        total: "1.00".into(),
        issued: 20_000,
        note: None,
    };
    let mut lines: Vec<String> = (1..=5)
        .map(|id| {
            envelope(
                &db.name,
                "r",
                None,
                Some(image(id, &row(id))),
                4,
                1_767_225_600_000,
            )
        })
        .collect();
    lines.push(envelope(&db.name, "t", None, None, 200, 1_767_225_601_000));
    lines.push(envelope(
        &db.name,
        "c",
        None,
        Some(image(9, &row(9))),
        300,
        1_767_225_602_000,
    ));
    std::fs::write(dir.join("0001.jsonl"), lines.join("\n") + "\n").unwrap();
    let s = &db.name;
    for _ in 0..2 {
        ok(db.tidemark(&config, &["run", "--until-caught-up"]));
        assert_eq!(
            db.sql_i64(&format!("SELECT count(*) FROM {s}.invoices"))
                .await,
            1
        );
        assert_eq!(
            db.sql_i64(&format!(
                "SELECT count(*) FROM {s}_history.invoices WHERE _valid_to IS NOT NULL"
            ))
            .await,
            5,
            "the five rows are closed, once"
        );
        assert_eq!(
            db.sql_i64(&format!("SELECT count(*) FROM {s}_history.invoices"))
                .await,
            6
        );
    }
    db.drop().await;
}
