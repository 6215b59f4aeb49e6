//! Load generator and plain consumer for `bench/kafka.sh`.
//!
//! ```text
//! kafka_bench produce      BROKERS TOPIC DB PARTITIONS ROWS CHANGES            # backlog: snapshot + updates
//! kafka_bench pace         BROKERS TOPIC DB PARTITIONS ROWS RATE SECS          # updates at RATE/s, ts_ms = now
//! kafka_bench produce-avro BROKERS TOPIC DB PARTITIONS ROWS CHANGES REGISTRY   # the same, as Avro
//! kafka_bench pace-avro    BROKERS TOPIC DB PARTITIONS ROWS RATE SECS REGISTRY
//! kafka_bench drain        BROKERS TOPIC COUNT                                 # plain consume rate (the limit)
//! ```
//!
//! Messages are Debezium MySQL envelopes for table `DB.invoices (id INT PRIMARY KEY,
//! customer VARCHAR(40), total DECIMAL(12,2), issued DATE)`, keyed by row and
//! partitioned by key. `produce` and `pace` write them as Kafka Connect's
//! JsonConverter does without schemas (decimal.handling.mode=string). The `-avro`
//! twins write the same events as Confluent's AvroConverter does: the key and
//! envelope schemas (shaped as Debezium's, with `column.propagate.source.type` on, so
//! the tables land with the source's column types) are registered with the schema
//! registry at REGISTRY (`http://host:port`) under `TOPIC-key` and `TOPIC-value`, and
//! each key and value is framed in the Confluent wire format (magic byte 0, the
//! 4-byte big-endian schema id, the Avro binary datum).

use std::time::{Duration, Instant};

use tidemark_capture::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use tidemark_capture::rdkafka::client::DefaultClientContext;
use tidemark_capture::rdkafka::config::ClientConfig;
use tidemark_capture::rdkafka::consumer::{Consumer, StreamConsumer};
use tidemark_capture::rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

fn envelope(db: &str, op: &str, id: u64, total: u64, pos: u64, ts_ms: i64) -> String {
    let image = format!(
        r#"{{"id": {id}, "customer": "customer {}", "total": "{}.{:02}", "issued": {}}}"#,
        id % 977,
        total / 100,
        total % 100,
        19_000 + id % 2000
    );
    let (before, snapshot) = if op == "r" {
        ("null".to_string(), "true")
    } else {
        (image.clone(), "false")
    };
    format!(
        r#"{{"before": {before}, "after": {image}, "source": {{"version": "2.7.0.Final", "connector": "mysql", "name": "bench", "ts_ms": {ts_ms}, "snapshot": "{snapshot}", "db": "{db}", "table": "invoices", "server_id": 1, "gtid": null, "file": "mysql-bin.000001", "pos": {pos}, "row": 0}}, "op": "{op}", "ts_ms": {ts_ms}}}"#
    )
}

