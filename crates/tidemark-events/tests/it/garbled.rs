//! Malformed input never panics: every fixture, truncated at every length and garbled
//! byte by byte, through every decoder and into a batch. Errors are fine; a panic, or a
//! batch builder left out of step, is not.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use tidemark_core::change::ChangeBatchBuilder;
use tidemark_core::schema::TableSchema;
use tidemark_events::{
    decode_debezium_with, decode_dms, push_event, read_jsonl, BinaryHandling, DebeziumOptions,
    DecimalHandling, Decoded, Format, TimePrecision,
};

use crate::{customers, invoice, testdata};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![testdata()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let name = p
                    .strip_prefix(testdata())
                    .unwrap_or(Path::new(""))
                    .display()
                    .to_string();
                out.push((name, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 25, "fixtures missing: {}", out.len());
    out
}

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = b"\"{}[],:\\0-9eE.+ \n\xff\xc3nulltrfa";

fn garble(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        let i = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if i < v.len() => v[i] = INTERESTING[rng.below(INTERESTING.len())],
            1 if i < v.len() => v[i] = rng.next() as u8,
            2 if i < v.len() => {
                v.remove(i);
            }
            3 => v.insert(i, INTERESTING[rng.below(INTERESTING.len())]),
            _ => {
                // Duplicate a slice: repeated members, nested copies.
                let j = rng.below(v.len() + 1);
                let (a, b) = (i.min(j), i.max(j).min(a_plus(i.min(j), 64, v.len())));
                let chunk: Vec<u8> = v[a..b].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
        }
    }
    v
}

fn a_plus(a: usize, n: usize, len: usize) -> usize {
    (a + n).min(len)
}

struct Sinks {
    schemas: Vec<TableSchema>,
    builders: Vec<ChangeBatchBuilder>,
    /// Rows that landed: proof that garbled input still reaches the batch path.
    landed: usize,
}

impl Sinks {
    fn new() -> Self {
        let schemas = vec![customers(), invoice()];
        let builders = schemas
            .iter()
            .map(|s| ChangeBatchBuilder::new(Arc::new(s.clone()), 16))
            .collect();
        Sinks {
            schemas,
            builders,
            landed: 0,
        }
    }

    fn land(&mut self, d: &Decoded) {
        if let Decoded::Change(ev) = d {
            for (s, b) in self.schemas.iter().zip(self.builders.iter_mut()) {
                // Wrong-table errors included: any error must leave the builder whole.
                if push_event(b, s, ev, 0).is_ok() {
                    self.landed += 1;
                }
            }
        }
    }

    /// Rows landed; fails if a failed push left a builder out of step.
    fn finish(mut self) -> usize {
        for b in &mut self.builders {
            b.finish()
                .expect("a failed push_event left the builder out of step");
        }
        self.landed
    }
}

fn exercise(input: &[u8], sinks: &mut Sinks) {
    let options = [
        DebeziumOptions::default(),
        DebeziumOptions {
            decimal_handling: DecimalHandling::String,
            binary_handling: BinaryHandling::Hex,
            time_precision: TimePrecision::Connect,
        },
        DebeziumOptions {
            decimal_handling: DecimalHandling::Double,
            binary_handling: BinaryHandling::Base64UrlSafe,
            time_precision: TimePrecision::Adaptive,
        },
    ];
    for o in &options {
        if let Ok(d) = decode_debezium_with(Some(input), Some(input), "g/0/0", o) {
            sinks.land(&d);
        }
    }
    if let Ok(d) = decode_dms(input, "g/0/0") {
        sinks.land(&d);
    }
    for format in [Format::Debezium(options[0]), Format::Dms] {
        for (_, r) in read_jsonl(input, format) {
            if let Ok(d) = r {
                sinks.land(&d);
                let _ = format!("{d:?}");
            } else if let Err(e) = r {
                // Rendering the message must not panic either.
                let _ = e.to_string();
            }
        }
    }
}

