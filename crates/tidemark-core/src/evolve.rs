//! Schema changes of a captured table: which ones apply in place, and the schema
//! the table evolves to.
//!
//! The history log is the record of everything a table ever held, so its Delta
//! columns are only ever added, never rewritten: a RENAME keeps the values where they
//! are and records that the column now reads from there ([`ColumnSchema::stored`]); a
//! widening MODIFY whose Arrow type changes (INT → BIGINT, DECIMAL(10,2) →
//! DECIMAL(12,2)) adds a column of the wider type for new rows and reads older rows
//! from the old column, cast; a DROP keeps the old values, shown in the history view.
//! Rewriting the log instead would cost a pass over all of history per DDL statement,
//! and a crash mid-rewrite would have to be repaired; adding columns is one metadata
//! commit that also carries the position past the statement.
//!
//! A change whose old values cannot be carried over exactly parks the table instead:
//! a narrowing or incompatible type change (the server rewrote the values without row
//! events), a new primary key, or a new column whose existing rows got a non-NULL
//! default (decided by the caller, which knows the default).

use crate::schema::{ColumnSchema, TableSchema};
use crate::types::MySqlType;

/// The outcome of a schema change that applies in place.
#[derive(Debug, Clone, PartialEq)]
pub struct Evolution {
    /// The evolved schema (new definition, with storage carried over).
    pub schema: TableSchema,
    /// History-log columns to add: (name, column whose type it has).
    pub added: Vec<(String, ColumnSchema)>,
    /// Source names of columns new to the table (their existing rows need a value).
    pub new_columns: Vec<String>,
    /// What changed, one line each, for the log.
    pub changes: Vec<String>,
}

/// Evolve `old` (as landed) to `new` (as the server has it now). `renames` are the
/// column renames the DDL statement named (old → new source names); `log_columns`
/// the columns the history log has now. `Err` says why it cannot apply in place.
pub fn evolve(
    old: &TableSchema,
    new: &TableSchema,
    renames: &[(String, String)],
    log_columns: &[String],
) -> Result<Evolution, String> {
    let renamed = |source: &str| -> String {
        renames
            .iter()
            .find(|(from, _)| from.eq_ignore_ascii_case(source))
            .map_or_else(|| source.to_string(), |(_, to)| to.clone())
    };
    let old_key: Vec<String> = old
        .key
        .iter()
        .map(|&i| renamed(&old.columns[i].source_name).to_ascii_lowercase())
        .collect();
    let new_key: Vec<String> = new
        .key
        .iter()
        .map(|&i| new.columns[i].source_name.to_ascii_lowercase())
        .collect();
    if old_key != new_key {
        return Err(format!(
            "its primary key changed from ({}) to ({}); history is kept per key",
            old_key.join(", "),
            new_key.join(", ")
        ));
    }

    // Names the log already uses, or that the evolved schema reads from.
    let mut taken: Vec<String> = log_columns.to_vec();
    for c in old.columns.iter().chain(&old.dropped) {
        taken.extend(c.stored_names().into_iter().map(str::to_string));
    }
    let fresh = |name: &str, taken: &mut Vec<String>| -> String {
        let mut candidate = name.to_string();
        let mut n = 2;
        while taken.iter().any(|t| t == &candidate) {
            candidate = format!("{name}__{n}");
            n += 1;
        }
        taken.push(candidate.clone());
        candidate
    };

    let mut out = Evolution {
        schema: new.clone(),
        added: Vec::new(),
        new_columns: Vec::new(),
        changes: Vec::new(),
    };
    let mut matched = vec![false; old.columns.len()];
    for nc in &mut out.schema.columns {
        let found = old
            .columns
            .iter()
            .enumerate()
            .find(|(_, oc)| renamed(&oc.source_name).eq_ignore_ascii_case(&nc.source_name));
        let Some((i, oc)) = found else {
            let physical = fresh(&nc.name, &mut taken);
            out.added.push((physical.clone(), nc.clone()));
            out.new_columns.push(nc.source_name.clone());
            out.changes
                .push(format!("column {} added ({})", nc.name, nc.column_type));
            nc.stored = if physical == nc.name {
                Vec::new()
            } else {
                vec![physical]
            };
            continue;
        };
        matched[i] = true;
        let mut stored: Vec<String> = oc.stored_names().into_iter().map(str::to_string).collect();
        if oc.name != nc.name {
            out.changes
                .push(format!("column {} renamed to {}", oc.name, nc.name));
        }
        if oc.column_type != nc.column_type || oc.data_type != nc.data_type {
            if !widening(oc, nc) {
                return Err(format!(
                    "column {} changed type from {} to {}, which can change stored values (only widening changes apply in place)",
                    nc.name, oc.column_type, nc.column_type
                ));
            }
            if oc.mysql_type().arrow_type() != nc.mysql_type().arrow_type() {
                let physical = fresh(&nc.name, &mut taken);
                out.added.push((physical.clone(), nc.clone()));
                stored.insert(0, physical);
            }
            out.changes.push(format!(
                "column {} widened from {} to {}",
                nc.name, oc.column_type, nc.column_type
            ));
        }
        nc.stored = if stored.len() == 1 && stored[0] == nc.name {
            Vec::new()
        } else {
            stored
        };
    }
    out.schema.dropped = old.dropped.clone();
    for (oc, _) in old.columns.iter().zip(&matched).filter(|(_, m)| !**m) {
        out.changes.push(format!("column {} dropped", oc.name));
        let mut d = oc.clone();
        d.stored = oc.stored_names().into_iter().map(str::to_string).collect();
        if d.stored.len() == 1 && d.stored[0] == d.name {
            d.stored.clear();
        }
        out.schema.dropped.push(d);
    }
    Ok(out)
}

