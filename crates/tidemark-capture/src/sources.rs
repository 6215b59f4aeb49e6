//! The sources capture reads, one file each.

pub mod binlog;
pub mod events;
pub mod kafka;
