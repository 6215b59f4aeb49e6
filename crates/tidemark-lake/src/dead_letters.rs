//! `tidemark.dead_letters`: the messages of an event stream that could not be landed
//! (malformed JSON, an envelope that is not one, a value that does not fit its column,
//! a table with no definition), kept byte for byte with where they came from and why,
//! so that the partition keeps flowing and nothing is lost.
//!
//! One plain Delta table at `<warehouse>/tidemark/dead_letters/` (not a landed source
//! table: no current/history pair). Exactly once, like the tables: each commit carries
//! one Delta application transaction per partition it covers, app id
//! `tidemark-dead-letters:<stream>:<partition>`, version = the partition's next offset.
//! A replayed message below that version was recorded already. Per-partition app ids
//! (rather than one state per table) let several workers of one consumer group append
//! concurrently: delta-rs retries blind appends, and two commits for one partition
//! conflict as concurrent transactions.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use url::Url;

use crate::own::{self, OWN_SCHEMA};
use crate::warehouse::Warehouse;
use crate::{Error, Result};

/// SQL name of the dead-letter table in [`OWN_SCHEMA`].
pub const DEAD_LETTERS: &str = "dead_letters";

/// One message that could not be landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The stream's name in the config.
    pub stream: String,
    /// Kafka topic, or the file's path.
    pub topic: String,
    /// Kafka partition (0 for a file).
    pub partition: i32,
    /// Kafka offset, or line number in the file.
    pub offset: i64,
    /// Raw message key.
    pub key: Option<Vec<u8>>,
    /// Raw message value.
    pub value: Option<Vec<u8>>,
    /// The source table, when the message got far enough to name one.
    pub table: Option<String>,
    /// What was wrong and what to do.
    pub error: String,
    /// When tidemark read it (µs, UTC).
    pub received_us: i64,
}

fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("stream", DataType::Utf8, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new("table", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, false),
        Field::new("received_at", ts, false),
    ]))
}

fn app_id(stream: &str, partition: &str) -> String {
    format!("tidemark-dead-letters:{stream}:{partition}")
}

/// The dead-letter table of a warehouse.
#[derive(Debug)]
pub struct DeadLetters {
    url: Url,
    table: DeltaTable,
}

impl DeadLetters {
    /// Where the table lives.
    pub fn url(wh: &Warehouse) -> Url {
        own::url(wh, DEAD_LETTERS)
    }

    /// Open the table, creating it if it does not exist.
    pub async fn open(wh: &Warehouse) -> Result<Self> {
        let table = own::open_or_create(
            wh,
            DEAD_LETTERS,
            schema(),
            "tidemark: messages of event streams that could not be landed",
        )
        .await?;
        Ok(Self {
            url: Self::url(wh),
            table,
        })
    }

    /// An existing table, read-only (`None` when no stream ever wrote one).
    pub async fn existing(wh: &Warehouse) -> Result<Option<DeltaTable>> {
        own::existing(wh, DEAD_LETTERS).await
    }

    /// The table's location.
    pub fn location(&self) -> &Url {
        &self.url
    }

    /// For one partition of `stream`: the offset below which every dead letter is
    /// recorded (0 when none was).
    pub async fn next_offset(&mut self, stream: &str, partition: &str) -> Result<i64> {
        let err = |source| Error::Delta {
            table: format!("{OWN_SCHEMA}.{DEAD_LETTERS}"),
            source,
        };
        self.table.update_state().await.map_err(err)?;
        Ok(self
            .table
            .snapshot()
            .map_err(err)?
            .transaction_version(self.table.log_store().as_ref(), app_id(stream, partition))
            .await
            .map_err(err)?
            .unwrap_or(0))
    }

    /// Record `letters` (all of `stream`) in one commit that also records, for each
    /// partition in `next_offsets`, that every dead letter below that offset is in.
    pub async fn append(
        &mut self,
        stream: &str,
        letters: &[DeadLetter],
        next_offsets: &BTreeMap<String, i64>,
    ) -> Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let n = letters.len();
        let (mut s, mut t, mut p, mut o) = (
            StringBuilder::new(),
            StringBuilder::new(),
            Int32Builder::with_capacity(n),
            Int64Builder::with_capacity(n),
        );
        let (mut k, mut v, mut tb, mut e) = (
            BinaryBuilder::new(),
            BinaryBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        for l in letters {
            s.append_value(&l.stream);
            t.append_value(&l.topic);
            p.append_value(l.partition);
            o.append_value(l.offset);
            k.append_option(l.key.as_deref());
            v.append_option(l.value.as_deref());
            tb.append_option(l.table.as_deref());
            e.append_value(&l.error);
            at.append_value(l.received_us);
        }
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(s.finish()),
                Arc::new(t.finish()),
                Arc::new(p.finish()),
                Arc::new(o.finish()),
                Arc::new(k.finish()),
                Arc::new(v.finish()),
                Arc::new(tb.finish()),
                Arc::new(e.finish()),
                Arc::new(at.finish()),
            ],
        )
        .map_err(|e| Error::Batch {
            table: format!("{OWN_SCHEMA}.{DEAD_LETTERS}"),
            message: e.to_string(),
        })?;
        let txns = next_offsets
            .iter()
            .map(|(part, off)| Transaction::new(app_id(stream, part), *off))
            .collect();
        self.table = self
            .table
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(
                CommitProperties::default()
                    .with_application_transactions(txns)
                    .with_max_retries(20),
            )
            .await
            .map_err(|source| Error::Delta {
                table: format!("{OWN_SCHEMA}.{DEAD_LETTERS}"),
                source,
            })?;
        Ok(())
    }
}