fn run(name: &str, what: &str, input: &[u8], sinks: &mut Sinks) {
    if catch_unwind(AssertUnwindSafe(|| exercise(input, sinks))).is_err() {
        panic!(
            "{name} ({what}) panicked on input:\n{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn truncated_fixtures_never_panic() {
    let mut landed = 0;
    for (name, bytes) in fixtures() {
        let mut sinks = Sinks::new();
        // Every prefix of small files; about 600 evenly spread ones of large files.
        let step = (bytes.len() / 600).max(1);
        for len in (0..bytes.len()).step_by(step) {
            run(
                &name,
                &format!("first {len} bytes"),
                &bytes[..len],
                &mut sinks,
            );
        }
        landed += sinks.finish();
    }
    // Files end in a newline, so the longest prefixes are whole messages.
    assert!(landed > 20, "only {landed} rows landed");
}

#[test]
fn garbled_fixtures_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut landed = 0;
    for (name, bytes) in fixtures() {
        let mut sinks = Sinks::new();
        for round in 0..400 {
            let g = garble(&bytes, &mut rng);
            run(&name, &format!("garble round {round}"), &g, &mut sinks);
        }
        landed += sinks.finish();
    }
    // Many garbles hit whitespace or a string's inside and still decode: the landing
    // path is exercised with damaged values, not only the JSON reader.
    assert!(landed > 1000, "only {landed} rows landed");
}

#[test]
fn hostile_shapes_never_panic() {
    let mut sinks = Sinks::new();
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let huge_exp = r#"{"data":{"id":1,"total":1e999999999,"weight":1e400,"created_at":-9223372036854775808,"due_time":"99999999999:00:00","issued":-2147483649},"metadata":{"timestamp":"2024-03-01T10:00:00Z","record-type":"data","operation":"insert","schema-name":"shop","table-name":"invoice"}}"#;
    let wide_decimal = format!(
        r#"{{"schema":{{"type":"struct","fields":[{{"type":"struct","field":"after","fields":[{{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{{"scale":"4294967295"}},"field":"total"}},{{"type":"int64","name":"io.debezium.time.Timestamp","field":"created_at"}}]}}]}},"payload":{{"op":"c","after":{{"id":1,"total":"{}","created_at":9223372036854775807}},"source":{{"db":"shop","table":"invoice","ts_ms":1}}}}}}"#,
        "A".repeat(4000)
    );
    for input in [deep.as_str(), huge_exp, wide_decimal.as_str(), "\"\\ud800\\udc00\"", "{\"op\":\"c\",\"source\":{\"db\":\"shop\",\"table\":\"invoice\",\"ts_ms\":-9223372036854775808},\"after\":{\"id\":1,\"paid_at\":\"2024-02-29T13:45:10.123456789+14:00\",\"due_time\":-9223372036854775808}}"] {
        run("hostile", &input[..input.len().min(40)], input.as_bytes(), &mut sinks);
    }
    let _ = sinks.finish();
}

/// Issue 14, item 10: the change-event decoders under the time-budgeted mutation
/// fuzzer (`tidemark-fuzz`), seeded with every fixture and the corpus in
/// `fuzz/corpus/<target>/`. `TIDEMARK_FUZZ_SECS` sets the budget per target.
fn fuzz_target(target: &str, f: impl Fn(&[u8], &mut Sinks)) {
    let seeds: Vec<Vec<u8>> = fixtures().into_iter().map(|(_, b)| b).collect();
    let report = tidemark_fuzz::fuzz(target, &seeds, |input| {
        let mut sinks = Sinks::new();
        f(input, &mut sinks);
        sinks.finish();
    });
    assert!(report.inputs as usize >= seeds.len());
}

#[test]
fn fuzz_debezium() {
    fuzz_target("debezium", |input, sinks| {
        for o in [
            DebeziumOptions::default(),
            DebeziumOptions {
                decimal_handling: DecimalHandling::String,
                binary_handling: BinaryHandling::Hex,
                time_precision: TimePrecision::Connect,
            },
        ] {
            match decode_debezium_with(Some(input), Some(input), "f/0/0", &o) {
                Ok(d) => sinks.land(&d),
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    });
}

#[test]
fn fuzz_dms() {
    fuzz_target("dms", |input, sinks| match decode_dms(input, "f/0/0") {
        Ok(d) => sinks.land(&d),
        Err(e) => {
            let _ = e.to_string();
        }
    });
}

#[test]
fn fuzz_jsonl() {
    fuzz_target("jsonl", |input, sinks| {
        for format in [Format::Debezium(DebeziumOptions::default()), Format::Dms] {
            for (_, r) in read_jsonl(input, format) {
                match r {
                    Ok(d) => sinks.land(&d),
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            }
        }
    });
}
