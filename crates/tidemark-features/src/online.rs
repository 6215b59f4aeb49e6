//! The online store: the latest feature vector per entity key of each view, in
//! memory, following the commits of the views' sources.
//!
//! **What a value is.** The online value of an entity is what a training set with
//! `t = now` under the event clock gives for it: the source's current versions
//! (`<schema>_history.<table>` with `_valid_to IS NULL`; the rows as they are for a
//! `read = "table"` view), and when the entity key is not the source's key, the
//! winner among the rows with that key (latest event time, then latest
//! `_valid_from`, then smallest source key: the training set's rule). A value older
//! than the view's TTL is not served: the entity reads as absent, and HTTP says it
//! was stale (Feast's online rule: an expired value is not returned).
//!
//! **How it follows commits.** Every view remembers the history log version (and
//! its `_ingest_ts` mark) its state reflects. On each catch-up the log rows landed
//! since that mark (inserts, updates, deletes: every change is a log row) name the
//! touched source keys; only the entities those keys belong to (before and after
//! the change) are read again, through the same plan as the full build with a key
//! filter pushed into the scans (an `IN` list, which Parquet statistics prune by, or
//! `tidemark_lake::keyset` for many keys), and replaced or removed. Nothing else is
//! read again. Reading the truth for the touched keys rather than applying the log
//! rows by hand makes re-applying a range harmless (a catch-up that fails half-way is
//! simply done again) and keeps one meaning, the training set's, for every value. A
//! log that started again (`--resnapshot`: another table id) or a plan whose shape
//! changed (a schema change) rebuilds the view whole.
//!
//! For a view whose entity key is not the source key (the latest invoice per
//! customer), the store also keeps, per source key, the entity that currently holds
//! it (`owners`), so an invoice moved from customer A to B recomputes both.
//!
//! **Memory.** One `HashMap` per view from the key's canonical text to a compact row
//! (the event time, then each feature as a tag byte and its bytes, strings with a
//! varint length): see [`OnlineView::memory`] and docs/features.md for the measured
//! bytes per entity.
//!
//! **Masks.** Masks are defined on source columns (`[server.roles.R] masks`), and a
//! feature is an expression over source columns, so a role with masks reads a
//! feature computed over the masked columns: for each distinct set of masks on a
//! view's source the store computes, beside the plain features, the variants of the
//! features that read a masked column ([`MaskSet`]). A role whose masks were not
//! known when the store was built is refused rather than served unmasked values.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Date32Array, Date32Builder, Decimal128Array,
    Decimal128Builder, Float64Array, Float64Builder, Int64Array, Int64Builder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode};
use deltalake::datafusion::common::{Column, ScalarValue, TableReference};
use deltalake::datafusion::functions_window::expr_fn::row_number;
use deltalake::datafusion::logical_expr::{cast as cast_expr, lit, Expr, ExprFunctionExt};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use tidemark_core::names::history_schema;
use tidemark_core::schema::{INGEST_TS, VALID_FROM, VALID_TO};
use tidemark_lake::object_store::ObjectStoreExt;
use tidemark_query::{Engine, CATALOG};
use tracing::{debug, info, warn};

use crate::training::source_column_type;
use crate::view::{FeatureView, Read};
use crate::{Error, Result};

/// Separates the parts of a composite key in the store's canonical text.
const SEP: char = '\u{1f}';
/// An `IN` list up to this many keys (Parquet statistics prune by it); a key-set
/// function beyond (one expression node whatever the number of keys).
const IN_LIST_MAX: usize = 256;

/// One set of masks a role reads a source through: (column, SQL expression), as
/// `[server.roles.R] masks` gives them for that source.
pub type MaskSet = Vec<(String, String)>;

/// A feature value as the store gives it back.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer type (stored as i64).
    Int(i64),
    /// Any float type (stored as f64).
    Float(f64),
    /// Text (and any type the store has no form of its own for, as its text).
    Text(String),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01 UTC.
    Timestamp(i64),
    /// A decimal: the unscaled value, precision, scale.
    Decimal(i128, u8, i8),
}

/// How a column is stored in a compact row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Text,
    Date,
    Timestamp,
    Decimal(u8, i8),
}

impl Kind {
    /// The store's form for `t`, and the type the plan casts the column to first.
    fn of(t: &DataType) -> (Kind, DataType) {
        use DataType::*;
        match t {
            Boolean => (Kind::Bool, Boolean),
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => (Kind::Int, Int64),
            Float16 | Float32 | Float64 => (Kind::Float, Float64),
            Date32 | Date64 => (Kind::Date, Date32),
            Timestamp(..) => (
                Kind::Timestamp,
                Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ),
            Decimal128(p, s) => (Kind::Decimal(*p, *s), Decimal128(*p, *s)),
            // Text, and everything else as its text (UInt64 too: it may not fit).
            _ => (Kind::Text, Utf8),
        }
    }
}

/// Where a view's state stands in its source's history log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mark {
    /// The history log's Delta table id (a table landed again has another).
    pub table_id: String,
    /// The log's Delta version the state reflects.
    pub version: i64,
    /// The log's highest `_ingest_ts` (micros) at that version.
    pub ingest_us: i64,
}

/// The shape of a view's rows, fixed by its plan.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    /// The source types of the entity's key columns (`join_on`).
    key_types: Vec<DataType>,
    /// Feature columns: name and kind.
    features: Vec<(String, Kind)>,
    /// Per mask set: for each feature, the stored column it is read from (its own, or
    /// a masked variant stored after the features), or `None` when the mask set
    /// masks a key column (the view is refused to such roles).
    variants: Vec<Option<Vec<usize>>>,
    /// Kinds of every stored column (features, then masked variants).
    stored: Vec<Kind>,
    /// Whether the entity key is exactly the source's key.
    exact: bool,
    /// The source's key columns (empty when the source has none: a job's table).
    pk: Vec<String>,
}

