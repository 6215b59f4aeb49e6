//! Load generator and plain consumer for `bench/kafka.sh`.
//!
//! ```text
//! kafka_bench produce BROKERS TOPIC DB PARTITIONS ROWS CHANGES   # backlog: snapshot + updates
//! kafka_bench pace    BROKERS TOPIC DB PARTITIONS ROWS RATE SECS # updates at RATE/s, ts_ms = now
//! kafka_bench drain   BROKERS TOPIC COUNT                        # plain consume rate (the limit)
//! ```
//!
//! Messages are Debezium MySQL envelopes without schema (decimal.handling.mode=string)
//! for table `DB.invoices (id INT PRIMARY KEY, customer VARCHAR(40), total
//! DECIMAL(12,2), issued DATE)`, keyed by row and partitioned by key.

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

struct Gen {
    db: String,
    partitions: u64,
    rows: u64,
    pos: u64,
    rng: u64,
}

impl Gen {
    /// The `i`-th message of the backlog: snapshot reads, then updates.
    fn message(&mut self, i: u64, ts_ms: i64) -> (i32, String, String) {
        let (op, id) = if i < self.rows {
            ("r", i + 1)
        } else {
            self.pos += 100;
            ("u", next(&mut self.rng) % self.rows + 1)
        };
        let pos = if op == "r" { 4 } else { self.pos };
        (
            (id % self.partitions) as i32,
            format!(r#"{{"id": {id}}}"#),
            envelope(
                &self.db,
                op,
                id,
                next(&mut self.rng) % 1_000_000,
                pos,
                ts_ms,
            ),
        )
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
        "produce" => {
            let (brokers, topic, db, partitions, rows, changes) =
                (a(1), a(2), a(3), n(4), n(5), n(6));
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
        "pace" => {
            let (brokers, topic, db, partitions, rows, rate, secs) =
                (a(1), a(2), a(3), n(4), n(5), n(6), n(7));
            // Freshness: a message leaves within a millisecond of its ts_ms.
            let p = producer(brokers, 1);
            let mut gen = Gen {
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
