//! A small mutation fuzzer for tidemark's decoders of outside bytes: Debezium and DMS
//! change events, JSON-lines dumps, MariaDB binlog events, the users file, the config
//! file and SCRAM client messages. Each decoder's own tests call [`fuzz`] with a
//! target name and the function under test; this crate is only ever a
//! dev-dependency and links nothing but std.
//!
//! Why by hand: coverage-guided fuzzers need either a nightly toolchain (cargo-fuzz)
//! or an instrumenting compiler wrapper and AFL++ built from C (cargo-afl), which
//! this project's one stable toolchain and CI budget do not carry. What this does
//! instead, in a plain `cargo test`:
//!
//! 1. replays the target's corpus (`fuzz/corpus/<target>/` at the repository root:
//!    real fixtures, and every input that once crashed), each input must not panic;
//! 2. then, for the time budget, mutates corpus inputs (bit flips, byte
//!    replacements with boundary values, truncation, duplication and splicing of
//!    slices, insertion of JSON and binlog tokens) and feeds them to the decoder.
//!
//! A panic is a failure: the input is written to `fuzz/crashes/<target>-<hash>` and
//! the test fails naming that file; copy it into the corpus once fixed, so CI
//! replays it for ever. Errors returned by the decoder are fine (that is what bad
//! input should get). The budget is `TIDEMARK_FUZZ_SECS` seconds per target (CI: a
//! few seconds; `scripts/fuzz.sh` runs every target for ten minutes). Each run
//! appends one line to `$TIDEMARK_FAULT_LOG` when set, which `scripts/test.sh`
//! totals at the end.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What one fuzz run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Corpus inputs replayed.
    pub corpus: usize,
    /// Inputs tried in all (corpus and mutants).
    pub inputs: u64,
    /// Time spent.
    pub elapsed: Duration,
}

/// The repository root (this crate is `crates/tidemark-fuzz`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The corpus directory of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    repo_root().join("fuzz").join("corpus").join(target)
}

/// The time budget per target: `TIDEMARK_FUZZ_SECS`, else 3 s.
fn budget() -> Duration {
    let secs = std::env::var("TIDEMARK_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs.max(0.0))
}

/// xorshift64*: deterministic per target and run length, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens worth inserting: JSON structure, numbers at type boundaries, binlog
/// length-encoding prefixes and MariaDB's compression header.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"false",
    b"-0",
    b"1e309",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"0.0000000000000000000001",
    b"\\u0000",
    b"\\ud800",
    b"\"\\",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xfc\xff\xff",
    b"\xfd",
    b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x80",
    b"\x84\xff\xff\xff\xff",
    b"\x00",
    b"\"op\":\"u\"",
    b"\"before\":",
    b"\"after\":",
    b"\"schema\":",
    b"\"payload\":",
    b"\"source\":{\"file\":\"mysql-bin.000001\",\"pos\":4,\"row\":0,\"server_id\":1}",
    b"=",
    b"[users.x]",
    b"verifier = \"SCRAM-SHA-256$4096:",
    b"n,,n=",
    b"c=biws,r=",
];

const BOUNDARY: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'"', b'\\', b'{', b'}'];

fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = BOUNDARY[rng.below(BOUNDARY.len())];
            }
            2 if len > 0 => input.truncate(rng.below(len)),
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                let piece = input[a..b].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, piece);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(32)).min(len);
                input.drain(a..b);
            }
            5 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, t.iter().copied());
            }
            6 if !corpus.is_empty() => {
                // Splice: the head of this input, the tail of another.
                let other = &corpus[rng.below(corpus.len())];
                let at = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            7 if len > 0 => {
                // Repeat a slice many times (deep nesting, long runs).
                let a = rng.below(len);
                let b = (a + 1 + rng.below(8)).min(len);
                let piece = input[a..b].to_vec();
                let at = rng.below(input.len() + 1);
                for _ in 0..1 + rng.below(200) {
                    input.splice(at..at, piece.iter().copied());
                }
            }
            _ => {
                let at = rng.below(len + 1);
                input.insert(at, rng.next() as u8);
            }
        }
    }
    input.truncate(1 << 16);
}

/// Read every file of a corpus directory, sorted by name.
pub fn read_corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Fuzz `f` as target `target`, seeded with the corpus plus `seeds`: panics (failing
/// the test) on the first input that makes `f` panic, after saving it.
pub fn fuzz(target: &str, seeds: &[Vec<u8>], f: impl Fn(&[u8])) -> Report {
    let started = Instant::now();
    let dir = corpus_dir(target);
    let named = read_corpus(&dir);
    let mut corpus: Vec<Vec<u8>> = named.iter().map(|(_, b)| b.clone()).collect();
    corpus.extend(seeds.iter().cloned());
    assert!(
        !corpus.is_empty(),
        "fuzz target {target}: no corpus in {} and no seeds",
        dir.display()
    );
    let run = |input: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
            let mut h = DefaultHasher::new();
            input.hash(&mut h);
            let crashes = repo_root().join("fuzz").join("crashes");
            let _ = std::fs::create_dir_all(&crashes);
            let path = crashes.join(format!("{target}-{:016x}", h.finish()));
            let _ = std::fs::write(&path, input);
            panic!(
                "fuzz target {target}: the decoder panicked on the input saved as {} ({} bytes)",
                path.display(),
                input.len()
            );
        }
    };
    let mut inputs = 0u64;
    for input in &corpus {
        run(input);
        inputs += 1;
    }
    let budget = budget();
    let mut h = DefaultHasher::new();
    target.hash(&mut h);
    let mut rng = Rng(h.finish() | 1);
    let mut input = Vec::new();
    while started.elapsed() < budget {
        input.clear();
        input.extend_from_slice(&corpus[rng.below(corpus.len())]);
        mutate(&mut rng, &corpus, &mut input);
        run(&input);
        inputs += 1;
    }
    let report = Report {
        corpus: named.len(),
        inputs,
        elapsed: started.elapsed(),
    };
    if let Ok(log) = std::env::var("TIDEMARK_FAULT_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(
                f,
                "fuzz {target} inputs={} secs={:.1} crashes=0",
                report.inputs,
                report.elapsed.as_secs_f64()
            );
        }
    }
    report
}