impl Layout {
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

#[derive(Debug, Default)]
struct State {
    layout: Option<Arc<Layout>>,
    rows: HashMap<Box<str>, Box<[u8]>>,
    /// Per source key (canonical), the entity (canonical) its current row belongs to
    /// (views whose entity key is not the source key only).
    owners: HashMap<Box<str>, Box<str>>,
    mark: Option<Mark>,
    /// Why the last catch-up failed (served: the last good state).
    error: Option<String>,
    /// A source without a log only: new commits were seen since its last read, and
    /// when that read was.
    dirty: bool,
    read_at: Option<Instant>,
}

/// How often, at most, a view over a source without a log (a job's table, a model
/// materialised as a view) is read again whole while commits keep coming.
const UNLOGGED_EVERY: Duration = Duration::from_secs(10);

/// One view of the online store.
#[derive(Debug)]
pub struct OnlineView {
    /// The view's definition.
    pub def: FeatureView,
    /// The mask sets of the roles that read the source through masks.
    masks: Vec<MaskSet>,
    state: RwLock<State>,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Whether the entity has a value (not absent, not stale).
    pub found: bool,
    /// Whether it had one, older than the view's TTL (so not served).
    pub stale: bool,
    /// The value's event time (micros), when it has one.
    pub event_time_us: Option<i64>,
    /// The features, in the view's order (all `Null` unless found).
    pub values: Vec<Value>,
}

/// How big a view is in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    /// Entities held.
    pub entities: usize,
    /// Bytes of keys and compact rows (heap), plus the hash tables' slots.
    pub bytes: usize,
    /// Source keys tracked for views keyed by something else than the source key.
    pub owners: usize,
}

/// Every view's online state.
#[derive(Debug)]
pub struct OnlineStore {
    views: BTreeMap<String, Arc<OnlineView>>,
}

/// A role's access to a view's features, as the store applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Unmasked.
    Plain,
    /// The `i`th mask set given to [`OnlineStore::new`] for the view's source.
    Masked(usize),
}