/// Whether changing a column from `old` to `new` keeps every stored value as it was
/// (MySQL then rewrites nothing, or rewrites values unchanged).
pub fn widening(old: &ColumnSchema, new: &ColumnSchema) -> bool {
    use MySqlType::*;
    let int_rank = |t: MySqlType| match t {
        TinyInt { unsigned } => Some((1, unsigned)),
        SmallInt { unsigned } => Some((2, unsigned)),
        MediumInt { unsigned } => Some((3, unsigned)),
        Int { unsigned } => Some((4, unsigned)),
        BigInt { unsigned } => Some((5, unsigned)),
        _ => None,
    };
    let (o, n) = (old.mysql_type(), new.mysql_type());
    if let (Some((ro, uo)), Some((rn, un))) = (int_rank(o), int_rank(n)) {
        return match (uo, un) {
            (false, false) | (true, true) => rn >= ro,
            (true, false) => rn > ro,
            (false, true) => false,
        };
    }
    let ct_old = old.column_type.to_ascii_lowercase();
    let ct_new = new.column_type.to_ascii_lowercase();
    match (o, n) {
        (
            Decimal {
                precision: po,
                scale: so,
            },
            Decimal {
                precision: pn,
                scale: sn,
            },
        ) => {
            let unsigned_ok = !ct_new.contains("unsigned") || ct_old.contains("unsigned");
            sn >= so && pn - sn >= po - so && unsigned_ok
        }
        (Float, Float | Double) | (Double, Double) => true,
        (Bit(a), Bit(b)) => b >= a && (a == 1) == (b == 1),
        (DateTime, DateTime) | (Timestamp, Timestamp) | (Time, Time) => {
            fraction_digits(&ct_new) >= fraction_digits(&ct_old)
        }
        (Text, Text) => text_widening(&old.data_type, &ct_old, &new.data_type, &ct_new),
        (Binary, Binary) => {
            let (dto, dtn) = (
                old.data_type.to_ascii_lowercase(),
                new.data_type.to_ascii_lowercase(),
            );
            // BINARY(n) pads to its length: a different length changes the values.
            if dto == "binary" || dtn == "binary" {
                return ct_old == ct_new;
            }
            match (byte_length(&dto, &ct_old), byte_length(&dtn, &ct_new)) {
                (Some(a), Some(b)) => b >= a,
                _ => false,
            }
        }
        _ => ct_old == ct_new,
    }
}

fn fraction_digits(column_type: &str) -> u64 {
    paren_number(column_type).unwrap_or(0)
}

fn paren_number(column_type: &str) -> Option<u64> {
    let open = column_type.find('(')?;
    let close = column_type[open..].find(')')? + open;
    column_type[open + 1..close].trim().parse().ok()
}

/// Most bytes (or characters) a string or binary type holds.
fn byte_length(data_type: &str, column_type: &str) -> Option<u64> {
    Some(match data_type {
        "char" | "varchar" | "binary" | "varbinary" => paren_number(column_type)?,
        "tinytext" | "tinyblob" => 255,
        "text" | "blob" => 65_535,
        "mediumtext" | "mediumblob" => 16_777_215,
        "longtext" | "longblob" | "json" => 4_294_967_295,
        _ => return None,
    })
}

