//! Issue 21: a Kafka stream whose messages define their tables, with no MySQL
//! source in its config.
//!
//! The same changes are made twice: as SQL on the real MariaDB (captured from its
//! binlog into one warehouse), and as the Debezium messages the connector would have
//! written for them (JSON with schemas, produced to the real broker, landed into a
//! second warehouse by a config that names no source). The table changes shape
//! three times mid-stream: a column added with a default, that column widened, and
//! another column dropped. Both warehouses must hold the same rows, current and
//! history (every version, the added column's default versions included), with the
//! stream restarted halfway. A message of another table without a schema becomes a
//! dead letter that says what to configure, and the other tables keep flowing. The
//! Avro leg writes its messages with Confluent's own AvroSerializer (PyPI
//! `confluent-kafka`), registering each schema version in the test registry. Last,
//! a message whose schema lost one column and gained another (a rename, or a drop
//! and an add: the messages cannot say) is refused as a dead letter, and the table
//! stays as it was.

use std::path::{Path, PathBuf};

use tidemark_capture::rdkafka::producer::FutureRecord;

use crate::streams::{broker, create_topic, producer};
use crate::support::{ok, rows_of, tidemark, Lcg, TestDb};

/// The table's shape at the source as the stream goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    /// id, name, price DECIMAL(10,2), born DATE, seen DATETIME(6), state ENUM.
    First,
    /// + qty INT NOT NULL DEFAULT 5.
    Qty,
    /// qty widened to BIGINT.
    Wide,
    /// born dropped.
    NoBorn,
}

#[derive(Debug, Clone)]
struct Item {
    name: String,
    cents: i64,
    born: i32,
    seen_us: i64,
    state: &'static str,
    qty: i64,
}

/// Minimal big-endian two's complement bytes of `v`, base64: Debezium's Decimal.
fn decimal_b64(v: i64) -> String {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    base64(&bytes[start..])
}

fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The Connect schema of the row struct in `shape`.
fn row_schema(shape: Shape, db: &str, field: &str) -> String {
    let mut cols = vec![
        r#"{"type":"int32","optional":false,"field":"id"}"#.to_string(),
        r#"{"type":"string","optional":true,"field":"name"}"#.to_string(),
        r#"{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"price"}"#.to_string(),
    ];
    if shape != Shape::NoBorn {
        cols.push(
            r#"{"type":"int32","optional":true,"name":"io.debezium.time.Date","version":1,"field":"born"}"#
                .into(),
        );
    }
    cols.push(r#"{"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"seen"}"#.into());
    cols.push(r#"{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"open,closed"},"field":"state"}"#.into());
    match shape {
        Shape::First => {}
        Shape::Qty => {
            cols.push(r#"{"type":"int32","optional":false,"default":5,"field":"qty"}"#.into())
        }
        Shape::Wide | Shape::NoBorn => {
            cols.push(r#"{"type":"int64","optional":false,"default":5,"field":"qty"}"#.into())
        }
    }
    format!(
        r#"{{"type":"struct","fields":[{}],"optional":true,"name":"shop.{db}.items.Value","field":"{field}"}}"#,
        cols.join(",")
    )
}

/// The row image in `shape` (`None`: null), the price written as `price` encodes
/// it (each converter writes decimals its own way).
fn image(shape: Shape, id: i64, r: Option<&Item>, price: fn(i64) -> String) -> String {
    let Some(r) = r else {
        return "null".to_string();
    };
    let mut f = vec![
        format!(r#""id":{id}"#),
        format!(r#""name":"{}""#, r.name),
        format!(r#""price":{}"#, price(r.cents)),
    ];
    if shape != Shape::NoBorn {
        f.push(format!(r#""born":{}"#, r.born));
    }
    f.push(format!(r#""seen":{}"#, r.seen_us));
    f.push(format!(r#""state":"{}""#, r.state));
    if shape != Shape::First {
        f.push(format!(r#""qty":{}"#, r.qty));
    }
    format!("{{{}}}", f.join(","))
}

/// A Debezium change message with schemas (key, value).
#[allow(clippy::too_many_arguments)]
fn message(
    shape: Shape,
    db: &str,
    op: &str,
    id: i64,
    before: Option<&Item>,
    after: Option<&Item>,
    pos: u64,
    ts_ms: i64,
) -> (String, String) {
    let key = format!(
        r#"{{"schema":{{"type":"struct","fields":[{{"type":"int32","optional":false,"field":"id"}}],"optional":false,"name":"shop.{db}.items.Key"}},"payload":{{"id":{id}}}}}"#
    );
    let source_schema = r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},{"type":"string","optional":false,"field":"connector"},{"type":"string","optional":false,"field":"name"},{"type":"int64","optional":false,"field":"ts_ms"},{"type":"string","optional":true,"field":"snapshot"},{"type":"string","optional":false,"field":"db"},{"type":"string","optional":true,"field":"table"},{"type":"int64","optional":false,"field":"server_id"},{"type":"string","optional":true,"field":"gtid"},{"type":"string","optional":false,"field":"file"},{"type":"int64","optional":false,"field":"pos"},{"type":"int32","optional":false,"field":"row"}],"optional":false,"name":"io.debezium.connector.mysql.Source","field":"source"}"#;
    let schema = format!(
        r#"{{"type":"struct","fields":[{},{},{source_schema},{{"type":"string","optional":false,"field":"op"}},{{"type":"int64","optional":true,"field":"ts_ms"}}],"optional":false,"name":"shop.{db}.items.Envelope","version":1}}"#,
        row_schema(shape, db, "before"),
        row_schema(shape, db, "after"),
    );
    // The JSON converter's Decimal: base64 of the unscaled value.
    let img = |r| image(shape, id, r, |cents| format!(r#""{}""#, decimal_b64(cents)));
    let payload = format!(
        r#"{{"before":{},"after":{},"source":{{"version":"2.7.0.Final","connector":"mysql","name":"shop","ts_ms":{ts_ms},"snapshot":"false","db":"{db}","table":"items","server_id":1,"gtid":null,"file":"mysql-bin.000003","pos":{pos},"row":0}},"op":"{op}","ts_ms":{ts_ms}}}"#,
        img(before),
        img(after)
    );
    (key, format!(r#"{{"schema":{schema},"payload":{payload}}}"#))
}

/// The Avro schema of the row record in `shape`, written as Debezium's Avro
/// converter writes it (Confluent's `connect.*` properties).
fn avro_row_schema(shape: Shape) -> String {
    let opt =
        |name: &str, t: &str| format!(r#"{{"name":"{name}","type":["null",{t}],"default":null}}"#);
    let mut cols = vec![
        r#"{"name":"id","type":"int"}"#.to_string(),
        opt("name", r#""string""#),
        opt(
            "price",
            r#"{"type":"bytes","scale":2,"precision":10,"connect.version":1,"connect.parameters":{"scale":"2","connect.decimal.precision":"10"},"connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}"#,
        ),
    ];
    if shape != Shape::NoBorn {
        cols.push(opt(
            "born",
            r#"{"type":"int","connect.version":1,"connect.name":"io.debezium.time.Date"}"#,
        ));
    }
    cols.push(opt(
        "seen",
        r#"{"type":"long","connect.version":1,"connect.name":"io.debezium.time.MicroTimestamp"}"#,
    ));
    cols.push(opt("state", r#"{"type":"string","connect.version":1,"connect.parameters":{"allowed":"open,closed"},"connect.name":"io.debezium.data.Enum"}"#));
    match shape {
        Shape::First => {}
        Shape::Qty => cols
            .push(r#"{"name":"qty","type":{"type":"int","connect.default":5},"default":5}"#.into()),
        Shape::Wide | Shape::NoBorn => cols.push(
            r#"{"name":"qty","type":{"type":"long","connect.default":5},"default":5}"#.into(),
        ),
    }
    format!(
        r#"{{"type":"record","name":"Value","fields":[{}],"connect.name":"avro.items.Value"}}"#,
        cols.join(",")
    )
}

/// `avro_produce.py` lines naming the key schema and each shape's envelope schema.
fn avro_defines() -> Vec<String> {
    let mut out = vec![r#"{"define":"key","schema":{"type":"record","name":"Key","namespace":"avro.items","fields":[{"name":"id","type":"int"}],"connect.name":"avro.items.Key"}}"#.to_string()];
    let source = r#"{"type":"record","name":"Source","namespace":"io.debezium.connector.mysql","fields":[{"name":"version","type":"string"},{"name":"connector","type":"string"},{"name":"name","type":"string"},{"name":"ts_ms","type":"long"},{"name":"snapshot","type":["null","string"],"default":null},{"name":"db","type":"string"},{"name":"table","type":["null","string"],"default":null},{"name":"server_id","type":"long"},{"name":"gtid","type":["null","string"],"default":null},{"name":"file","type":"string"},{"name":"pos","type":"long"},{"name":"row","type":"int"}],"connect.name":"io.debezium.connector.mysql.Source"}"#;
    for shape in [Shape::First, Shape::Qty, Shape::Wide, Shape::NoBorn] {
        out.push(format!(
            r#"{{"define":"{shape:?}","schema":{{"type":"record","name":"Envelope","namespace":"avro.items","fields":[{{"name":"before","type":["null",{}],"default":null}},{{"name":"after","type":["null","Value"],"default":null}},{{"name":"source","type":{source}}},{{"name":"op","type":"string"}},{{"name":"ts_ms","type":["null","long"],"default":null}}],"connect.name":"avro.items.Envelope"}}}}"#,
            avro_row_schema(shape)
        ));
    }
    out
}

/// One `avro_produce.py` message line (values plain; the decimal marked).
#[allow(clippy::too_many_arguments)]
fn avro_message(
    shape: Shape,
    db: &str,
    op: &str,
    id: i64,
    before: Option<&Item>,
    after: Option<&Item>,
    pos: u64,
    ts_ms: i64,
) -> String {
    // avro_produce.py's marker for a decimal.Decimal.
    let img = |r| {
        image(shape, id, r, |cents| {
            format!(r#"{{"$decimal":"{}.{:02}"}}"#, cents / 100, cents % 100)
        })
    };
    format!(
        r#"{{"topic":"TOPIC","key_schema":"key","key":{{"id":{id}}},"value_schema":"{shape:?}","value":{{"before":{},"after":{},"source":{{"version":"2.7.0.Final","connector":"mysql","name":"shop","ts_ms":{ts_ms},"snapshot":"false","db":"{db}","table":"items","server_id":1,"gtid":null,"file":"mysql-bin.000003","pos":{pos},"row":0}},"op":"{op}","ts_ms":{ts_ms}}}}}"#,
        img(before),
        img(after)
    )
}

/// The SQL literal of a row's values in `shape` (columns in the table's order).
fn values(shape: Shape, id: i64, r: &Item) -> String {
    let mut v = vec![
        id.to_string(),
        format!("'{}'", r.name),
        format!("{}.{:02}", r.cents / 100, r.cents % 100),
    ];
    if shape != Shape::NoBorn {
        v.push(format!("DATE_ADD('1970-01-01', INTERVAL {} DAY)", r.born));
    }
    v.push(format!(
        "TIMESTAMPADD(MICROSECOND, {}, '1970-01-01 00:00:00')",
        r.seen_us
    ));
    v.push(format!("'{}'", r.state));
    if shape != Shape::First {
        v.push(r.qty.to_string());
    }
    v.join(", ")
}

/// The changes, as SQL statements for the source and messages for the topic, in
/// source order. A `None` message is a DDL statement (the connector's schema-change
/// topic is not read; the next change message carries the new shape).
struct Script {
    steps: Vec<(String, Option<Msg>)>,
}

/// One change's message: JSON with schemas (key, value), and the Avro producer's line.
struct Msg {
    json: (String, String),
    avro: String,
}

fn script(db: &str, rng: &mut Lcg) -> Script {
    let mut rows: std::collections::BTreeMap<i64, Item> = Default::default();
    let mut steps = Vec::new();
    let (mut pos, mut ts, mut next_id) = (4u64, 1_767_225_600_000i64, 1i64);
    let phases = [
        (Shape::First, None, 60),
        (
            Shape::Qty,
            Some("ALTER TABLE items ADD COLUMN qty INT NOT NULL DEFAULT 5"),
            60,
        ),
        (
            Shape::Wide,
            Some("ALTER TABLE items MODIFY qty BIGINT NOT NULL DEFAULT 5"),
            40,
        ),
        (
            Shape::NoBorn,
            Some("ALTER TABLE items DROP COLUMN born"),
            40,
        ),
    ];
    for (shape, ddl, n) in phases {
        if let Some(ddl) = ddl {
            steps.push((ddl.to_string(), None));
            for r in rows.values_mut() {
                r.qty = 5;
            }
        }
        for _ in 0..n {
            pos += 100;
            ts += 7;
            let choice = rng.next(10);
            if choice < 4 || rows.is_empty() {
                let id = next_id;
                next_id += 1;
                let r = Item {
                    name: format!("item {id}"),
                    cents: rng.next(1_000_000) as i64,
                    born: 18_000 + rng.next(3000) as i32,
                    seen_us: 1_700_000_000_000_000 + rng.next(1 << 40) as i64,
                    state: if rng.next(2) == 0 { "open" } else { "closed" },
                    qty: 5 + rng.next(100) as i64,
                };
                let sql = format!("INSERT INTO items VALUES ({})", values(shape, id, &r));
                let msg = Msg {
                    json: message(shape, db, "c", id, None, Some(&r), pos, ts),
                    avro: avro_message(shape, db, "c", id, None, Some(&r), pos, ts),
                };
                steps.push((sql, Some(msg)));
                rows.insert(id, r);
            } else {
                let ids: Vec<i64> = rows.keys().copied().collect();
                let id = ids[rng.next(ids.len() as u64) as usize];
                let old = rows[&id].clone();
                if choice == 9 {
                    let msg = Msg {
                        json: message(shape, db, "d", id, Some(&old), None, pos, ts),
                        avro: avro_message(shape, db, "d", id, Some(&old), None, pos, ts),
                    };
                    steps.push((format!("DELETE FROM items WHERE id = {id}"), Some(msg)));
                    rows.remove(&id);
                } else {
                    let r = Item {
                        cents: rng.next(1_000_000) as i64,
                        state: if old.state == "open" {
                            "closed"
                        } else {
                            "open"
                        },
                        qty: if shape == Shape::First {
                            old.qty
                        } else {
                            old.qty + 1
                        },
                        ..old.clone()
                    };
                    let mut sets = vec![
                        format!("price = {}.{:02}", r.cents / 100, r.cents % 100),
                        format!("state = '{}'", r.state),
                    ];
                    if shape != Shape::First {
                        sets.push(format!("qty = {}", r.qty));
                    }
                    let sql = format!("UPDATE items SET {} WHERE id = {id}", sets.join(", "));
                    let msg = Msg {
                        json: message(shape, db, "u", id, Some(&old), Some(&r), pos, ts),
                        avro: avro_message(shape, db, "u", id, Some(&old), Some(&r), pos, ts),
                    };
                    steps.push((sql, Some(msg)));
                    rows.insert(id, r);
                }
            }
        }
    }
    Script { steps }
}

/// A query's rows, as text, from the warehouse at `wh`.
async fn rows_at(wh: &Path, sql: &str) -> Vec<String> {
    let wh = tidemark_lake::Warehouse::new(wh.to_str().unwrap(), Default::default()).unwrap();
    let engine = tidemark_query::Engine::open(&wh)
        .await
        .expect("open warehouse");
    let batches = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows_of(&batches)
}

/// The config of a Kafka stream that names no MySQL source: topics `^{prefix}.<db>.`,
/// landing into `wh`; `extra` is appended to the stream's table.
fn stream_config(db: &TestDb, prefix: &str, wh: &Path, extra: &str) -> PathBuf {
    let path = db.dir.path().join(format!("{prefix}.toml"));
    std::fs::write(
        &path,
        format!(
            "[environments.dev]\nwarehouse = \"{}\"\n\n[streams.events]\nkind = \"kafka\"\nformat = \"debezium\"\nbrokers = \"{}\"\ntopics = [\"^{prefix}\\\\.{}\\\\..*\"]\ngroup_id = \"{}-{prefix}\"\ndatabases = [\"{}\"]\nflush_interval_ms = 100\n{extra}\n",
            wh.display(),
            broker(),
            db.name,
            db.name,
            db.name,
        ),
    )
    .unwrap();
    path
}

/// Produce `lines` (an `avro_produce.py` script) with Confluent's AvroSerializer,
/// registering the schemas in the test registry.
fn produce_avro(dir: &Path, topic: &str, lines: &[String]) {
    let file = dir.join("avro-input.jsonl");
    let mut text = avro_defines().join("\n");
    for l in lines {
        text.push('\n');
        text.push_str(&l.replace("TOPIC", topic));
    }
    std::fs::write(&file, text).unwrap();
    let python = std::env::var("TIDEMARK_TEST_PYTHON")
        .expect("TIDEMARK_TEST_PYTHON is not set: run the tests with scripts/test.sh");
    let out = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/avro_produce.py"
        ))
        .args(["--bootstrap", &broker(), "--registry", &registry()])
        .arg(&file)
        .output()
        .expect("run avro_produce.py");
    assert!(
        out.status.success(),
        "avro_produce.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test schema registry (scripts/schema_registry.py, started by scripts/test.sh).
fn registry() -> String {
    std::env::var("TIDEMARK_TEST_REGISTRY").expect(
        "TIDEMARK_TEST_REGISTRY is not set: run the tests with scripts/test.sh, which starts the schema registry stand-in",
    )
}

/// Both warehouses hold what binlog capture landed from the same changes.
async fn same_as_binlog(db: &TestDb, wh: &Path, what: &str) {
    let s = db.name.to_lowercase();
    let history = format!(
        "SELECT id, name, CAST(price AS VARCHAR), born, seen, state, qty, _op FROM {s}_history.items"
    );
    let current =
        format!("SELECT id, name, CAST(price AS VARCHAR), seen, state, qty FROM {s}.items");
    let want_history = rows_at(&db.warehouse(), &history).await;
    assert!(want_history.len() > 100, "{}", want_history.len());
    let got_history = rows_at(wh, &history).await;
    if got_history != want_history {
        let only_want: Vec<_> = want_history
            .iter()
            .filter(|r| !got_history.contains(r))
            .take(10)
            .collect();
        let only_got: Vec<_> = got_history
            .iter()
            .filter(|r| !want_history.contains(r))
            .take(10)
            .collect();
        panic!(
            "{what}: history differs from binlog capture's ({} against {} versions); only in binlog capture's: {only_want:#?}; only in the stream's: {only_got:#?}",
            got_history.len(),
            want_history.len()
        );
    }
    let want_current = rows_at(&db.warehouse(), &current).await;
    assert!(!want_current.is_empty());
    assert_eq!(
        rows_at(wh, &current).await,
        want_current,
        "{what}: the current table differs from binlog capture's"
    );
    // Every row the source has, to the cent.
    let mut conn = db.conn().await;
    let source = crate::support::source_rows(
        &mut conn,
        "SELECT id, name, CAST(price AS CHAR), state, qty FROM items",
    )
    .await;
    let lake = rows_at(
        wh,
        &format!("SELECT id, name, CAST(price AS VARCHAR), state, qty FROM {s}.items"),
    )
    .await;
    assert_eq!(
        lake, source,
        "{what}: the current table differs from the source"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_schemas_define_the_tables_and_land_what_binlog_capture_lands() {
    let db = TestDb::new("msgschema").await;
    db.exec("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(10,2), born DATE, seen DATETIME(6), state ENUM('open','closed'))")
        .await;
    // Binlog capture of the SQL: the reference.
    let binlog = db.config("flush_interval_ms = 200");
    ok(db.tidemark(&binlog, &["run", "--until-caught-up"]));

    // JSON with schemas, and Avro through the registry; neither config names a
    // MySQL source.
    let json_topic = format!("json.{}.items", db.name);
    create_topic(&json_topic, 1).await;
    let other = format!("json.{}.other", db.name);
    create_topic(&other, 1).await;
    let json_wh = db.dir.path().join("json-wh");
    let json = stream_config(&db, "json", &json_wh, "");
    let avro_topic = format!("avro.{}.items", db.name);
    create_topic(&avro_topic, 1).await;
    let avro_wh = db.dir.path().join("avro-wh");
    let avro = stream_config(
        &db,
        "avro",
        &avro_wh,
        &format!(
            "converter = \"avro\"\n[streams.events.schema_registry]\nurl = \"{}\"\n",
            registry()
        ),
    );
    for c in [&json, &avro] {
        let text = std::fs::read_to_string(c).unwrap();
        assert!(!text.contains("[sources"), "no MySQL source: {text}");
    }

    let mut rng = Lcg(u64::from(std::process::id()) | 1);
    let script = script(&db.name, &mut rng);
    let p = producer();
    let half = script.steps.len() / 2;
    let mut avro_lines = Vec::new();
    for (i, (sql, msg)) in script.steps.iter().enumerate() {
        db.exec(sql).await;
        if msg.is_none() {
            // Binlog capture reads a DDL with the definition the source has when it
            // gets there, so the reference keeps up with each one (as a running
            // capture does).
            ok(db.tidemark(&binlog, &["run", "--until-caught-up"]));
        }
        if let Some(Msg {
            json: (key, value),
            avro,
        }) = msg
        {
            p.send(
                FutureRecord::to(&json_topic).key(key).payload(value),
                std::time::Duration::from_secs(10),
            )
            .await
            .expect("produce");
            avro_lines.push(avro.clone());
        }
        if i == half {
            // A table of the same stream whose messages carry no schema: a dead
            // letter that says what to configure; the items keep flowing.
            p.send(
                FutureRecord::to(&other).key(r#"{"id": 1}"#).payload(&format!(
                    r#"{{"before":null,"after":{{"id":1}},"source":{{"ts_ms":1767225600000,"db":"{}","table":"other","file":"mysql-bin.000003","pos":9,"row":0}},"op":"c","ts_ms":1767225600000}}"#,
                    db.name
                )),
                std::time::Duration::from_secs(10),
            )
            .await
            .expect("produce");
            // Both streams stop halfway and start again: tables defined from
            // messages are opened as they were landed.
            ok(tidemark(&json, &["run", "--until-caught-up"]));
            produce_avro(db.dir.path(), &avro_topic, &std::mem::take(&mut avro_lines));
            ok(tidemark(&avro, &["run", "--until-caught-up"]));
        }
    }
    produce_avro(db.dir.path(), &avro_topic, &avro_lines);
    ok(tidemark(&json, &["run", "--until-caught-up"]));
    ok(tidemark(&avro, &["run", "--until-caught-up"]));
    ok(db.tidemark(&binlog, &["run", "--until-caught-up"]));

    same_as_binlog(&db, &json_wh, "JSON with schemas").await;
    same_as_binlog(&db, &avro_wh, "Avro").await;

    // The schemaless message is a dead letter saying what to configure.
    let dead = rows_at(
        &json_wh,
        &format!("SELECT \"table\", error FROM tidemark.dead_letters WHERE topic = '{other}'"),
    )
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].contains("carries no schema") && dead[0].contains("schemas.enable=true"),
        "{dead:?}"
    );

    // A column gone and another come in one change could be a rename: refused (a
    // dead letter saying why), never taken for a drop and an add that would show
    // NULL in every row not changed since.
    let item = Item {
        name: "renamed".into(),
        cents: 100,
        born: 0,
        seen_us: 1_700_000_000_000_000,
        state: "open",
        qty: 5,
    };
    let (key, value) = message(
        Shape::NoBorn,
        &db.name,
        "c",
        999_999,
        None,
        Some(&item),
        10_000_000,
        1_767_300_000_000,
    );
    let value = value
        .replace(
            r#"{"type":"string","optional":true,"field":"name"}"#,
            r#"{"type":"string","optional":true,"field":"title"}"#,
        )
        .replace(r#""name":"renamed""#, r#""title":"renamed""#);
    assert!(value.contains(r#""field":"title""#), "{value}");
    p.send(
        FutureRecord::to(&json_topic).key(&key).payload(&value),
        std::time::Duration::from_secs(10),
    )
    .await
    .expect("produce");
    ok(tidemark(&json, &["run", "--until-caught-up"]));
    let dead = rows_at(
        &json_wh,
        &format!("SELECT error FROM tidemark.dead_letters WHERE topic = '{json_topic}'"),
    )
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].contains("cannot be told from a drop and an add"),
        "{dead:?}"
    );
    same_as_binlog(&db, &json_wh, "JSON with schemas, after the refused rename").await;
    db.drop().await;
}
