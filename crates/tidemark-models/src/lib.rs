//! # tidemark-models
//!
//! SQL models: the merge step of the old design (dbt on Spark) inside tidemark. A
//! directory of `.sql` files, each one SELECT templated with minijinja (`ref`,
//! `source`, `this`, `is_incremental`, `var`, `config`), lands as tables with history
//! of their own.
//!
//! Where it sits: after the catalog. Sources land tables; the query engine
//! (tidemark-query) reads them; a build here plans each model on that engine and lands
//! its result with the same writer capture uses (tidemark-lake), so a model is a
//! table like any other: `schema.model`, `schema_history.model`, `FOR SYSTEM_TIME AS
//! OF`, `changes()`, compaction, grants by schema.
//!
//! ```text
//! models/*.sql ─► project (render, settings) ─► graph (reads, order, selectors)
//!      ─► build: plan on the engine ─► result ─► diff by key ─► one history commit
//!                                                 (rows + input versions + build)
//! ```
//!
//! * [`project`]: reading the directory; settings from `{{ config(…) }}` over a
//!   sidecar `<name>.toml`; broken models kept with their error.
//! * [`render`]: the template functions.
//! * [`graph`]: the tables a model reads (DataFusion's resolver over the parsed
//!   statement), build order, cycles, selectors.
//! * [`land`]: a result as a tidemark table: types, keys, evolution, the commit.
//! * [`build`]: the build itself.
//! * [`drift`]: whether a model's table equals its SQL run now (equivalence tests).
//! * [`record`]: data-test outcomes kept in `tidemark.model_tests`.
//! * [`defer`]: a build of one environment reading another's warehouse, read-only
//!   (dbt's `defer`): `[environments.dev] defer_to = "prod"`.
//!
//! Incremental models merge by `unique_key` (the default) or append
//! (`incremental_strategy = 'append'`): see [`incremental`].
//!
//! Exactly once: each build's commit carries its number, SQL hash and the Delta
//! versions of the inputs it read ([`tidemark_core::position::ModelProgress`]). A
//! model whose SQL and inputs are unchanged is up to date, so a build retried after
//! a crash does not land twice.

pub mod build;
pub mod defer;
pub mod drift;
pub mod error;
pub mod graph;
pub mod incremental;
pub mod land;
pub mod project;
pub mod record;
pub mod render;
pub mod testing;

pub use build::{build, test, Built, Options, Outcome, Report, Tested};
pub use defer::{deferred_to, open, open_for_queries, Defer, OpenError};
pub use error::{Error, Result};
pub use project::{Materialized, Model, Project, Strategy};
pub use record::RanBy;
