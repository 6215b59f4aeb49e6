//! A landed table evolving to its source's new definition, for every source alike:
//! the binlog sees the DDL statement, an event stream sees a column its table lacks;
//! both end here.
//!
//! In place when the old values carry over exactly (a column added, dropped or
//! widened; see `tidemark_core::evolve`), in two commits: the first changes the
//! schema and records what the existing rows owe (`SourceState::pending_fill`: rows
//! that got an added column's default owe a new version each), the second pays it.
//! A crash in between is paid by whoever opens the table next ([`fill`]).

use anyhow::{Context, Result};
use tidemark_core::evolve::Evolution;
use tidemark_core::position::{DefaultFill, SourceState};
use tidemark_core::schema::TableSchema;
use tidemark_lake::{stored_schema, TableKind, TableWriter};
use tidemark_mysql::connect::Source as MySql;
use tidemark_mysql::ddl::added_defaults;

/// What [`evolve_in_place`] did.
#[derive(Debug)]
pub enum Evolved {
    /// The table has the new definition now; its writer's schema is it. (Boxed: the
    /// evolution is large and the other case empty.)
    Now(Box<Evolution>),
    /// Another writer of the table (a worker of the same consumer group) evolved it
    /// first: the table's writer should be opened again.
    Elsewhere,
}

/// Where the values of columns added to a table come from (what its existing rows
/// hold once the column is there).
#[derive(Debug, Clone, Copy)]
pub enum Defaults<'a> {
    /// The source's `information_schema`, read now.
    Source(&'a MySql),
    /// The new definition's own, by source column name (a stream whose messages
    /// define the tables: their schemas carry each column's default).
    Given(&'a [(String, String)]),
}

/// A schema change of `db.table` at `position` (`seq`), to `new` as the source has
/// it now. `renames` are the columns the statement renamed (old, new); `fill_ts`
/// says when the default versions of existing rows are stamped, given the table's
/// committed state; `advance` is the committed state the schema change carries (the
/// binlog's moves its position to the statement).
///
/// `Ok(Err(why))` when it cannot be done in place: the caller parks the table (or
/// dead-letters its events); nothing was written. A commit that conflicts with
/// another writer's is looked at again.
#[allow(clippy::too_many_arguments)]
pub async fn evolve_in_place(
    defaults: Defaults<'_>,
    db: &str,
    table: &str,
    writer: &mut TableWriter,
    new: &TableSchema,
    renames: &[(String, String)],
    position: &str,
    seq: i64,
    fill_ts: impl Fn(&SourceState) -> i64 + Send,
    advance: impl Fn(SourceState) -> SourceState + Send,
) -> Result<std::result::Result<Evolved, String>> {
    let key = format!("{db}.{table}");
    let before = writer.schema().clone();
    let mut attempt = 0;
    loop {
        writer.reload().await?;
        if stored_schema(writer.delta(TableKind::History)).as_ref() != Some(before.as_ref()) {
            return Ok(Ok(Evolved::Elsewhere));
        }
        let committed = writer.committed(TableKind::History).state.clone();
        let planned = plan(
            defaults,
            db,
            table,
            writer,
            new,
            renames,
            fill_ts(&committed),
            position,
            seq,
        )
        .await;
        let (evolution, pending_fill) = match planned {
            Ok(p) => p,
            Err(why) => return Ok(Err(why)),
        };
        let state = SourceState {
            pending_fill,
            ..advance(committed)
        };
        match writer
            .evolve(evolution.schema.clone(), &evolution.added, state)
            .await
        {
            Ok(()) => return Ok(Ok(Evolved::Now(Box::new(evolution)))),
            // Another writer committed meanwhile: look again.
            Err(e) if e.is_conflict() && attempt < 20 => attempt += 1,
            Err(e) => {
                return Err(e).with_context(|| format!("table {key}: schema change at {position}"))
            }
        }
    }
}

/// Pay a schema change's debt: the rows the table had when a column was added owe a
/// version with the column's default (`SourceState::pending_fill`). Whoever opens
/// such a table pays it first, as does the writer that evolved it; of two writers
/// paying at once one commit wins and the other finds the debt paid. Returns the
/// rows written.
pub async fn fill(writer: &mut TableWriter) -> tidemark_lake::Result<u64> {
    let mut attempt = 0;
    loop {
        if writer
            .committed(TableKind::History)
            .state
            .pending_fill
            .is_none()
        {
            return Ok(0);
        }
        match writer.fill_defaults().await {
            Err(e) if e.is_conflict() && attempt < 20 => {
                attempt += 1;
                writer.reload().await?;
            }
            r => return r,
        }
    }
}

/// Plan evolving a landed table (its writer) to the source's definition `new`, the
/// change being at `position` (`ts`, `seq`): the evolution, and the versions owed to
/// existing rows by columns added with a default. `Err` says why it cannot be done
/// in place.
#[allow(clippy::too_many_arguments)]
async fn plan(
    defaults: Defaults<'_>,
    db: &str,
    table: &str,
    writer: &TableWriter,
    new: &TableSchema,
    renames: &[(String, String)],
    ts: i64,
    position: &str,
    seq: i64,
) -> std::result::Result<(Evolution, Option<DefaultFill>), String> {
    let log_columns: Vec<String> = writer
        .delta(TableKind::History)
        .snapshot()
        .map(|s| s.schema().fields().map(|f| f.name().clone()).collect())
        .unwrap_or_default();
    let evolution = tidemark_core::evolve::evolve(writer.schema(), new, renames, &log_columns)?;
    let defaults = match defaults {
        Defaults::Source(source) => {
            added_defaults(source, db, table, &evolution.new_columns).await?
        }
        Defaults::Given(given) => given
            .iter()
            .filter(|(n, _)| {
                evolution
                    .new_columns
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(n))
            })
            .cloned()
            .collect(),
    };
    let values: Vec<(String, String)> = defaults
        .into_iter()
        .filter_map(|(source_name, v)| {
            evolution
                .schema
                .columns
                .iter()
                .find(|c| c.source_name.eq_ignore_ascii_case(&source_name))
                .map(|c| (c.name.clone(), v))
        })
        .collect();
    let fill = (!values.is_empty()).then(|| DefaultFill {
        values,
        source_ts_us: ts,
        position: position.to_string(),
        seq,
    });
    Ok((evolution, fill))
}
