//! Comparing pulled rows with what a table holds, for sources that deliver states
//! rather than changes (watermark pulls, reconcile passes).
//!
//! Each of a table's two Delta tables is diffed against *its own* latest state, so
//! re-running a pull after a crash between the two commits adds nothing twice: rows
//! that a table already has are simply not changes for it.

use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use tidemark_core::change::ChangeBatch;
use tidemark_core::schema::{OP, SEQ, SOURCE_POS, SOURCE_TS, VALID_FROM};

use crate::warehouse::TableKind;
use crate::writer::TableWriter;
use crate::{Error, Result};

/// `"name"` with embedded quotes doubled.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `s.k1 = l.k1 AND s.k2 = l.k2` over the table's key.
fn key_join(schema: &tidemark_core::schema::TableSchema) -> String {
    schema
        .key_names()
        .iter()
        .map(|k| format!("s.{q} = l.{q}", q = quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

impl TableWriter {
    async fn diff_context(&self, kind: TableKind, src: &ChangeBatch) -> Result<SessionContext> {
        let err = |e: &dyn std::fmt::Display| Error::Batch {
            table: self.schema().name.sql(),
            message: e.to_string(),
        };
        let ctx = SessionContext::new();
        let mem = MemTable::try_new(src.data.schema(), vec![vec![src.data.clone()]])
            .map_err(|e| err(&e))?;
        ctx.register_table("src", Arc::new(mem))
            .map_err(|e| err(&e))?;
        // A merge-on-read current table is its base plus the tail: diff against that.
        if kind == TableKind::Current && self.merged_through().is_some() {
            for k in [TableKind::Current, TableKind::History] {
                self.delta(k)
                    .update_datafusion_session(&ctx.state())
                    .map_err(|e| err(&e))?;
            }
            let now = self.current_state(&ctx).await?;
            ctx.register_table("latest", now.into_view())
                .map_err(|e| err(&e))?;
            return Ok(ctx);
        }
        let table = self.delta(kind);
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| err(&e))?;
        let provider = table.table_provider().await.map_err(|e| err(&e))?;
        ctx.register_table("stored", provider)
            .map_err(|e| err(&e))?;
        let keys = self
            .schema()
            .key_names()
            .iter()
            .map(|k| quote(k))
            .collect::<Vec<_>>()
            .join(", ");
        let latest = match kind {
            TableKind::Current | TableKind::Closed => "SELECT * FROM stored".to_string(),
            TableKind::History => format!(
                "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {vf} DESC, {seq} DESC) AS __rn FROM stored) WHERE __rn = 1 AND {op} <> 'd'",
                vf = quote(VALID_FROM),
                seq = quote(SEQ),
                op = quote(OP)
            ),
        };
        let view = ctx.sql(&latest).await.map_err(|e| err(&e))?;
        ctx.register_table("latest", view.into_view())
            .map_err(|e| err(&e))?;
        Ok(ctx)
    }

    async fn run(
        &self,
        ctx: &SessionContext,
        sql: &str,
        like: &ChangeBatch,
    ) -> Result<ChangeBatch> {
        let err = |e: &dyn std::fmt::Display| Error::Batch {
            table: self.schema().name.sql(),
            message: format!("{e} (in {sql})"),
        };
        let batches = ctx
            .sql(sql)
            .await
            .map_err(|e| err(&e))?
            .collect()
            .await
            .map_err(|e| err(&e))?;
        let schema = like.data.schema();
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            // DataFusion reads strings back as Utf8View; the change schema says Utf8.
            let cols = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| deltalake::arrow::compute::cast(c, f.data_type()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(&e))?;
            out.push(RecordBatch::try_new(schema.clone(), cols).map_err(|e| err(&e))?);
        }
        let data = deltalake::arrow::compute::concat_batches(&schema, &out).map_err(|e| err(&e))?;
        Ok(ChangeBatch {
            table: self.schema().clone(),
            data,
        })
    }

    /// The rows of `src` (whole rows of the source table) that are new (`c`) or differ
    /// (`u`) from what `kind` holds for their key. Unchanged rows are dropped.
    pub async fn changed(&self, kind: TableKind, src: &ChangeBatch) -> Result<ChangeBatch> {
        let ctx = self.diff_context(kind, src).await?;
        self.run(&ctx, &self.changed_sql(), src).await
    }

    /// What [`Self::changed`] runs against the registered `src` and `latest`.
    fn changed_sql(&self) -> String {
        let schema = self.schema();
        let on = key_join(schema);
        let first_key = quote(schema.key_names()[0]);
        let differs = schema
            .columns
            .iter()
            .map(|c| format!("(s.{q} IS DISTINCT FROM l.{q})", q = quote(&c.name)))
            .collect::<Vec<_>>()
            .join(" OR ");
        let cols = schema
            .columns
            .iter()
            .map(|c| format!("s.{}", quote(&c.name)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {cols}, CASE WHEN l.{first_key} IS NULL THEN 'c' ELSE 'u' END AS {op}, s.{ts}, s.{pos}, s.{seq} \
             FROM src s LEFT JOIN latest l ON {on} WHERE l.{first_key} IS NULL OR {differs}",
            op = quote(OP),
            ts = quote(SOURCE_TS),
            pos = quote(SOURCE_POS),
            seq = quote(SEQ),
        )
    }

    /// [`Self::changed`] and [`Self::missing`] for a source that delivers the
    /// whole state of the keys in `among` (an incremental model's rebuilt keys), from
    /// one read of what `kind` holds for those keys. Run separately, each would join
    /// the whole stored table: a build that recomputed 1 % of a model's keys read the
    /// model twice (bench/RESULTS.md).
    pub async fn changed_among(
        &self,
        kind: TableKind,
        src: &ChangeBatch,
        among: &RecordBatch,
        source_ts_us: i64,
        source_pos: &str,
    ) -> Result<(ChangeBatch, ChangeBatch)> {
        let err = |e: &dyn std::fmt::Display| Error::Batch {
            table: self.schema().name.sql(),
            message: e.to_string(),
        };
        let ctx = self.diff_context(kind, src).await?;
        // A key-set filter, not a semi-join: DataFusion pushes it through the
        // merge-on-read view onto the base's scan, which tests the key column and
        // decodes the other columns of the matching rows only.
        let keys = self
            .schema()
            .key_names()
            .iter()
            .map(|k| deltalake::datafusion::logical_expr::col(quote(k)))
            .collect();
        // The keys of `src` too: a row recomputed for a key outside `among` must
        // still be compared with its stored row, or it would land as a new one.
        let mut both = Vec::with_capacity(among.num_columns());
        for (i, f) in among.schema().fields().iter().enumerate() {
            let mine = src
                .data
                .column_by_name(f.name())
                .ok_or_else(|| err(&format!("the rows have no key column {}", f.name())))?;
            let mine = deltalake::arrow::compute::cast(mine, f.data_type()).map_err(|e| err(&e))?;
            both.push(
                deltalake::arrow::compute::concat(&[among.column(i).as_ref(), mine.as_ref()])
                    .map_err(|e| err(&e))?,
            );
        }
        let both = RecordBatch::try_new(among.schema(), both).map_err(|e| err(&e))?;
        let has = crate::keyset::key_in(keys, &both).map_err(|e| err(&e))?;
        let held = ctx
            .table("latest")
            .await
            .map_err(|e| err(&e))?
            .filter(has)
            .map_err(|e| err(&e))?;
        let schema = Arc::new(held.schema().as_arrow().clone());
        let held = held.collect().await.map_err(|e| err(&e))?;
        ctx.deregister_table("latest").map_err(|e| err(&e))?;
        let mem = MemTable::try_new(schema, vec![held]).map_err(|e| err(&e))?;
        ctx.register_table("latest", Arc::new(mem))
            .map_err(|e| err(&e))?;
        let changed = self.run(&ctx, &self.changed_sql(), src).await?;
        let gone = self
            .run(&ctx, &self.missing_sql(source_ts_us, source_pos), src)
            .await?;
        Ok((changed, gone))
    }

    /// Deletes for the keys `kind` holds that are not among `src`'s keys (`src` holds
    /// at least the key columns of every row at the source). Each delete carries the
    /// last stored image of the row.
    pub async fn missing(
        &self,
        kind: TableKind,
        src: &ChangeBatch,
        source_ts_us: i64,
        source_pos: &str,
    ) -> Result<ChangeBatch> {
        let ctx = self.diff_context(kind, src).await?;
        self.run(&ctx, &self.missing_sql(source_ts_us, source_pos), src)
            .await
    }

    /// What [`Self::missing`] runs against the registered `src` and `latest`.
    fn missing_sql(&self, source_ts_us: i64, source_pos: &str) -> String {
        let schema = self.schema();
        let on = key_join(schema);
        let cols = schema
            .columns
            .iter()
            .map(|c| format!("l.{}", quote(&c.name)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {cols}, 'd' AS {op}, arrow_cast(to_timestamp_micros({source_ts_us}), 'Timestamp(Microsecond, Some(\"UTC\"))') AS {ts}, '{pos}' AS {posq}, CAST(0 AS BIGINT) AS {seq} \
             FROM latest l WHERE NOT EXISTS (SELECT 1 FROM src s WHERE {on})",
            op = quote(OP),
            ts = quote(SOURCE_TS),
            pos = source_pos.replace('\'', "''"),
            posq = quote(SOURCE_POS),
            seq = quote(SEQ),
        )
    }
}
