//! `GET /console/api/health`: where each table's capture has got to and how fresh
//! it is (tidemark-daemon's table status, what `tidemark status` prints), for the
//! tables the signed-in user's role reads; and, for admin roles (who alone read
//! tidemark's own tables), the dead letters.

use arrow::array::RecordBatch;
use axum::extract::State;
use axum::Json;
use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;
use tidemark_daemon::status::TableStatus;

use crate::auth::Reader;
use crate::{Console, ConsoleError};

/// Dead letters shown per page load.
const RECENT_DEAD_LETTERS: usize = 20;

/// The health page's data.
#[derive(Debug, Serialize)]
pub struct Health {
    /// Per table the role reads: position, freshness, state, parked reason.
    tables: Vec<TableStatus>,
    /// Tables whose capture stopped, with why and what to do.
    parked: Vec<Parked>,
    /// For admin roles: the dead-letter table's counts and newest entries.
    dead_letters: Option<DeadLetters>,
}

#[derive(Debug, Serialize)]
struct Parked {
    table: String,
    reason: String,
    way_out: &'static str,
}

#[derive(Debug, Serialize)]
struct DeadLetters {
    /// Per stream and table: how many, and the newest.
    by_table: Vec<Vec<Option<String>>>,
    /// The newest entries: when, stream, table, topic, partition, offset, error.
    recent: Vec<Vec<Option<String>>>,
}

/// What to do about a parked table (docs/operations.md, schema changes).
const WAY_OUT: &str = "stop `tidemark run`, then `tidemark snapshot --resnapshot --table db.t` and start `run` again; the old tables are moved to <warehouse>/.retired/, and the source's other tables keep flowing meanwhile";

async fn rows(ctx: &SessionContext, sql: &str) -> Option<Vec<Vec<Option<String>>>> {
    let batches: Vec<RecordBatch> = ctx.sql(sql).await.ok()?.collect().await.ok()?;
    let mut out = Vec::new();
    for b in &batches {
        let options = arrow::util::display::FormatOptions::default();
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .ok()?;
        for row in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| (!c.is_null(row)).then(|| f.value(row).to_string()))
                    .collect(),
            );
        }
    }
    Some(out)
}

/// The health page's data for the signed-in user.
pub(crate) async fn health(
    State(console): State<Console>,
    Reader(s): Reader,
) -> Result<Json<Health>, ConsoleError> {
    let all = tidemark_daemon::status::tables(&console.inner.wh)
        .await
        .map_err(|e| ConsoleError::Internal(format!("reading the warehouse: {e}")))?;
    // The role decides which names the user may even learn.
    let tables: Vec<TableStatus> = all
        .into_iter()
        .filter(|t| {
            t.table
                .split_once('.')
                .is_some_and(|(schema, table)| s.direct.reads(schema, table))
        })
        .collect();
    let parked = tables
        .iter()
        .filter_map(|t| {
            t.parked.as_ref().map(|why| Parked {
                table: t.table.clone(),
                reason: why.clone(),
                way_out: WAY_OUT,
            })
        })
        .collect();
    let dead_letters = if s.direct.role().is_admin()
        && s.direct
            .reads(tidemark_lake::OWN_SCHEMA, tidemark_lake::DEAD_LETTERS)
    {
        // Read through the role's own catalog (only admin roles are let in).
        let ctx = s.direct.context();
        let by_table = rows(
            ctx,
            "SELECT stream, \"table\", count(*) AS dead_letters, max(received_at) AS newest \
             FROM tidemark.dead_letters GROUP BY stream, \"table\" ORDER BY dead_letters DESC",
        )
        .await;
        let recent = rows(
            ctx,
            &format!(
                "SELECT received_at, stream, \"table\", topic, \"partition\", \"offset\", error \
                 FROM tidemark.dead_letters ORDER BY received_at DESC LIMIT {RECENT_DEAD_LETTERS}"
            ),
        )
        .await;
        by_table
            .zip(recent)
            .map(|(by_table, recent)| DeadLetters { by_table, recent })
    } else {
        None
    };
    Ok(Json(Health {
        tables,
        parked,
        dead_letters,
    }))
}
