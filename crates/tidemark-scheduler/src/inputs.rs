//! Where `new_data` triggers read the current versions of their input tables.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::store::StoreError;

pub trait Inputs: Send + Sync + 'static {
    /// The current version of each named table; a table that does not exist yet is absent.
    fn versions(
        &self,
        names: &[String],
    ) -> BoxFuture<'static, Result<BTreeMap<String, i64>, StoreError>>;
}

/// Versions set by hand, for tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryInputs {
    versions: Arc<Mutex<BTreeMap<String, i64>>>,
}

impl MemoryInputs {
    pub fn new() -> MemoryInputs {
        MemoryInputs::default()
    }

    pub fn set(&self, name: &str, version: i64) {
        self.versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), version);
    }
}

impl Inputs for MemoryInputs {
    fn versions(
        &self,
        names: &[String],
    ) -> BoxFuture<'static, Result<BTreeMap<String, i64>, StoreError>> {
        let all = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let found = names
            .iter()
            .filter_map(|n| all.get(n).map(|v| (n.clone(), *v)))
            .collect();
        futures::future::ready(Ok(found)).boxed()
    }
}
