//! # tidemark-features
//!
//! The offline half of tidemark's feature store: feature views and point-in-time
//! correct training sets, read straight from the warehouse's history. There is no
//! export job and no copy: every version of every row, with its validity and its
//! landing instant, is already in the lake, and that is the offline store.
//!
//! Where it sits: above `tidemark-query` (whose engine provides the tables, the
//! history views `<schema>_history.<table>` over the closed layout, and the raw
//! history logs), beside `tidemark-models` (a view may read a model: models land
//! with history like any table). The binary's `tidemark features training-set`
//! parses arguments and calls [`training_set`] then [`write`].
//!
//! * [`view`]: `[features.VIEW]` of the config file (tidemark-core keeps them as raw
//!   tables) as typed [`FeatureView`]s: source, entity key, event time, features
//!   (columns or SQL expressions), TTL, tags, description, owner.
//! * [`training`]: the point-in-time join, as a DataFusion logical plan: per view a
//!   LEFT join of the entity rows to the source on the key with the instant in the
//!   join filter (validity for the event clock; the last change landed by `t` for
//!   the known clock), pruned by literal bounds from the entity rows' instants.
//! * [`output`]: the plan streamed to Parquet or CSV with a progress bar.
//!
//! Why two clocks: the event clock answers "what was true at `t`" (including
//! corrections that landed after `t`: right for labels and for backfilled
//! features); the known clock answers "what would the online store have served at
//! `t`" (a correction landed after `t` is invisible), the one that does not leak
//! later backfills into training rows. See docs/features.md.

#![warn(missing_docs)]

mod error;
pub mod online;
pub mod output;
pub mod table;
pub mod training;
pub mod view;

pub use error::{Error, Result};
pub use online::{Found, MaskSet, Memory, OnlineStore, OnlineView, Value, Variant};
pub use output::{write, Format, Written};
pub use table::OnlineTable;
pub use training::{training_set, Clock, Entities, Request, TrainingSet};
pub use view::{Feature, FeatureView, FeatureViews, Read};
