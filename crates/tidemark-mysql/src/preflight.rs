//! Preflight: is this server ready for tidemark, and if not, what to change.
//!
//! Snapshots and pulls need only SELECT. Change capture from the binlog additionally
//! needs binary logging in ROW format with full row images (an update must carry
//! every column, or the history cannot be rebuilt), no partial JSON updates (MySQL 8
//! `binlog_row_value_options`), a server id, the replication privileges, and binlogs
//! kept long enough to resume after downtime. Each check says what to change.

use mysql_async::prelude::Queryable;

use crate::connect::Source;
use crate::Result;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Fine.
    Ok,
    /// Works, but worth changing (e.g. short binlog retention).
    Warn,
    /// Change capture cannot work until this is fixed.
    Fail,
}

/// One check.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked, e.g. `binlog_format`.
    pub name: &'static str,
    /// Outcome.
    pub outcome: Outcome,
    /// What was found and, unless fine, what to change.
    pub detail: String,
}

async fn variable(
    source: &Source,
    conn: &mut mysql_async::Conn,
    name: &str,
) -> Result<Option<String>> {
    let row: Option<(String, String)> = conn
        .exec_first("SHOW GLOBAL VARIABLES WHERE Variable_name = ?", (name,))
        .await
        .map_err(|e| source.query_error("-", e))?;
    Ok(row.map(|(_, v)| v))
}

fn check(name: &'static str, outcome: Outcome, detail: impl Into<String>) -> Check {
    Check {
        name,
        outcome,
        detail: detail.into(),
    }
}

/// Run every check against a connected source.
pub async fn preflight(source: &Source) -> Result<Vec<Check>> {
    let mut conn = source.conn().await?;
    let mut out = vec![check("server", Outcome::Ok, source.version.clone())];
    let cnf = if source.is_mariadb() {
        "my.cnf [mariadbd]"
    } else {
        "my.cnf [mysqld] (Aurora: the DB cluster parameter group)"
    };

    let log_bin = variable(source, &mut conn, "log_bin")
        .await?
        .unwrap_or_default();
    out.push(if log_bin.eq_ignore_ascii_case("ON") || log_bin == "1" {
        check("log_bin", Outcome::Ok, "binary logging is on")
    } else {
        check(
            "log_bin",
            Outcome::Fail,
            format!("binary logging is off; set log_bin (and a server_id) in {cnf} and restart"),
        )
    });

    let format = variable(source, &mut conn, "binlog_format")
        .await?
        .unwrap_or_default();
    out.push(if format.eq_ignore_ascii_case("ROW") {
        check("binlog_format", Outcome::Ok, "ROW")
    } else {
        check("binlog_format", Outcome::Fail, format!("is {format}; change capture needs ROW: SET GLOBAL binlog_format = 'ROW' and set it in {cnf}"))
    });

    match variable(source, &mut conn, "binlog_row_image").await? {
        Some(v) if v.eq_ignore_ascii_case("FULL") => out.push(check("binlog_row_image", Outcome::Ok, "FULL")),
        Some(v) => out.push(check("binlog_row_image", Outcome::Fail, format!("is {v}; updates must carry every column: SET GLOBAL binlog_row_image = 'FULL' and set it in {cnf}"))),
        None => out.push(check("binlog_row_image", Outcome::Ok, "not reported (FULL by default)")),
    }

    if let Some(v) = variable(source, &mut conn, "binlog_row_value_options").await? {
        out.push(if v.is_empty() {
            check("binlog_row_value_options", Outcome::Ok, "empty")
        } else {
            check("binlog_row_value_options", Outcome::Fail, format!("is {v}; partial JSON updates cannot be applied: SET GLOBAL binlog_row_value_options = ''"))
        });
    }

    // Compressed binlog events: MariaDB's (zlib, per event) are decoded and tested
    // against MariaDB; MySQL's transaction payloads (zstd) are decoded, but no MySQL
    // server is available to test them against, so the check says so.
    if let Some(v) = variable(source, &mut conn, "log_bin_compress").await? {
        let on = v.eq_ignore_ascii_case("ON") || v == "1";
        out.push(check(
            "log_bin_compress",
            Outcome::Ok,
            if on {
                "ON: compressed events are decoded"
            } else {
                "OFF"
            },
        ));
    }
    if let Some(v) = variable(source, &mut conn, "binlog_transaction_compression").await? {
        let on = v.eq_ignore_ascii_case("ON") || v == "1";
        out.push(if on {
            check("binlog_transaction_compression", Outcome::Warn, "ON: tidemark decodes compressed transaction payloads, but that path is tested only on synthetic events, not against a MySQL server; SET GLOBAL binlog_transaction_compression = OFF to stay on the tested path")
        } else {
            check("binlog_transaction_compression", Outcome::Ok, "OFF")
        });
    }

    let server_id: u64 = variable(source, &mut conn, "server_id")
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    out.push(if server_id > 0 {
        check("server_id", Outcome::Ok, server_id.to_string())
    } else {
        check(
            "server_id",
            Outcome::Fail,
            format!("is 0; set a non-zero server_id in {cnf}"),
        )
    });

    // Retention: MySQL 8 in seconds, MariaDB / MySQL 5.7 in days.
    let seconds = match variable(source, &mut conn, "binlog_expire_logs_seconds").await? {
        Some(s) if s.parse::<u64>().unwrap_or(0) > 0 => s.parse::<u64>().ok(),
        _ => variable(source, &mut conn, "expire_logs_days")
            .await?
            .and_then(|d| d.parse::<f64>().ok())
            .map(|d| (d * 86_400.0) as u64),
    }
    .unwrap_or(0);
    out.push(match seconds {
        0 => check("binlog retention", Outcome::Ok, "binlogs are never purged automatically"),
        s if s < 3 * 86_400 => check("binlog retention", Outcome::Warn, format!("{:.1} days; a tidemark outage longer than that means a resnapshot. Aurora: CALL mysql.rds_set_configuration('binlog retention hours', 72)", s as f64 / 86_400.0)),
        s => check("binlog retention", Outcome::Ok, format!("{:.1} days", s as f64 / 86_400.0)),
    });

    // Privileges, from the grants (REPLICATION SLAVE cannot be tried without starting
    // a binlog dump). MariaDB 10.5+ calls REPLICATION CLIENT "BINLOG MONITOR".
    let grants: Vec<String> = conn
        .query("SHOW GRANTS FOR CURRENT_USER()")
        .await
        .map_err(|e| source.query_error("-", e))?;
    let global: Vec<String> = grants
        .iter()
        .filter(|g| g.contains(" ON *.* "))
        .map(|g| g.to_ascii_uppercase())
        .collect();
    let has = |p: &str| {
        global
            .iter()
            .any(|g| g.contains("ALL PRIVILEGES") || g.contains(p))
    };
    let missing: Vec<&str> = [
        (
            "REPLICATION SLAVE",
            has("REPLICATION SLAVE") || has("REPLICATION REPLICA"),
        ),
        (
            "REPLICATION CLIENT",
            has("REPLICATION CLIENT") || has("BINLOG MONITOR"),
        ),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(p, _)| p)
    .collect();
    out.push(if missing.is_empty() {
        check("privileges", Outcome::Ok, "REPLICATION SLAVE and REPLICATION CLIENT granted")
    } else {
        check(
            "privileges",
            Outcome::Fail,
            format!(
                "missing {} (needed for change capture; snapshots need only SELECT): GRANT {} ON *.* TO '{}'@'%';",
                missing.join(", "),
                missing.join(", "),
                source.user()
            ),
        )
    });
    Ok(out)
}
