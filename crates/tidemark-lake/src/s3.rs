//! `s3://` warehouses through object_store's own S3 client.
//!
//! deltalake's `s3` feature would do this with the AWS SDK and a DynamoDB lock client;
//! instead tidemark registers, once, its own object-store and log-store factories for
//! the `s3` scheme with delta-rs ([`register`]).
//!
//! ## Why commits are atomic without a DynamoDB lock
//! A Delta commit is the creation of `_delta_log/<version>.json`; of two writers racing
//! for one version exactly one may succeed. delta-rs's default log store writes that
//! file with `PutMode::Create` (put-if-absent), which object_store sends to S3 as a
//! `PUT` with `If-None-Match: *` when conditional put is [`S3ConditionalPut::ETagMatch`].
//! S3 has honoured that header atomically since August 2024 (R2, MinIO and other
//! S3-compatible stores too): the loser gets `412 Precondition Failed`, which becomes
//! `VersionAlreadyExists`, and delta-rs's conflict checker takes it from there. The
//! DynamoDB lock of deltalake-aws only existed because S3 once had no put-if-absent.
//! A store that ignores `If-None-Match` is not safe for concurrent writers: several
//! Kafka workers committing to one table (`TableWriter::append_history_shared`) rely
//! on exactly one of two racing commits winning. Elsewhere tidemark runs one writer
//! per table, and its transaction-version check ([`crate::Error::StaleWriter`])
//! catches a second one on the next commit.

use std::collections::HashMap;
use std::sync::{Arc, Once};

use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::{
    default_logstore, logstore_factories, object_store_factories, DeltaIOStorageBackend, LogStore,
    LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig,
};
use deltalake::{DeltaResult, DeltaTableError};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::DynObjectStore;
use url::Url;

/// Options that are credentials (or decide the bucket or commit safety) and so never
/// come from the config file.
const REFUSED: &[&str] = &[
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_sse_customer_key_base64",
    "aws_bucket",
    "aws_conditional_put",
];

/// Check a warehouse's `storage_options`: every key must be an S3 option
/// (`endpoint`, `region`, `allow_http`, ... with or without the `aws_` prefix), and
/// none a credential. Messages name the key, never the value.
pub(crate) fn check_options(options: &HashMap<String, String>) -> Result<(), String> {
    for key in options.keys() {
        let parsed: AmazonS3ConfigKey = key.to_ascii_lowercase().parse().map_err(|_| {
            format!(
                "storage option {key:?} is not an S3 option (e.g. endpoint, region, allow_http)"
            )
        })?;
        match parsed.as_ref() {
            "aws_bucket" => {
                return Err(format!(
                    "storage option {key:?}: the bucket comes from the warehouse URL (s3://bucket/prefix)"
                ))
            }
            "aws_conditional_put" => {
                return Err(format!(
                    "storage option {key:?}: tidemark always commits with conditional writes (If-None-Match)"
                ))
            }
            k if REFUSED.contains(&k) => {
                return Err(format!(
                    "storage option {key:?} is a credential; credentials come from the AWS_* environment variables (or the instance/container role), never from the config file"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The S3 client for one bucket: `AWS_*` environment variables, then the storage
/// options, then conditional writes forced on.
pub(crate) fn build_store<'a>(
    bucket: &str,
    options: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> object_store::Result<AmazonS3> {
    let mut builder = AmazonS3Builder::from_env();
    for (key, value) in options {
        // Keys that are not S3 options are delta-rs's own (IO runtime, limits), already
        // taken by its StorageConfig; refused keys were rejected by `check_options`.
        if let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            if !REFUSED.contains(&key.as_ref()) {
                builder = builder.with_config(key, value);
            }
        }
    }
    builder
        .with_bucket_name(bucket)
        // Default in object_store 0.13 but set explicitly (an AWS_CONDITIONAL_PUT in the
        // environment cannot turn it off): the commit protocol depends on it.
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .build()
}

/// Object stores for `s3://bucket/...` table URLs.
struct S3StoreFactory;

impl ObjectStoreFactory for S3StoreFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| DeltaTableError::InvalidTableLocation(url.to_string()))?;
        let s3 = build_store(bucket, config.raw())?;
        let store: ObjectStoreRef = match &config.runtime {
            Some(rt) => Arc::new(DeltaIOStorageBackend::new(s3, rt.clone())) as Arc<DynObjectStore>,
            None => Arc::new(s3),
        };
        let path = Path::from_url_path(url.path())?;
        Ok((store, path))
    }
}

/// Log stores for `s3://` tables: delta-rs's default one, whose commit is a
/// put-if-absent — atomic on S3 with conditional writes (see the module docs).
struct S3LogStoreFactory;

impl LogStoreFactory for S3LogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Register the `s3` factories with delta-rs (once per process).
pub(crate) fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let scheme = Url::parse("s3://").expect("valid URL");
        object_store_factories().insert(scheme.clone(), Arc::new(S3StoreFactory));
        logstore_factories().insert(scheme, Arc::new(S3LogStoreFactory));
    });
}

#[cfg(test)]
mod tests {
    use crate::Warehouse;

    fn open(options: &[(&str, &str)]) -> Result<Warehouse, String> {
        Warehouse::new(
            "s3://bucket/wh",
            options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn s3_options_are_checked_and_secrets_refused() {
        let wh = open(&[
            ("endpoint", "http://127.0.0.1:9000"),
            ("allow_http", "true"),
        ])
        .unwrap();
        assert_eq!(wh.root().as_str(), "s3://bucket/wh/");
        assert_eq!(
            wh.table_url("shop", "items", crate::TableKind::Current)
                .as_str(),
            "s3://bucket/wh/shop/items/current/"
        );
        for key in ["aws_secret_access_key", "access_key_id", "token"] {
            let err = open(&[(key, "hunter2")]).unwrap_err();
            assert!(err.contains("AWS_* environment"), "{err}");
            assert!(!err.contains("hunter2"), "never echo a secret: {err}");
        }
        let err = open(&[("endpiont", "x")]).unwrap_err();
        assert!(err.contains("not an S3 option"), "{err}");
        let err = open(&[("conditional_put", "disabled")]).unwrap_err();
        assert!(err.contains("conditional writes"), "{err}");
        let err = Warehouse::new("gs://bucket/wh", Default::default()).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }
}
