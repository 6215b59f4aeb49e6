//! Chart results kept while their data does not change.
//!
//! Metabase and Superset run every card again on every load (or keep it for a fixed
//! time and show stale numbers); tidemark knows when data changes, because every
//! scan it plans over a landed table reads one fixed Delta snapshot (table, id,
//! version: [`tidemark_lake::Snapshot`]). A chart's result is kept per (user, role,
//! statement, instant) together with the snapshots its plan reads
//! ([`tidemark_server::direct::Prepared::data_state`]); the next load whose plan
//! reads the same snapshots is answered from it, and any commit to one of those
//! tables (or a reload that changes the role) makes the next load run the statement
//! again. So a kept result is never stale, and a dashboard over tables that did not
//! change loads without reading them.
//!
//! What is not kept: statements with functions that are not immutable (`now()`,
//! `random()`), over tidemark's own tables or the tables jobs write (read at their
//! newest version when scanned), the feature store or table functions; errors. Per user, not per
//! role: a row filter may name the user. The audit records an answer from here
//! with outcome `cached`.
//!
//! Bounded by [`MAX_BYTES`] of cell text, least recently used dropped first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tidemark_server::access::Role;

/// The most cell text kept, summed over all results.
pub const MAX_BYTES: usize = 64 << 20;

/// A kept result: columns, rows as text, whether it was cut.
#[derive(Debug, Clone)]
pub(crate) struct Result {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Option<String>>>,
    pub(crate) truncated: bool,
}

impl Result {
    fn bytes(&self) -> usize {
        let cells: usize = self
            .rows
            .iter()
            .flatten()
            .map(|c| std::mem::size_of::<Option<String>>() + c.as_ref().map_or(0, String::len))
            .sum();
        cells + self.columns.iter().map(String::len).sum::<usize>()
    }
}

/// What was asked, by whom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Asked {
    pub(crate) user: String,
    pub(crate) role: Arc<Role>,
    pub(crate) sql: String,
    pub(crate) as_of: Option<String>,
}

struct Kept {
    data: Vec<tidemark_lake::Snapshot>,
    result: Arc<Result>,
    bytes: usize,
    used: Instant,
}

/// The console's chart results.
#[derive(Default)]
pub(crate) struct Cache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    kept: HashMap<Asked, Kept>,
    bytes: usize,
}

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The result kept for `asked` over exactly `data`.
    pub(crate) fn get(
        &self,
        asked: &Asked,
        data: &[tidemark_lake::Snapshot],
    ) -> Option<Arc<Result>> {
        let mut inner = self.lock();
        let kept = inner.kept.get_mut(asked)?;
        if kept.data != data {
            return None;
        }
        kept.used = Instant::now();
        Some(kept.result.clone())
    }

    /// Keep `result` for `asked` over `data`, replacing what was kept for an older
    /// state of the same question; the least recently used go when over
    /// [`MAX_BYTES`] (a result larger than a quarter of it is not kept).
    pub(crate) fn put(
        &self,
        asked: Asked,
        data: Vec<tidemark_lake::Snapshot>,
        result: Arc<Result>,
    ) {
        let bytes = result.bytes();
        if bytes > MAX_BYTES / 4 {
            return;
        }
        let mut inner = self.lock();
        let kept = Kept {
            data,
            result,
            bytes,
            used: Instant::now(),
        };
        if let Some(old) = inner.kept.insert(asked, kept) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        while inner.bytes > MAX_BYTES {
            let Some(oldest) = inner
                .kept
                .iter()
                .min_by_key(|(_, k)| k.used)
                .map(|(a, _)| a.clone())
            else {
                break;
            };
            if let Some(k) = inner.kept.remove(&oldest) {
                inner.bytes -= k.bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(sql: &str) -> Asked {
        Asked {
            user: "ana".into(),
            role: tidemark_server::access::Policy::from_config(&Default::default())
                .expect("no roles")
                .role("admin")
                .expect("the built-in admin role"),
            sql: sql.into(),
            as_of: None,
        }
    }

    fn at(version: u64) -> tidemark_lake::Snapshot {
        tidemark_lake::Snapshot {
            table: "file:///w/shop/items/current".into(),
            id: "a1".into(),
            version: Some(version),
        }
    }

    fn result(cells: usize) -> Arc<Result> {
        Arc::new(Result {
            columns: vec!["n".into()],
            rows: vec![vec![Some("x".repeat(cells))]],
            truncated: false,
        })
    }

    #[test]
    fn a_result_answers_only_over_the_same_data() {
        let c = Cache::default();
        let (v4, v5) = (vec![at(4)], vec![at(5)]);
        c.put(asked("select 1"), v4.clone(), result(1));
        assert!(c.get(&asked("select 1"), &v4).is_some());
        assert!(c.get(&asked("select 1"), &v5).is_none());
        assert!(c.get(&asked("select 2"), &v4).is_none());
        let mut other = asked("select 1");
        other.user = "bo".into();
        assert!(c.get(&other, &v4).is_none());
        // A newer state replaces the older one.
        c.put(asked("select 1"), v5.clone(), result(1));
        assert!(c.get(&asked("select 1"), &v4).is_none());
        assert!(c.get(&asked("select 1"), &v5).is_some());
        assert_eq!(c.lock().kept.len(), 1);
    }

    #[test]
    fn the_least_recently_used_go_first() {
        let c = Cache::default();
        let big = MAX_BYTES / 5;
        for i in 0..5 {
            c.put(asked(&format!("q{i}")), vec![at(1)], result(big));
        }
        // Over the bound after the fifth (five fifths plus overheads): q0 went.
        assert!(c.get(&asked("q0"), &[at(1)]).is_none());
        assert!(c.get(&asked("q4"), &[at(1)]).is_some());
        assert!(c.lock().bytes <= MAX_BYTES);
        // Too large to keep at all.
        c.put(asked("huge"), vec![at(1)], result(MAX_BYTES / 3));
        assert!(c.get(&asked("huge"), &[at(1)]).is_none());
    }
}
