//! The sources capture reads, one file each. Every one plugs into the one landing
//! loop ([`crate::landing::Source`]): the streams (binlog, events from Kafka or
//! files) until stopped, the bounded passes (snapshot, pull) until they have read
//! what there was.

pub mod binlog;
pub mod events;
pub mod kafka;
pub mod pull;
pub mod registry;
pub mod snapshot;
pub mod transactions;