fn text_widening(dt_old: &str, ct_old: &str, dt_new: &str, ct_new: &str) -> bool {
    let (dto, dtn) = (dt_old.to_ascii_lowercase(), dt_new.to_ascii_lowercase());
    match (dto.as_str(), dtn.as_str()) {
        // ENUM / SET values are stored as their labels: new labels appended keep
        // every old value; reordering or removing them changes values.
        ("enum", "enum") | ("set", "set") => {
            let labels = |ct: &str| -> String {
                let start = ct.find('(').map_or(0, |i| i + 1);
                ct[start..].trim_end_matches(')').to_string()
            };
            let (lo, ln) = (labels(ct_old), labels(ct_new));
            ln == lo || ln.starts_with(&format!("{lo},"))
        }
        ("enum" | "set", _) | (_, "enum" | "set") => false,
        ("json", _) | (_, "json") => dto == dtn,
        _ => match (byte_length(&dto, ct_old), byte_length(&dtn, ct_new)) {
            (Some(a), Some(b)) => b >= a,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{Naming, TableName};

    fn col(name: &str, data_type: &str, column_type: &str) -> ColumnSchema {
        let (precision, scale) = match data_type {
            "decimal" => {
                let inner = column_type
                    .trim_start_matches("decimal(")
                    .trim_end_matches(')');
                let mut it = inner.split(',').map(|s| s.trim().parse::<u64>().ok());
                (it.next().flatten(), it.next().flatten())
            }
            _ => (None, None),
        };
        ColumnSchema {
            source_name: name.into(),
            name: name.into(),
            column_type: column_type.into(),
            data_type: data_type.into(),
            precision,
            scale,
            stored: Vec::new(),
        }
    }

    fn table(cols: Vec<ColumnSchema>) -> TableSchema {
        TableSchema::new(
            TableName::new("d", "t", Naming::SnakeCase),
            cols,
            &["id".to_string()],
            Naming::SnakeCase,
        )
        .unwrap()
    }

    fn logs(t: &TableSchema) -> Vec<String> {
        t.columns.iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn add_rename_widen_drop() {
        let v1 = table(vec![
            col("id", "int", "int(11)"),
            col("amount", "int", "int(11)"),
            col("note", "varchar", "varchar(10)"),
            col("gone", "int", "int(11)"),
        ]);
        let v2 = table(vec![
            col("id", "int", "int(11)"),
            col("total", "bigint", "bigint(20)"),
            col("note", "varchar", "varchar(40)"),
            col("extra", "varchar", "varchar(5)"),
        ]);
        let e = evolve(
            &v1,
            &v2,
            &[("amount".into(), "total".into())],
            &[logs(&v1), vec!["_op".into()]].concat(),
        )
        .unwrap();
        let s = &e.schema;
        // total reads the new BIGINT column first, then the old INT one.
        assert_eq!(s.columns[1].stored, vec!["total", "amount"]);
        // Same Arrow type: stays where it was.
        assert!(s.columns[2].stored.is_empty());
        assert!(s.columns[3].stored.is_empty());
        assert_eq!(e.new_columns, vec!["extra"]);
        let added: Vec<&str> = e.added.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(added, vec!["total", "extra"]);
        assert_eq!(s.dropped.len(), 1);
        assert_eq!(s.dropped[0].name, "gone");
        assert!(s.is_evolved());

        // Dropping and re-adding a name does not reuse the old values' column.
        let v3 = table(vec![
            col("id", "int", "int(11)"),
            col("total", "bigint", "bigint(20)"),
            col("note", "varchar", "varchar(40)"),
            col("extra", "varchar", "varchar(5)"),
            col("gone", "varchar", "varchar(3)"),
        ]);
        let mut log3 = logs(&v1);
        log3.extend(added.iter().map(|s| s.to_string()));
        let e3 = evolve(s, &v3, &[], &log3).unwrap();
        assert_eq!(e3.schema.columns[4].stored, vec!["gone__2"]);
        assert_eq!(e3.schema.shown_dropped().count(), 0);
    }

    #[test]
    fn unsafe_changes_are_refused() {
        let v1 = table(vec![
            col("id", "int", "int(11)"),
            col("note", "varchar", "varchar(40)"),
        ]);
        let narrow = table(vec![
            col("id", "int", "int(11)"),
            col("note", "varchar", "varchar(10)"),
        ]);
        let err = evolve(&v1, &narrow, &[], &logs(&v1)).unwrap_err();
        assert!(err.contains("varchar(40) to varchar(10)"), "{err}");
        let rekeyed = TableSchema::new(
            TableName::new("d", "t", Naming::SnakeCase),
            vec![
                col("id", "int", "int(11)"),
                col("note", "varchar", "varchar(40)"),
            ],
            &["note".to_string()],
            Naming::SnakeCase,
        )
        .unwrap();
        assert!(evolve(&v1, &rekeyed, &[], &logs(&v1))
            .unwrap_err()
            .contains("primary key"));
    }

    #[test]
    fn widening_rules() {
        let w =
            |a: (&str, &str), b: (&str, &str)| widening(&col("c", a.0, a.1), &col("c", b.0, b.1));
        assert!(w(("int", "int(11)"), ("bigint", "bigint(20)")));
        assert!(!w(("bigint", "bigint(20)"), ("int", "int(11)")));
        assert!(w(("int", "int(10) unsigned"), ("bigint", "bigint(20)")));
        assert!(!w(("int", "int(11)"), ("int", "int(10) unsigned")));
        assert!(w(
            ("decimal", "decimal(10,2)"),
            ("decimal", "decimal(12,3)")
        ));
        assert!(!w(
            ("decimal", "decimal(10,2)"),
            ("decimal", "decimal(10,3)")
        ));
        assert!(w(("varchar", "varchar(10)"), ("text", "text")));
        assert!(w(("enum", "enum('a','b')"), ("enum", "enum('a','b','c')")));
        assert!(!w(("enum", "enum('a','b')"), ("enum", "enum('b','a')")));
        assert!(!w(("binary", "binary(4)"), ("binary", "binary(8)")));
        assert!(w(("datetime", "datetime"), ("datetime", "datetime(3)")));
        assert!(w(("float", "float"), ("double", "double")));
    }
}