/// The Avro schemas (key, value) of the `invoices` messages, as Debezium's Avro
/// converter (Confluent's `AvroData`) writes them for a connector with
/// `column.propagate.source.type=.*`; `ns` is the topic (`prefix.db.table`).
fn avro_schemas(ns: &str) -> (String, String) {
    let key = format!(
        r#"{{"type":"record","name":"Key","namespace":"{ns}","fields":[{{"name":"id","type":"int"}}],"connect.name":"{ns}.Key"}}"#
    );
    let src = |name: &str, ty: &str, extra: &str| {
        format!(
            r#""__debezium.source.column.type":"{ty}",{extra}"__debezium.source.column.name":"{name}""#
        )
    };
    let value_record = format!(
        r#"{{"type":"record","name":"Value","fields":[{{"name":"id","type":{{"type":"int","connect.parameters":{{{id}}}}}}},{{"name":"customer","type":["null",{{"type":"string","connect.parameters":{{{customer}}}}}],"default":null}},{{"name":"total","type":["null",{{"type":"bytes","scale":2,"precision":12,"connect.version":1,"connect.parameters":{{"scale":"2","connect.decimal.precision":"12",{total}}},"connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}}],"default":null}},{{"name":"issued","type":["null",{{"type":"int","connect.version":1,"connect.parameters":{{{issued}}},"connect.name":"io.debezium.time.Date"}}],"default":null}}],"connect.name":"{ns}.Value"}}"#,
        id = src("id", "INT", r#""__debezium.source.column.length":"11","#),
        customer = src(
            "customer",
            "VARCHAR",
            r#""__debezium.source.column.length":"40","#
        ),
        total = src(
            "total",
            "DECIMAL",
            r#""__debezium.source.column.length":"12","__debezium.source.column.scale":"2","#
        ),
        issued = src("issued", "DATE", ""),
    );
    let source = r#"{"type":"record","name":"Source","namespace":"io.debezium.connector.mysql","fields":[{"name":"version","type":"string"},{"name":"connector","type":"string"},{"name":"name","type":"string"},{"name":"ts_ms","type":"long"},{"name":"snapshot","type":[{"type":"string","connect.version":1,"connect.parameters":{"allowed":"true,last,false,incremental"},"connect.default":"false","connect.name":"io.debezium.data.Enum"},"null"],"default":"false"},{"name":"db","type":"string"},{"name":"table","type":["null","string"],"default":null},{"name":"server_id","type":"long"},{"name":"gtid","type":["null","string"],"default":null},{"name":"file","type":"string"},{"name":"pos","type":"long"},{"name":"row","type":"int"}],"connect.name":"io.debezium.connector.mysql.Source"}"#;
    let value = format!(
        r#"{{"type":"record","name":"Envelope","namespace":"{ns}","fields":[{{"name":"before","type":["null",{value_record}],"default":null}},{{"name":"after","type":["null","Value"],"default":null}},{{"name":"source","type":{source}}},{{"name":"op","type":"string"}},{{"name":"ts_ms","type":["null","long"],"default":null}}],"connect.version":1,"connect.name":"{ns}.Envelope"}}"#
    );
    (key, value)
}

/// Avro binary encoding (the spec's): zig-zag varints, length-prefixed strings and
/// bytes, a union as its branch index then the value.
fn avro_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn avro_bytes(out: &mut Vec<u8>, b: &[u8]) {
    avro_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// The shortest big-endian two's complement of `n` (Java's `BigInteger.toByteArray`,
/// what Connect's Decimal writes for the unscaled value).
fn unscaled(n: i64) -> Vec<u8> {
    let b = n.to_be_bytes();
    let mut start = 0;
    while start < 7
        && ((b[start] == 0 && b[start + 1] & 0x80 == 0)
            || (b[start] == 0xff && b[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    b[start..].to_vec()
}

/// The Confluent wire format's header: magic byte 0, the schema id big-endian.
fn framed(schema_id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out
}

/// The row image (the `Value` record, inside its `["null", Value]` union).
fn avro_image(out: &mut Vec<u8>, id: u64, total: u64) {
    avro_long(out, 1); // union branch 1: Value
    avro_long(out, id as i64); // id: int
    avro_long(out, 1); // customer: ["null", string] branch 1
    avro_bytes(out, format!("customer {}", id % 977).as_bytes());
    avro_long(out, 1); // total: ["null", bytes decimal(12,2)] branch 1
    avro_bytes(out, &unscaled(total as i64));
    avro_long(out, 1); // issued: ["null", int io.debezium.time.Date] branch 1
    avro_long(out, (19_000 + id % 2000) as i64);
}

/// The same event as [`envelope`], as the Avro datum of `avro_schemas`' value schema.
fn avro_envelope(
    value_id: u32,
    db: &str,
    op: &str,
    id: u64,
    total: u64,
    pos: u64,
    ts_ms: i64,
) -> Vec<u8> {
    let mut out = framed(value_id);
    if op == "r" {
        avro_long(&mut out, 0); // before: null
    } else {
        avro_image(&mut out, id, total); // before: as `envelope` writes it, the new image
    }
    // after
    avro_image(&mut out, id, total);
    // source
    avro_bytes(&mut out, b"2.7.0.Final");
    avro_bytes(&mut out, b"mysql");
    avro_bytes(&mut out, b"bench");
    avro_long(&mut out, ts_ms);
    avro_long(&mut out, 0); // snapshot: [string enum, "null"] branch 0
    avro_bytes(&mut out, if op == "r" { b"true" } else { b"false" });
    avro_bytes(&mut out, db.as_bytes());
    avro_long(&mut out, 1); // table: ["null", string] branch 1
    avro_bytes(&mut out, b"invoices");
    avro_long(&mut out, 1); // server_id
    avro_long(&mut out, 0); // gtid: null
    avro_bytes(&mut out, b"mysql-bin.000001");
    avro_long(&mut out, pos as i64);
    avro_long(&mut out, 0); // row
    avro_bytes(&mut out, op.as_bytes());
    avro_long(&mut out, 1); // ts_ms: ["null", long] branch 1
    avro_long(&mut out, ts_ms);
    out
}

/// Register `schema` (Avro JSON text) under `subject`; the registry's schema id.
async fn register(registry: &str, subject: &str, schema: &str) -> u32 {
    let url = format!(
        "{}/subjects/{subject}/versions",
        registry.trim_end_matches('/')
    );
    let reply: serde_json::Value = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": schema }))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    reply["id"]
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .unwrap_or_else(|| panic!("POST {url}: no id in {reply}"))
}

/// Register the key and value schemas for `topic`: the encoding of its messages.
async fn avro_encoding(registry: &str, topic: &str) -> Encoding {
    let ns: String = topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let (key, value) = avro_schemas(&ns);
    let key_id = register(registry, &format!("{topic}-key"), &key).await;
    let value_id = register(registry, &format!("{topic}-value"), &value).await;
    eprintln!("registered {topic}-key as schema id {key_id}, {topic}-value as {value_id}");
    Encoding::Avro { key_id, value_id }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// xorshift: a cheap, repeatable spread of updated keys.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// How messages are written: schemaless JSON, or Avro framed with these schema ids.
#[derive(Clone, Copy)]
enum Encoding {
    Json,
    Avro { key_id: u32, value_id: u32 },
}

struct Gen {
    encoding: Encoding,
    db: String,
    partitions: u64,
    rows: u64,
    pos: u64,
    rng: u64,
}

impl Gen {
    /// The `i`-th message of the backlog: snapshot reads, then updates.
    fn message(&mut self, i: u64, ts_ms: i64) -> (i32, Vec<u8>, Vec<u8>) {
        let (op, id) = if i < self.rows {
            ("r", i + 1)
        } else {
            self.pos += 100;
            ("u", next(&mut self.rng) % self.rows + 1)
        };
        let pos = if op == "r" { 4 } else { self.pos };
        let total = next(&mut self.rng) % 1_000_000;
        let (key, value) = match self.encoding {
            Encoding::Json => (
                format!(r#"{{"id": {id}}}"#).into_bytes(),
                envelope(&self.db, op, id, total, pos, ts_ms).into_bytes(),
            ),
            Encoding::Avro { key_id, value_id } => {
                let mut key = framed(key_id);
                avro_long(&mut key, id as i64);
                (
                    key,
                    avro_envelope(value_id, &self.db, op, id, total, pos, ts_ms),
                )
            }
        };
        ((id % self.partitions) as i32, key, value)
    }
}

/// Queue message `i` of `gen` (stamped now) without waiting for its delivery.
fn queue(p: &FutureProducer, topic: &str, gen: &mut Gen, i: u64) -> DeliveryFuture {
    let (part, key, value) = gen.message(i, now_ms());
    p.send_result(
        FutureRecord::to(topic)
            .partition(part)
            .key(&key)
            .payload(&value),
    )
    .map_err(|(e, _)| e)
    .expect("queue")
}

/// Send messages `from..from + n` of `gen`, waiting for deliveries every 10,000.
async fn send_all(p: &FutureProducer, topic: &str, gen: &mut Gen, from: u64, n: u64) {
    let mut inflight = Vec::with_capacity(10_000);
    for i in from..from + n {
        inflight.push(queue(p, topic, gen, i));
        if inflight.len() == 10_000 {
            for f in inflight.drain(..) {
                f.await.expect("delivery").expect("produce");
            }
        }
    }
    for f in inflight {
        f.await.expect("delivery").expect("produce");
    }
}

fn producer(brokers: &str, linger_ms: u32) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", linger_ms.to_string())
        // Per-partition order survives retries, as with Kafka Connect's producer.
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "200000")
        .set("compression.type", "lz4")
        .create()
        .expect("producer")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("missing argument {i}; see the file's docs"))
    };
    let n = |i: usize| a(i).parse::<u64>().expect("a number");
    match a(0) {
        cmd @ ("produce" | "produce-avro") => {
            let (brokers, topic, db, partitions, rows, changes) =
                (a(1), a(2), a(3), n(4), n(5), n(6));
            let encoding = match cmd {
                "produce" => Encoding::Json,
                _ => avro_encoding(a(7), topic).await,
            };
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .create()
                .expect("admin");
            for r in admin
                .create_topics(
                    &[NewTopic::new(
                        topic,
                        partitions as i32,
                        TopicReplication::Fixed(1),
                    )],
                    &AdminOptions::new(),
                )
                .await
                .expect("create topic")
            {
                r.expect("create topic");
            }
            let p = producer(brokers, 20);
            let mut gen = Gen {
                encoding,
                db: db.into(),
                partitions,
                rows,
                pos: 4,
                rng: 0x9e37_79b9_7f4a_7c15,
            };
            let t = Instant::now();
            send_all(&p, topic, &mut gen, 0, rows + changes).await;
            p.flush(Duration::from_secs(30)).expect("flush");
            println!(
                "produced {} messages in {:.2}s",
                rows + changes,
                t.elapsed().as_secs_f64()
            );
        }
        cmd @ ("pace" | "pace-avro") => {
            let (brokers, topic, db, partitions, rows, rate, secs) =
                (a(1), a(2), a(3), n(4), n(5), n(6), n(7));
            let encoding = match cmd {
                "pace" => Encoding::Json,
                _ => avro_encoding(a(8), topic).await,
            };
            // Freshness: a message leaves within a millisecond of its ts_ms.
            let p = producer(brokers, 1);
            let mut gen = Gen {
                encoding,
                db: db.into(),
                partitions,
                rows,
                pos: 1_000_000_000_000,
                rng: 0x2545_f491_4f6c_dd1d,
            };
            let per_tick = (rate / 100).max(1);
            let start = Instant::now();
            let mut sent = 0u64;
            let mut inflight = Vec::new();
            for tick in 0..secs * 100 {
                // Queued, not awaited: the pace is the send rate, whatever the acks do.
                for i in rows + sent..rows + sent + per_tick {
                    inflight.push(queue(&p, topic, &mut gen, i));
                }
                sent += per_tick;
                let due = Duration::from_millis(10 * (tick + 1));
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            p.flush(Duration::from_secs(30)).expect("flush");
            println!(
                "paced {sent} messages over {:.1}s",
                start.elapsed().as_secs_f64()
            );
        }
        "drain" => {
            let (brokers, topic, count) = (a(1), a(2), n(3));
            let c: StreamConsumer = ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("group.id", format!("drain-{}", std::process::id()))
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .create()
                .expect("consumer");
            c.subscribe(&[topic]).expect("subscribe");
            let mut seen = 0u64;
            let mut bytes = 0usize;
            // Wall time from start, group join included, as for `tidemark run`.
            let t = Instant::now();
            while seen < count {
                let m = c.recv().await.expect("consume");
                bytes += tidemark_capture::rdkafka::Message::payload(&m).map_or(0, <[u8]>::len);
                seen += 1;
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "drained {seen} messages ({bytes} bytes) in {secs:.2}s: {:.0} messages/s",
                seen as f64 / secs
            );
        }
        other => panic!("unknown command {other}; see the file's docs"),
    }
}
