//! Data-test outcomes kept in the warehouse: `tidemark.model_tests`
//! ([`tidemark_lake::record_model_tests`]), one row per test run, one commit per
//! build or test invocation, so the console shows each test's last outcome.
//!
//! Recorded by [`crate::build`] and [`crate::test`] themselves, so every caller
//! (`tidemark build`, `tidemark test`, a daemon's build job, the demo) records.

use tidemark_lake::{ModelTestRow, Warehouse};
use tracing::warn;

use crate::testing::{Severity, TestResult};

/// Bytes of failing rows kept per test run: enough to recognise the rows, small
/// enough that a wide table's failures do not bloat the table.
const SAMPLE_BYTES: usize = 2048;

/// Who runs the tests, as `tidemark.model_tests` records it.
#[derive(Debug, Clone, Default)]
pub struct RanBy {
    /// `tidemark build`, `tidemark test` or `job:<name>`; empty: the name of the
    /// command the function serves (`tidemark build` for [`crate::build`],
    /// `tidemark test` for [`crate::test`]).
    pub who: String,
    /// The environment whose warehouse is written.
    pub environment: String,
}

/// `r` as a row of `tidemark.model_tests`.
pub(crate) fn row(r: &TestResult, ran_by: &str, environment: &str) -> ModelTestRow {
    let outcome = if r.error.is_some() {
        "error"
    } else if r.failures > 0 {
        "fail"
    } else {
        "pass"
    };
    ModelTestRow {
        model: r.test.model.clone(),
        test: r.test.name.clone(),
        severity: match r.test.severity {
            Severity::Error => "error",
            Severity::Warn => "warn",
        }
        .into(),
        outcome: outcome.into(),
        failing_rows: i64::try_from(r.failures).unwrap_or(i64::MAX),
        failing_sample: (!r.sample.is_empty()).then(|| bounded(&r.sample)),
        error: r.error.clone(),
        started_us: r.started_us,
        ended_us: r.ended_us,
        ran_by: ran_by.to_string(),
        environment: environment.to_string(),
    }
}

/// The rows one a line, cut at [`SAMPLE_BYTES`] (on a character boundary, marked).
fn bounded(rows: &[String]) -> String {
    let all = rows.join("\n");
    if all.len() <= SAMPLE_BYTES {
        return all;
    }
    let mut end = SAMPLE_BYTES - '…'.len_utf8();
    while !all.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &all[..end])
}

/// Append `rows` to `wh`'s `tidemark.model_tests` in one commit. A failure is
/// logged, not returned: the build's or the test run's own outcome is what its
/// caller acts on, and it must not fail (nor a job be retried, landing again)
/// because its record could not be written; the warning names the table so an
/// operator can see outcomes are missing.
pub(crate) async fn record(wh: &Warehouse, rows: &[ModelTestRow]) {
    if rows.is_empty() {
        return;
    }
    if let Err(e) = tidemark_lake::record_model_tests(wh, rows).await {
        warn!(
            table = %format!("{}.{}", tidemark_lake::OWN_SCHEMA, tidemark_lake::MODEL_TESTS),
            tests = rows.len(),
            error = %e,
            "recording the data tests' outcomes failed; the outcomes of this run are not kept"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_sample_is_cut_at_its_byte_bound() {
        let rows = vec!["é".repeat(2000); 3];
        let s = bounded(&rows);
        assert!(s.len() <= SAMPLE_BYTES, "{}", s.len());
        assert!(s.ends_with('…'));
        assert_eq!(
            bounded(&["(id=1)".into(), "(id=2)".into()]),
            "(id=1)\n(id=2)"
        );
    }
}
