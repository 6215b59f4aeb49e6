//! SQL names for source objects (DESIGN.md "Names").
//!
//! A source table `db.Table` is schema `db`, table `table` in SQL and schema
//! `db_history` for its history. Identifiers are normalised to lower snake_case unless
//! the source says `naming = "preserve"`. Two source names that normalise to the same
//! SQL name are a configuration error, never a silent overwrite.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How source identifiers become SQL identifiers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Naming {
    /// `InvoiceLine` → `invoice_line` (default).
    #[default]
    SnakeCase,
    /// Keep the source spelling (quoted identifiers in SQL).
    Preserve,
}

impl Naming {
    /// Apply this naming rule to one identifier.
    pub fn apply(self, ident: &str) -> String {
        match self {
            Naming::Preserve => ident.to_string(),
            Naming::SnakeCase => snake_case(ident),
        }
    }
}

/// Lower snake_case: `InvoiceLineId` → `invoice_line_id`, `HTTPServer` → `http_server`,
/// `already_snake` unchanged, spaces and punctuation become `_`.
pub fn snake_case(ident: &str) -> String {
    let chars: Vec<char> = ident.chars().collect();
    let mut out = String::with_capacity(ident.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None => false,
                Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                // End of an acronym: `HTTPServer` → split before `S`.
                Some(p) if p.is_uppercase() => next.is_some_and(|n| n.is_lowercase()),
                Some(_) => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    while out.ends_with('_') && out.len() > 1 {
        out.pop();
    }
    out
}

/// A source table and its SQL names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    /// Source database (MySQL schema), as spelled at the source.
    pub source_db: String,
    /// Source table, as spelled at the source.
    pub source_table: String,
    /// SQL schema of the current table (`db`); history is `{schema}_history`.
    pub schema: String,
    /// SQL table name.
    pub table: String,
}

impl TableName {
    /// Names for `db.table` under a naming rule.
    pub fn new(source_db: &str, source_table: &str, naming: Naming) -> Self {
        Self {
            source_db: source_db.to_string(),
            source_table: source_table.to_string(),
            schema: naming.apply(source_db),
            table: naming.apply(source_table),
        }
    }

    /// `db.Table` as spelled at the source.
    pub fn source(&self) -> String {
        format!("{}.{}", self.source_db, self.source_table)
    }

    /// `schema.table` in SQL.
    pub fn sql(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// The SQL schema of the history table.
    pub fn history_schema(&self) -> String {
        history_schema(&self.schema)
    }
}

/// `db` → `db_history`.
pub fn history_schema(schema: &str) -> String {
    format!("{schema}_history")
}

/// Fail if two source tables map to one SQL name.
pub fn check_table_collisions<'a>(tables: impl IntoIterator<Item = &'a TableName>) -> Result<()> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for t in tables {
        if let Some(other) = seen.insert(t.sql(), t.source()) {
            if other != t.source() {
                return Err(Error::NameCollision(format!(
                    "source tables {other} and {} both become SQL table {}; set naming = \"preserve\" on the source or exclude one of them",
                    t.source(),
                    t.sql()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_examples() {
        for (from, to) in [
            ("InvoiceId", "invoice_id"),
            ("InvoiceLine", "invoice_line"),
            ("HTTPServer", "http_server"),
            ("already_snake", "already_snake"),
            ("Chinook", "chinook"),
            ("UnitPrice", "unit_price"),
            ("address2", "address2"),
            ("Address2Line", "address2_line"),
            ("first name", "first_name"),
            ("ID", "id"),
            ("MediaTypeId", "media_type_id"),
        ] {
            assert_eq!(snake_case(from), to, "{from}");
        }
    }

    #[test]
    fn collisions_are_errors() {
        let a = TableName::new("shop", "InvoiceLine", Naming::SnakeCase);
        let b = TableName::new("shop", "invoice_line", Naming::SnakeCase);
        let err = check_table_collisions([&a, &b]).unwrap_err().to_string();
        assert!(
            err.contains("shop.InvoiceLine") && err.contains("shop.invoice_line"),
            "{err}"
        );
        let a = TableName::new("shop", "InvoiceLine", Naming::Preserve);
        let c = TableName::new("shop", "invoice_line", Naming::Preserve);
        assert!(check_table_collisions([&a, &c]).is_ok());
    }
}