impl OnlineStore {
    /// A store for `views` (none built yet: [`Self::catch_up`] builds). `masks` gives,
    /// per source `(schema, table)`, the mask sets roles read it through.
    pub fn new<'a>(
        views: impl IntoIterator<Item = &'a FeatureView>,
        masks: &BTreeMap<(String, String), Vec<MaskSet>>,
    ) -> Self {
        let views = views
            .into_iter()
            .map(|v| {
                let m = masks
                    .get(&(v.schema.clone(), v.table.clone()))
                    .cloned()
                    .unwrap_or_default();
                (
                    v.name.clone(),
                    Arc::new(OnlineView {
                        def: v.clone(),
                        masks: m,
                        state: RwLock::new(State::default()),
                    }),
                )
            })
            .collect();
        Self { views }
    }

    /// A view, or an error listing the defined ones.
    pub fn view(&self, name: &str) -> Result<&Arc<OnlineView>> {
        self.views.get(name).ok_or_else(|| Error::UnknownView {
            name: name.to_string(),
            defined: if self.views.is_empty() {
                "none (define [features.NAME] in the config file)".to_string()
            } else {
                self.views.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        })
    }

    /// Every view, by name.
    pub fn views(&self) -> impl Iterator<Item = &Arc<OnlineView>> {
        self.views.values()
    }

    /// Bring every view up to the engine's loaded versions (refresh the engine
    /// first; `refreshed`: whether that refresh found new commits, which is all that
    /// tells a view over a source without a log, a job's table, to read it again). A
    /// view that fails keeps its last good state and the error (logged, and shown by
    /// [`OnlineView::error`]); returns how many views changed.
    pub async fn catch_up(&self, engine: &Engine, refreshed: bool) -> usize {
        let mut changed = 0;
        for v in self.views.values() {
            match v.catch_up(engine, refreshed).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) => {
                    let e = e.to_string();
                    let mut st = v.state.write().expect("state lock");
                    // Logged when it starts failing (or fails differently), not at
                    // every poll.
                    if st.error.as_deref() != Some(e.as_str()) {
                        warn!(view = %v.def.name, error = %e, "the online store could not follow the view's source; serving its last good state");
                    }
                    st.error = Some(e);
                }
            }
        }
        changed
    }

    /// Follow the engine's warehouse for ever: refresh, catch up, sleep `every`.
    /// Spawn it and abort the task to stop.
    pub async fn follow(self: Arc<Self>, engine: Arc<Engine>, every: Duration) {
        loop {
            match engine.refresh().await {
                Ok(tables) => {
                    let n = self.catch_up(&engine, tables > 0).await;
                    if n > 0 {
                        debug!(views = n, "online store caught up");
                    }
                }
                Err(e) => {
                    warn!(error = %e, "refreshing the warehouse for the online store failed; trying again")
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

impl OnlineView {
    /// Whether the view has been built.
    pub fn is_ready(&self) -> bool {
        self.state.read().expect("state lock").layout.is_some()
    }

    /// Why the last catch-up failed, if it did.
    pub fn error(&self) -> Option<String> {
        self.state.read().expect("state lock").error.clone()
    }

    /// Where the state stands in the source's log.
    pub fn mark(&self) -> Option<Mark> {
        self.state.read().expect("state lock").mark.clone()
    }

    /// The entity's key column names.
    pub fn key_columns(&self) -> &[String] {
        &self.def.entity
    }

    /// The feature names, in order.
    pub fn feature_names(&self) -> Vec<String> {
        self.def.features.iter().map(|f| f.name.clone()).collect()
    }

    /// The variant a role with these masks on the view's source reads: `None` when
    /// the store was built without that mask set (refuse: the masks changed since),
    /// or the set masks a key column.
    pub fn variant_for(&self, masks: &[(String, String)]) -> Option<Variant> {
        if masks.is_empty() {
            return Some(Variant::Plain);
        }
        let i = self.masks.iter().position(|m| m.as_slice() == masks)?;
        let st = self.state.read().expect("state lock");
        match st.layout.as_ref() {
            Some(l) if l.variants.get(i).is_some_and(Option::is_none) => None,
            _ => Some(Variant::Masked(i)),
        }
    }

    /// Keys and rows held, and their bytes.
    pub fn memory(&self) -> Memory {
        let st = self.state.read().expect("state lock");
        let slot = std::mem::size_of::<(Box<str>, Box<[u8]>)>() + 1;
        let bytes = st
            .rows
            .iter()
            .map(|(k, r)| k.len() + r.len())
            .sum::<usize>()
            + st.rows.capacity() * slot
            + st.owners
                .iter()
                .map(|(k, e)| k.len() + e.len())
                .sum::<usize>()
            + st.owners.capacity() * slot;
        Memory {
            entities: st.rows.len(),
            bytes,
            owners: st.owners.len(),
        }
    }

    /// The schema SQL reads the view as: the entity's key columns (the source key's
    /// types), then the features (integers as BIGINT, floats as DOUBLE, timestamps
    /// in UTC, anything without a form of its own as text). `None` until built.
    pub fn arrow_schema(&self) -> Option<SchemaRef> {
        let st = self.state.read().expect("state lock");
        let l = st.layout.as_ref()?;
        Some(schema_of(&self.def, l))
    }

    /// The canonical key of `parts` (one per key column, as text): integers parsed,
    /// other types through their Arrow text form. Errors name the view and the part.
    pub fn key(&self, parts: &[&str]) -> Result<String> {
        let st = self.state.read().expect("state lock");
        let l = st.layout.as_ref().ok_or_else(|| self.not_ready())?;
        canonical_key(&self.def, &l.key_types, parts)
    }

    fn not_ready(&self) -> Error {
        Error::NotReady {
            view: self.def.name.clone(),
        }
    }

    /// Look up canonical keys ([`Self::key`]) as of `now_us` (for the TTL).
    pub fn lookup(&self, keys: &[String], variant: Variant, now_us: i64) -> Result<Vec<Found>> {
        let st = self.state.read().expect("state lock");
        let l = st.layout.as_ref().ok_or_else(|| self.not_ready())?;
        let cols = columns_of(l, variant).ok_or_else(|| {
            Error::Request(format!(
                "feature view {} masks a key column of {} for this role; it cannot be served to it",
                self.def.name,
                self.def.source()
            ))
        })?;
        let ttl = self.def.ttl.map(ttl_us);
        Ok(keys
            .iter()
            .map(|k| match st.rows.get(k.as_str()) {
                None => Found {
                    found: false,
                    stale: false,
                    event_time_us: None,
                    values: vec![Value::Null; l.features.len()],
                },
                Some(row) => {
                    let et = event_time(row);
                    if ttl.is_some_and(|ttl| et < now_us.saturating_sub(ttl)) {
                        return Found {
                            found: false,
                            stale: true,
                            event_time_us: Some(et),
                            values: vec![Value::Null; l.features.len()],
                        };
                    }
                    let all = decode(row, &l.stored);
                    Found {
                        found: true,
                        stale: false,
                        event_time_us: Some(et),
                        values: cols.iter().map(|&c| all[c].clone()).collect(),
                    }
                }
            })
            .collect())
    }

    /// The view's rows as a batch in [`Self::arrow_schema`]: the given canonical keys
    /// (absent and stale ones left out), or every entity when `keys` is `None`.
    pub fn batch(
        &self,
        keys: Option<&[String]>,
        variant: Variant,
        now_us: i64,
    ) -> Result<RecordBatch> {
        let st = self.state.read().expect("state lock");
        let l = st.layout.as_ref().ok_or_else(|| self.not_ready())?;
        let cols = columns_of(l, variant).ok_or_else(|| {
            Error::Request(format!(
                "feature view {} masks a key column of {} for this role; it cannot be served to it",
                self.def.name,
                self.def.source()
            ))
        })?;
        let ttl = self.def.ttl.map(ttl_us);
        let fresh =
            |row: &[u8]| ttl.is_none_or(|ttl| event_time(row) >= now_us.saturating_sub(ttl));
        let picked: Vec<(&str, &[u8])> = match keys {
            Some(keys) => keys
                .iter()
                .filter_map(|k| st.rows.get_key_value(k.as_str()))
                .map(|(k, r)| (k.as_ref(), r.as_ref()))
                .filter(|(_, r)| fresh(r))
                .collect(),
            None => st
                .rows
                .iter()
                .map(|(k, r)| (k.as_ref(), r.as_ref()))
                .filter(|(_, r)| fresh(r))
                .collect(),
        };
        let schema = schema_of(&self.def, l);
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (j, t) in l.key_types.iter().enumerate() {
            let text: StringArray = picked.iter().map(|(k, _)| k.split(SEP).nth(j)).collect();
            arrays.push(cast(&text, t)?);
        }
        let decoded: Vec<Vec<Value>> = picked.iter().map(|(_, r)| decode(r, &l.stored)).collect();
        for (i, &c) in cols.iter().enumerate() {
            arrays.push(build_array(
                l.features[i].1,
                decoded.iter().map(|row| &row[c]),
            )?);
        }
        Ok(RecordBatch::try_new(schema, arrays)?)
    }

    /// Bring the view up to the engine's loaded version of its source. Returns
    /// whether anything changed.
    async fn catch_up(&self, engine: &Engine, refreshed: bool) -> Result<bool> {
        let v = &self.def;
        let landed = engine.landed_schema(&v.schema, &v.table).is_some();
        let now = if landed {
            let hist = engine.loaded_history(&v.schema, &v.table).ok_or_else(|| {
                Error::definition(
                    &v.name,
                    "source",
                    format!("{} has no history log", v.source()),
                )
            })?;
            let state = tidemark_lake::committed_state(&hist).await?.state;
            Some(Mark {
                table_id: hist
                    .snapshot()
                    .map(|s| s.metadata().id().to_string())
                    .unwrap_or_default(),
                version: hist.version().map_or(-1, |v| v as i64),
                ingest_us: state.last_ingest_us.unwrap_or(i64::MIN),
            })
        } else {
            None
        };
        let (old, layout) = {
            let st = self.state.read().expect("state lock");
            (st.mark.clone(), st.layout.clone())
        };
        let started = Instant::now();
        match (&old, &now, layout) {
            // The same log, moved on: apply what landed since.
            (Some(o), Some(n), Some(layout))
                if o.table_id == n.table_id && o.version <= n.version =>
            {
                if o.ingest_us == n.ingest_us {
                    let mut st = self.state.write().expect("state lock");
                    st.mark = Some(n.clone());
                    st.error = None;
                    return Ok(false);
                }
                let plan = plan(engine, v, &self.masks, None).await?;
                if plan.layout != *layout {
                    info!(view = %v.name, "the source's shape changed; rebuilding the online view");
                    self.rebuild(engine, now.clone()).await?;
                } else {
                    let n_keys = self
                        .apply(engine, &layout, o.ingest_us, n.ingest_us)
                        .await?;
                    let mut st = self.state.write().expect("state lock");
                    st.mark = Some(n.clone());
                    st.error = None;
                    debug!(view = %v.name, keys = n_keys, ms = started.elapsed().as_millis() as u64, "online view followed its source");
                }
                Ok(true)
            }
            // Not landed (a job's table, a model view): no log to follow, so read
            // again whole when the engine has new commits of anything.
            (None, None, Some(_)) => {
                // Which table the engine's new commits were to is not known here, so
                // any marks the view dirty; a dirty view is read again at most every
                // UNLOGGED_EVERY, so capture's commit a second does not mean a full
                // read a poll.
                let due = {
                    let mut st = self.state.write().expect("state lock");
                    st.dirty |= refreshed;
                    st.dirty && st.read_at.is_none_or(|t| t.elapsed() >= UNLOGGED_EVERY)
                };
                if !due {
                    return Ok(false);
                }
                self.rebuild(engine, None).await?;
                Ok(true)
            }
            _ => {
                self.rebuild(engine, now.clone()).await?;
                info!(view = %v.name, entities = self.memory().entities, ms = started.elapsed().as_millis() as u64, "online view built from the lake");
                Ok(true)
            }
        }
    }

    /// Read the whole view and swap it in.
    async fn rebuild(&self, engine: &Engine, mark: Option<Mark>) -> Result<()> {
        let p = plan(engine, &self.def, &self.masks, None).await?;
        let layout = Arc::new(p.layout.clone());
        let mut rows = HashMap::new();
        let mut owners = HashMap::new();
        if !layout.exact && !layout.pk.is_empty() {
            for b in p.owners.collect().await? {
                owner_pairs(&b, layout.pk.len(), layout.key_types.len(), |pk, e| {
                    owners.insert(pk, e);
                })?;
            }
        }
        for b in p.winners.collect().await? {
            rows.reserve(b.num_rows());
            encode_rows(&b, &layout, |k, r| {
                rows.insert(k, r);
            })?;
        }
        let mut st = self.state.write().expect("state lock");
        st.rows = rows;
        st.owners = owners;
        st.layout = Some(layout);
        st.mark = mark;
        st.error = None;
        st.dirty = false;
        st.read_at = Some(Instant::now());
        Ok(())
    }

    /// Apply the log rows landed in `(from_us, to_us]`: recompute the entities they
    /// touch. Returns how many entities were recomputed.
    async fn apply(
        &self,
        engine: &Engine,
        layout: &Layout,
        from_us: i64,
        to_us: i64,
    ) -> Result<usize> {
        let v = &self.def;
        let ctx = engine.session_context();
        let ts = engine.landed_schema(&v.schema, &v.table).ok_or_else(|| {
            Error::definition(&v.name, "source", format!("{} is not landed", v.source()))
        })?;
        let hist = engine.loaded_history(&v.schema, &v.table).ok_or_else(|| {
            Error::definition(
                &v.name,
                "source",
                format!("{} has no history log", v.source()),
            )
        })?;
        let log =
            tidemark_lake::mor::logical_log(&ctx, &ts, tidemark_lake::provider(&hist).await?)?;
        let ingest = || c(INGEST_TS);
        let since = ctx.read_table(log)?.filter(
            ingest()
                .gt(lit(tidemark_lake::mor::ingest_literal(from_us)))
                .and(ingest().lt_eq(lit(tidemark_lake::mor::ingest_literal(to_us)))),
        )?;
        // The touched source keys (as the entity's columns for an exact view).
        let touched_cols: Vec<String> = if layout.exact {
            v.join_on.clone()
        } else {
            layout.pk.clone()
        };
        let touched = since
            .select(touched_cols.iter().map(|k| c(k)).collect::<Vec<_>>())?
            .distinct()?;
        let tschema = Arc::new(touched.schema().as_arrow().clone());
        let touched = concat_batches(&tschema, &touched.collect().await?)?;
        if touched.num_rows() == 0 {
            return Ok(0);
        }
        let entities: RecordBatch = if layout.exact {
            touched
        } else {
            // Old owners of the touched source keys, and their owners now.
            let now = plan(
                engine,
                v,
                &self.masks,
                Some(KeyFilter {
                    cols: layout.pk.clone(),
                    keys: touched.clone(),
                }),
            )
            .await?;
            let mut new_owners: Vec<(Box<str>, Box<str>)> = Vec::new();
            for b in now.owners.collect().await? {
                owner_pairs(&b, layout.pk.len(), layout.key_types.len(), |pk, e| {
                    new_owners.push((pk, e))
                })?;
            }
            let touched_pks = canonical_column_keys(touched.columns())?;
            let mut affected: HashSet<Box<str>> = HashSet::new();
            {
                let mut st = self.state.write().expect("state lock");
                for pk in &touched_pks {
                    if let Some(e) = st.owners.remove(pk.as_str()) {
                        affected.insert(e);
                    }
                }
                for (pk, e) in new_owners {
                    affected.insert(e.clone());
                    st.owners.insert(pk, e);
                }
            }
            if affected.is_empty() {
                return Ok(0);
            }
            keys_batch(&layout.key_types, affected.iter().map(|k| k.as_ref()))?
        };
        let n = entities.num_rows();
        let keys = canonical_column_keys(entities.columns())?;
        let p = plan(
            engine,
            v,
            &self.masks,
            Some(KeyFilter {
                cols: v.join_on.clone(),
                keys: entities,
            }),
        )
        .await?;
        let mut fresh: Vec<(Box<str>, Box<[u8]>)> = Vec::new();
        for b in p.winners.collect().await? {
            encode_rows(&b, layout, |k, r| fresh.push((k, r)))?;
        }
        let mut st = self.state.write().expect("state lock");
        for k in keys {
            st.rows.remove(k.as_str());
        }
        for (k, r) in fresh {
            st.rows.insert(k, r);
        }
        Ok(n)
    }
}

/// Keys to restrict a plan to: source columns and their values.
struct KeyFilter {
    cols: Vec<String>,
    keys: RecordBatch,
}

/// A view's plans: the winners per entity (key columns `__tm_k*`, `__tm_et`, the
/// stored columns `__tm_s*`) and, for views not keyed by the source key, the current
/// (source key, entity) pairs (`__tm_pk*`, `__tm_k*`).
struct Plan {
    layout: Layout,
    winners: DataFrame,
    owners: DataFrame,
}

fn c(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn ttl_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

async fn plan(
    engine: &Engine,
    v: &FeatureView,
    masks: &[MaskSet],
    keys: Option<KeyFilter>,
) -> Result<Plan> {
    let ctx: SessionContext = engine.session_context();
    let landed = engine.landed_schema(&v.schema, &v.table);
    let missing = || {
        Error::definition(
            &v.name,
            "source",
            format!("no table or model {} in the warehouse", v.source()),
        )
    };
    let source = match v.read {
        Read::History => {
            if landed.is_none() {
                return Err(Error::definition(
                    &v.name,
                    "source",
                    format!("{} has no history; set read = \"table\" with an event_time column, or read a table with history", v.source()),
                ));
            }
            ctx.table(TableReference::full(
                CATALOG,
                history_schema(&v.schema),
                v.table.as_str(),
            ))
            .await
            .map_err(|_| missing())?
            // The versions valid now: the training set's rule at t = now.
            .filter(c(VALID_TO).is_null())?
        }
        Read::Table => ctx
            .table(TableReference::full(
                CATALOG,
                v.schema.as_str(),
                v.table.as_str(),
            ))
            .await
            .map_err(|_| missing())?,
    };
    let column_type = |field: &str, name: &str| source_column_type(v, &source, field, name);
    let key_types = v
        .join_on
        .iter()
        .map(|k| column_type("join_on", k))
        .collect::<Result<Vec<_>>>()?;
    let event_time = match &v.event_time {
        Some(e) => {
            column_type("event_time", e)?;
            cast_expr(c(e), utc())
        }
        None => c(VALID_FROM),
    };
    let pk: Vec<String> = landed
        .as_ref()
        .map(|ts| ts.key_names().iter().map(|k| k.to_string()).collect())
        .unwrap_or_default();
    let exact =
        landed.is_some() && pk.len() == v.join_on.len() && pk.iter().all(|k| v.join_on.contains(k));
    let mut features = Vec::with_capacity(v.features.len());
    for (i, f) in v.features.iter().enumerate() {
        features.push(source.parse_sql_expr(&f.sql).map_err(|e| {
            Error::definition(
                &v.name,
                format!("features[{i}]"),
                format!("{:?}: {}", f.sql, tidemark_query::error_message(&e)),
            )
        })?);
    }
    // Masked variants: each feature that reads a masked column, computed over the
    // mask instead (as SQL would show the source to that role).
    let mut extra: Vec<Expr> = Vec::new();
    let mut variants: Vec<Option<Vec<usize>>> = Vec::new();
    for set in masks {
        if set.iter().any(|(col, _)| v.join_on.contains(col)) {
            variants.push(None);
            continue;
        }
        let mut replace: HashMap<String, Expr> = HashMap::new();
        for (col, sql) in set {
            let Ok(t) = column_type("source", col) else {
                continue;
            };
            let m = source.parse_sql_expr(sql).map_err(|e| {
                Error::definition(
                    &v.name,
                    "source",
                    format!(
                        "the mask on {}.{col} ({sql:?}) does not plan: {}",
                        v.source(),
                        tidemark_query::error_message(&e)
                    ),
                )
            })?;
            replace.insert(col.clone(), cast_expr(m, t));
        }
        let mut cols = Vec::with_capacity(features.len());
        for (j, f) in features.iter().enumerate() {
            let reads_masked = f
                .column_refs()
                .iter()
                .any(|col| replace.contains_key(&col.name));
            if !reads_masked {
                cols.push(j);
                continue;
            }
            let masked = f
                .clone()
                .transform(|e| match e {
                    Expr::Column(col) if replace.contains_key(&col.name) => {
                        Ok(Transformed::yes(replace[&col.name].clone()))
                    }
                    other => Ok(Transformed::no(other)),
                })?
                .data;
            cols.push(features.len() + extra.len());
            extra.push(masked);
        }
        variants.push(Some(cols));
    }

    let mut source = source;
    let mut not_null = event_time.clone().is_not_null();
    for k in &v.join_on {
        not_null = not_null.and(c(k).is_not_null());
    }
    source = source.filter(not_null)?;
    if let Some(kf) = keys {
        source = source.filter(key_filter(&kf)?)?;
    }
    let mut sel: Vec<Expr> = Vec::new();
    for (j, k) in v.join_on.iter().enumerate() {
        sel.push(c(k).alias(format!("__tm_k{j}")));
    }
    sel.push(event_time.alias("__tm_et"));
    if v.read == Read::History {
        sel.push(c(VALID_FROM).alias("__tm_vf"));
    }
    for (j, k) in pk.iter().enumerate() {
        sel.push(c(k).alias(format!("__tm_pk{j}")));
    }
    for (j, e) in features.into_iter().chain(extra).enumerate() {
        sel.push(e.alias(format!("__tm_s{j}")));
    }
    let projected = source.select(sel)?;
    // Stored columns in the store's forms.
    let mut stored = Vec::new();
    let mut norm: Vec<Expr> = Vec::new();
    for f in projected.schema().fields() {
        let name = f.name();
        if name.starts_with("__tm_s") {
            let (kind, t) = Kind::of(f.data_type());
            stored.push(kind);
            norm.push(cast_expr(c(name), t).alias(name));
        } else {
            norm.push(c(name));
        }
    }
    let projected = projected.select(norm)?;
    let owners = projected.clone().select(
        (0..pk.len())
            .map(|j| c(&format!("__tm_pk{j}")))
            .chain((0..v.join_on.len()).map(|j| c(&format!("__tm_k{j}"))))
            .collect::<Vec<_>>(),
    )?;
    let winners = if exact {
        projected
    } else {
        // Several rows per entity: the training set's winner.
        let mut order = vec![c("__tm_et").sort(false, false)];
        if v.read == Read::History {
            order.push(c("__tm_vf").sort(false, false));
        }
        order.extend((0..pk.len()).map(|j| c(&format!("__tm_pk{j}")).sort(true, false)));
        let rn = row_number()
            .partition_by(
                (0..v.join_on.len())
                    .map(|j| c(&format!("__tm_k{j}")))
                    .collect(),
            )
            .order_by(order)
            .build()?
            .alias("__tm_rn");
        let mut all: Vec<Expr> = projected
            .schema()
            .fields()
            .iter()
            .map(|f| c(f.name()))
            .collect();
        all.push(rn);
        projected.select(all)?.filter(c("__tm_rn").eq(lit(1u64)))?
    };
    Ok(Plan {
        layout: Layout {
            key_types,
            features: v
                .features
                .iter()
                .zip(&stored)
                .map(|(f, k)| (f.name.clone(), *k))
                .collect(),
            variants,
            stored,
            exact,
            pk,
        },
        winners,
        owners,
    })
}

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// `cols IN keys`: an `IN` list for a few keys of one column (statistics prune by
/// it), the key-set function otherwise.
fn key_filter(kf: &KeyFilter) -> Result<Expr> {
    let cols: Vec<Expr> = kf.cols.iter().map(|k| c(k)).collect();
    if kf.cols.len() == 1 && kf.keys.num_rows() <= IN_LIST_MAX {
        let a = kf.keys.column(0);
        let list = (0..a.len())
            .map(|i| ScalarValue::try_from_array(a, i).map(lit))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        return Ok(cols[0].clone().in_list(list, false));
    }
    tidemark_lake::keyset::key_in(cols, &kf.keys).map_err(Error::Request)
}

/// The canonical text of each row's key (columns in key order).
fn canonical_column_keys(columns: &[ArrayRef]) -> Result<Vec<String>> {
    let text: Vec<StringArray> = columns
        .iter()
        .map(|a| {
            let t = cast(a, &DataType::Utf8)?;
            Ok(t.as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8")
                .clone())
        })
        .collect::<Result<_>>()?;
    let n = columns.first().map_or(0, |a| a.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut k = String::new();
        for (j, t) in text.iter().enumerate() {
            if j > 0 {
                k.push(SEP);
            }
            k.push_str(t.value(i));
        }
        out.push(k);
    }
    Ok(out)
}

/// Canonical keys back as a typed batch (`key_types`), for a key filter.
fn keys_batch<'a>(
    key_types: &[DataType],
    keys: impl Iterator<Item = &'a str>,
) -> Result<RecordBatch> {
    let keys: Vec<&str> = keys.collect();
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    for (j, t) in key_types.iter().enumerate() {
        let text: StringArray = keys.iter().map(|k| k.split(SEP).nth(j)).collect();
        arrays.push(cast(&text, t)?);
        fields.push(Field::new(format!("k{j}"), t.clone(), true));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// The canonical key of lookup parts.
fn canonical_key(v: &FeatureView, key_types: &[DataType], parts: &[&str]) -> Result<String> {
    if parts.len() != key_types.len() {
        return Err(Error::Request(format!(
            "feature view {} is keyed by {} ({} column{}); got {} key part{}",
            v.name,
            v.entity.join(", "),
            key_types.len(),
            if key_types.len() == 1 { "" } else { "s" },
            parts.len(),
            if parts.len() == 1 { "" } else { "s" },
        )));
    }
    let mut out = String::new();
    for (j, (part, t)) in parts.iter().zip(key_types).enumerate() {
        if j > 0 {
            out.push(SEP);
        }
        let bad = |what: &str| {
            Error::Request(format!(
                "feature view {}: key {} = {part:?} is not {what}",
                v.name, v.entity[j]
            ))
        };
        if part.contains(SEP) {
            return Err(bad("a key value (it holds the unit separator U+001F)"));
        }
        match t {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => {
                let n: i128 = part.trim().parse().map_err(|_| bad("an integer"))?;
                out.push_str(&n.to_string());
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => out.push_str(part),
            other => {
                let a = cast(&StringArray::from(vec![*part]), other)
                    .ok()
                    .filter(|a| !a.is_null(0))
                    .ok_or_else(|| bad(&format!("a {other}")))?;
                let back = cast(&a, &DataType::Utf8)?;
                let back = back
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("cast to Utf8");
                out.push_str(back.value(0));
            }
        }
    }
    Ok(out)
}

fn schema_of(v: &FeatureView, l: &Layout) -> SchemaRef {
    let mut fields: Vec<Field> = v
        .entity
        .iter()
        .zip(&l.key_types)
        .map(|(n, t)| Field::new(n, t.clone(), false))
        .collect();
    for (name, kind) in &l.features {
        fields.push(Field::new(name, kind_type(*kind), true));
    }
    Arc::new(Schema::new(fields))
}

fn kind_type(k: Kind) -> DataType {
    match k {
        Kind::Bool => DataType::Boolean,
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Text => DataType::Utf8,
        Kind::Date => DataType::Date32,
        Kind::Timestamp => utc(),
        Kind::Decimal(p, s) => DataType::Decimal128(p, s),
    }
}

/// Stored column indices of a variant.
fn columns_of(l: &Layout, variant: Variant) -> Option<Vec<usize>> {
    match variant {
        Variant::Plain => Some((0..l.features.len()).collect()),
        Variant::Masked(i) => l.variants.get(i).cloned().flatten(),
    }
}

// ---- compact rows ----------------------------------------------------------

fn event_time(row: &[u8]) -> i64 {
    i64::from_le_bytes(
        row[..8]
            .try_into()
            .expect("a row starts with its event time"),
    )
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(row: &[u8], at: &mut usize) -> u64 {
    let mut n = 0u64;
    let mut shift = 0;
    loop {
        let b = row[*at];
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return n;
        }
        shift += 7;
    }
}

/// Encode each row of a winners batch; `emit(key, row)`.
fn encode_rows(
    b: &RecordBatch,
    l: &Layout,
    mut emit: impl FnMut(Box<str>, Box<[u8]>),
) -> Result<()> {
    let nk = l.key_types.len();
    let keys = canonical_column_keys(
        &(0..nk)
            .map(|j| {
                b.column_by_name(&format!("__tm_k{j}"))
                    .expect("key column")
                    .clone()
            })
            .collect::<Vec<_>>(),
    )?;
    let et = cast(b.column_by_name("__tm_et").expect("event time"), &utc())?;
    let et = et
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .expect("cast to timestamps");
    let stored: Vec<&ArrayRef> = (0..l.stored.len())
        .map(|j| {
            b.column_by_name(&format!("__tm_s{j}"))
                .expect("stored column")
        })
        .collect();
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    for (i, key) in keys.into_iter().enumerate() {
        buf.clear();
        buf.extend_from_slice(&et.value(i).to_le_bytes());
        for (a, kind) in stored.iter().zip(&l.stored) {
            if a.is_null(i) {
                buf.push(0);
                continue;
            }
            buf.push(1);
            match kind {
                Kind::Bool => {
                    let a = a.as_any().downcast_ref::<BooleanArray>().expect("bool");
                    buf.push(u8::from(a.value(i)));
                }
                Kind::Int => {
                    let a = a.as_any().downcast_ref::<Int64Array>().expect("int64");
                    put_varint(&mut buf, zigzag(a.value(i)));
                }
                Kind::Float => {
                    let a = a.as_any().downcast_ref::<Float64Array>().expect("float64");
                    buf.extend_from_slice(&a.value(i).to_le_bytes());
                }
                Kind::Text => {
                    let a = a.as_any().downcast_ref::<StringArray>().expect("utf8");
                    let s = a.value(i).as_bytes();
                    put_varint(&mut buf, s.len() as u64);
                    buf.extend_from_slice(s);
                }
                Kind::Date => {
                    let a = a.as_any().downcast_ref::<Date32Array>().expect("date32");
                    put_varint(&mut buf, zigzag(i64::from(a.value(i))));
                }
                Kind::Timestamp => {
                    let a = a
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .expect("timestamp");
                    put_varint(&mut buf, zigzag(a.value(i)));
                }
                Kind::Decimal(..) => {
                    let a = a
                        .as_any()
                        .downcast_ref::<Decimal128Array>()
                        .expect("decimal");
                    buf.extend_from_slice(&a.value(i).to_le_bytes());
                }
            }
        }
        emit(key.into_boxed_str(), buf.clone().into_boxed_slice());
    }
    Ok(())
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

fn decode(row: &[u8], kinds: &[Kind]) -> Vec<Value> {
    let mut at = 8;
    let mut out = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let tag = row[at];
        at += 1;
        if tag == 0 {
            out.push(Value::Null);
            continue;
        }
        out.push(match kind {
            Kind::Bool => {
                at += 1;
                Value::Bool(row[at - 1] != 0)
            }
            Kind::Int => Value::Int(unzigzag(get_varint(row, &mut at))),
            Kind::Float => {
                at += 8;
                Value::Float(f64::from_le_bytes(
                    row[at - 8..at].try_into().expect("8 bytes"),
                ))
            }
            Kind::Text => {
                let n = get_varint(row, &mut at) as usize;
                at += n;
                Value::Text(String::from_utf8_lossy(&row[at - n..at]).into_owned())
            }
            Kind::Date => Value::Date(unzigzag(get_varint(row, &mut at)) as i32),
            Kind::Timestamp => Value::Timestamp(unzigzag(get_varint(row, &mut at))),
            Kind::Decimal(p, s) => {
                at += 16;
                Value::Decimal(
                    i128::from_le_bytes(row[at - 16..at].try_into().expect("16 bytes")),
                    *p,
                    *s,
                )
            }
        });
    }
    out
}

fn build_array<'a>(kind: Kind, values: impl Iterator<Item = &'a Value>) -> Result<ArrayRef> {
    let a: ArrayRef = match kind {
        Kind::Bool => {
            let mut b = BooleanBuilder::new();
            for v in values {
                b.append_option(match v {
                    Value::Bool(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Int => {
            let mut b = Int64Builder::new();
            for v in values {
                b.append_option(match v {
                    Value::Int(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Float => {
            let mut b = Float64Builder::new();
            for v in values {
                b.append_option(match v {
                    Value::Float(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Text => {
            let mut b = StringBuilder::new();
            for v in values {
                match v {
                    Value::Text(x) => b.append_value(x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Date => {
            let mut b = Date32Builder::new();
            for v in values {
                b.append_option(match v {
                    Value::Date(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Timestamp => {
            let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            for v in values {
                b.append_option(match v {
                    Value::Timestamp(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Decimal(p, s) => {
            let mut b = Decimal128Builder::new().with_precision_and_scale(p, s)?;
            for v in values {
                b.append_option(match v {
                    Value::Decimal(x, ..) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
    };
    Ok(a)
}

/// (source key, entity) pairs of an owners batch, canonical.
fn owner_pairs(
    b: &RecordBatch,
    npk: usize,
    nk: usize,
    mut emit: impl FnMut(Box<str>, Box<str>),
) -> Result<()> {
    let pks = canonical_column_keys(&b.columns()[..npk])?;
    let es = canonical_column_keys(&b.columns()[npk..npk + nk])?;
    for (p, e) in pks.into_iter().zip(es) {
        emit(p.into_boxed_str(), e.into_boxed_str());
    }
    Ok(())
}

// ---- snapshots -------------------------------------------------------------

const MAGIC: &[u8; 8] = b"TMFEAT01";
const END: &[u8; 8] = b"TMFEAEND";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Header {
    view: String,
    /// The view's definition, its mask sets and its plan's layout: a snapshot of
    /// another definition is not loaded.
    fingerprint: String,
    mark: Option<Mark>,
    rows: u64,
    owners: u64,
}

/// Where a view's snapshot lives: `<warehouse>/.tidemark/features/online/<view>.bin`.
fn snapshot_path(view: &str) -> String {
    format!(".tidemark/features/online/{view}.bin")
}

impl OnlineView {
    fn fingerprint(&self, l: &Layout) -> String {
        format!("{:?}|{:?}|{}", self.def, self.masks, l.describe())
    }

    /// The state as bytes: a header (JSON) with the log mark it reflects, then the
    /// rows, then an end marker, so a torn file is never taken for a whole one.
    fn encode(&self) -> Option<(Vec<u8>, usize)> {
        let st = self.state.read().expect("state lock");
        let l = st.layout.as_ref()?;
        let header = Header {
            view: self.def.name.clone(),
            fingerprint: self.fingerprint(l),
            mark: st.mark.clone(),
            rows: st.rows.len() as u64,
            owners: st.owners.len() as u64,
        };
        let header = serde_json::to_vec(&header).expect("a header serializes");
        let mut out = Vec::with_capacity(
            64 + header.len()
                + st.rows
                    .iter()
                    .map(|(k, r)| k.len() + r.len() + 4)
                    .sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        put_varint(&mut out, header.len() as u64);
        out.extend_from_slice(&header);
        for (k, r) in &st.rows {
            put_varint(&mut out, k.len() as u64);
            out.extend_from_slice(k.as_bytes());
            put_varint(&mut out, r.len() as u64);
            out.extend_from_slice(r);
        }
        for (k, e) in &st.owners {
            put_varint(&mut out, k.len() as u64);
            out.extend_from_slice(k.as_bytes());
            put_varint(&mut out, e.len() as u64);
            out.extend_from_slice(e.as_bytes());
        }
        out.extend_from_slice(END);
        Some((out, st.rows.len()))
    }

    /// Load a snapshot made by [`Self::encode`] when it is whole and of this view's
    /// definition and plan; `Ok(false)` when it is not (then the view is built).
    fn decode_snapshot(&self, bytes: &[u8], layout: Layout) -> Result<bool> {
        let torn = || Ok(false);
        if bytes.len() < 16 || &bytes[..8] != MAGIC || &bytes[bytes.len() - 8..] != END {
            return torn();
        }
        let body = &bytes[..bytes.len() - 8];
        let mut at = 8;
        /// One length-prefixed field; `None` past the end (a torn file).
        fn field<'a>(body: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
            if *at >= body.len() || body[*at..].iter().take(10).all(|b| *b >= 0x80) {
                return None;
            }
            let n = get_varint(body, at) as usize;
            let s = body.get(*at..at.checked_add(n)?)?;
            *at += n;
            Some(s)
        }
        let read = |at: &mut usize| field(body, at);
        let Some(h) = read(&mut at) else {
            return torn();
        };
        let Ok(h) = serde_json::from_slice::<Header>(h) else {
            return torn();
        };
        if h.view != self.def.name || h.fingerprint != self.fingerprint(&layout) {
            info!(view = %self.def.name, "the online snapshot is of another definition; rebuilding");
            return Ok(false);
        }
        let mut rows = HashMap::with_capacity(h.rows as usize);
        for _ in 0..h.rows {
            let (Some(k), Some(r)) = (read(&mut at), read(&mut at)) else {
                return torn();
            };
            let Ok(k) = std::str::from_utf8(k) else {
                return torn();
            };
            rows.insert(Box::from(k), Box::from(r));
        }
        let mut owners = HashMap::with_capacity(h.owners as usize);
        for _ in 0..h.owners {
            let (Some(k), Some(e)) = (read(&mut at), read(&mut at)) else {
                return torn();
            };
            let (Ok(k), Ok(e)) = (std::str::from_utf8(k), std::str::from_utf8(e)) else {
                return torn();
            };
            owners.insert(Box::from(k), Box::from(e));
        }
        if at != body.len() {
            return torn();
        }
        let mut st = self.state.write().expect("state lock");
        st.rows = rows;
        st.owners = owners;
        st.layout = Some(Arc::new(layout));
        st.mark = h.mark;
        st.error = None;
        Ok(true)
    }
}

/// Where snapshots are written: the warehouse's object store (a put is atomic there),
/// or for a local warehouse its directory (written aside, synced, renamed).
enum Place {
    Local(std::path::PathBuf),
    Store(
        Arc<dyn tidemark_lake::object_store::ObjectStore>,
        tidemark_lake::object_store::path::Path,
    ),
}

fn place(wh: &tidemark_lake::Warehouse) -> Result<Place> {
    if let Some((store, root)) = wh.object_store() {
        return Ok(Place::Store(store, root));
    }
    let dir = wh
        .root()
        .to_file_path()
        .map_err(|_| Error::Request(format!("warehouse {} is not a local path", wh.root())))?;
    Ok(Place::Local(dir))
}

/// What [`OnlineStore::load`] and [`OnlineStore::save`] did per view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The view.
    pub view: String,
    /// Entities in it.
    pub entities: usize,
    /// Its size in bytes.
    pub bytes: usize,
}

impl OnlineStore {
    /// Load each view's snapshot, when there is one of its current definition; the
    /// next [`Self::catch_up`] applies what landed since the versions it reflects
    /// (and builds the views that had none). Returns the snapshots loaded.
    pub async fn load(
        &self,
        engine: &Engine,
        wh: &tidemark_lake::Warehouse,
    ) -> Result<Vec<Snapshot>> {
        let place = place(wh)?;
        let mut out = Vec::new();
        for v in self.views.values() {
            let path = snapshot_path(&v.def.name);
            let bytes = match &place {
                Place::Local(dir) => match tokio::fs::read(dir.join(&path)).await {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => {
                        return Err(Error::Io {
                            path: dir.join(&path),
                            source,
                        })
                    }
                },
                Place::Store(store, root) => {
                    let p = root
                        .clone()
                        .join(".tidemark")
                        .join("features")
                        .join("online")
                        .join(format!("{}.bin", v.def.name).as_str());
                    match store.get(&p).await {
                        Ok(r) => r
                            .bytes()
                            .await
                            .map_err(|e| Error::Request(format!("reading {p}: {e}")))?
                            .to_vec(),
                        Err(tidemark_lake::object_store::Error::NotFound { .. }) => continue,
                        Err(e) => return Err(Error::Request(format!("reading {p}: {e}"))),
                    }
                }
            };
            // The layout comes from planning the view now (not running it): a
            // snapshot of another shape is not loaded.
            let layout = match plan(engine, &v.def, &v.masks, None).await {
                Ok(p) => p.layout,
                Err(e) => {
                    warn!(view = %v.def.name, error = %e, "the online view does not plan; its snapshot is not loaded");
                    continue;
                }
            };
            if v.decode_snapshot(&bytes, layout)? {
                out.push(Snapshot {
                    view: v.def.name.clone(),
                    entities: v.memory().entities,
                    bytes: bytes.len(),
                });
            } else {
                warn!(view = %v.def.name, "the online snapshot is incomplete or of another definition; the view is built from the lake");
            }
        }
        Ok(out)
    }

    /// Write each built view's snapshot (only `only`, when given), atomically: a
    /// reader (or a restart after a kill) finds the previous snapshot or this one,
    /// never a mix.
    pub async fn save(
        &self,
        wh: &tidemark_lake::Warehouse,
        only: &[String],
    ) -> Result<Vec<Snapshot>> {
        let place = place(wh)?;
        let mut out = Vec::new();
        for v in self.views.values() {
            if !only.is_empty() && !only.contains(&v.def.name) {
                continue;
            }
            let Some((bytes, entities)) = v.encode() else {
                continue;
            };
            let path = snapshot_path(&v.def.name);
            match &place {
                Place::Local(dir) => {
                    let target = dir.join(&path);
                    let parent = target
                        .parent()
                        .expect("a snapshot path has a directory")
                        .to_path_buf();
                    let tmp = parent.join(format!(".{}.bin.partial", v.def.name));
                    let bytes2 = bytes.clone();
                    let (t2, tmp2) = (target.clone(), tmp.clone());
                    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                        use std::io::Write;
                        std::fs::create_dir_all(&parent)?;
                        let mut f = std::fs::File::create(&tmp2)?;
                        f.write_all(&bytes2)?;
                        // On disk before the rename makes it the snapshot.
                        f.sync_all()?;
                        std::fs::rename(&tmp2, &t2)?;
                        std::fs::File::open(&parent)?.sync_all()
                    })
                    .await
                    .map_err(|e| Error::Request(format!("writing the snapshot: {e}")))?
                    .map_err(|source| Error::Io {
                        path: target,
                        source,
                    })?;
                }
                Place::Store(store, root) => {
                    let p = root
                        .clone()
                        .join(".tidemark")
                        .join("features")
                        .join("online")
                        .join(format!("{}.bin", v.def.name).as_str());
                    store
                        .put(&p, bytes.clone().into())
                        .await
                        .map_err(|e| Error::Request(format!("writing {p}: {e}")))?;
                }
            }
            out.push(Snapshot {
                view: v.def.name.clone(),
                entities,
                bytes: bytes.len(),
            });
        }
        Ok(out)
    }
}
