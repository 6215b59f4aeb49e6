//! What a DDL statement in the binlog does to the tables it names, and what the server
//! wrote into existing rows of the columns it added: the MySQL knowledge change
//! capture needs to apply a schema change once, whatever source it came through.

use crate::connect::Source;

/// What a DDL statement does to one table it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdlKind {
    /// `TRUNCATE [TABLE]`: every row goes, the table stays.
    Truncate,
    /// `DROP TABLE`: the table goes (its rows are closed in history).
    Drop,
    /// Anything else (ALTER, CREATE, RENAME, …): compare the definition before and
    /// after.
    Other,
}

/// One table a DDL statement touches: `(db, table)` as spelled at the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdlTarget {
    /// The database, as spelled at the source.
    pub db: String,
    /// The table, as spelled at the source.
    pub table: String,
    /// What the statement does to it.
    pub kind: DdlKind,
}

/// The tables a DDL statement touches, with what it does to each; unqualified names
/// are in `default_db`. The kind comes from the parsed statement, never from its
/// text (`/* app */ TRUNCATE t` is a TRUNCATE). Statements that cannot be parsed
/// touch every table named in them that tidemark can recognise, so an unusual
/// spelling errs towards checking a table, never towards missing one.
pub fn ddl_tables(sql: &str, default_db: &str) -> Vec<DdlTarget> {
    use deltalake::datafusion::sql::sqlparser::ast::{ObjectName, ObjectType, Statement};
    use deltalake::datafusion::sql::sqlparser::dialect::MySqlDialect;
    use deltalake::datafusion::sql::sqlparser::parser::Parser;
    let split = |n: &ObjectName, kind: DdlKind| -> DdlTarget {
        let parts: Vec<String> =
            n.0.iter()
                .map(|p| p.as_ident().map(|i| i.value.clone()).unwrap_or_default())
                .collect();
        let (db, table) = match parts.as_slice() {
            [db, t] => (db.clone(), t.clone()),
            [t] => (default_db.to_string(), t.clone()),
            _ => (String::new(), parts.last().cloned().unwrap_or_default()),
        };
        DdlTarget { db, table, kind }
    };
    let Ok(statements) = Parser::parse_sql(&MySqlDialect {}, sql) else {
        return fallback_ddl_tables(sql, default_db);
    };
    let mut out = Vec::new();
    for s in statements {
        match s {
            Statement::AlterTable(a) => out.push(split(&a.name, DdlKind::Other)),
            Statement::Drop {
                names, object_type, ..
            } => {
                let kind = if object_type == ObjectType::Table {
                    DdlKind::Drop
                } else {
                    DdlKind::Other
                };
                out.extend(names.iter().map(|n| split(n, kind)))
            }
            Statement::Truncate(t) => out.extend(
                t.table_names
                    .iter()
                    .map(|t| split(&t.name, DdlKind::Truncate)),
            ),
            Statement::RenameTable(r) => {
                for r in r {
                    out.push(split(&r.old_name, DdlKind::Other));
                    out.push(split(&r.new_name, DdlKind::Other));
                }
            }
            Statement::CreateTable(c) => out.push(split(&c.name, DdlKind::Other)),
            _ => {}
        }
    }
    out
}

/// Column renames (old → new source name) an ALTER TABLE statement makes, by
/// `RENAME COLUMN a TO b` or `CHANGE [COLUMN] a b type`. A statement the parser does
/// not understand names none: a renamed column then looks dropped and re-added, and
/// the table parks (its values would be missing), never evolves wrongly.
pub fn ddl_renames(sql: &str) -> Vec<(String, String)> {
    use deltalake::datafusion::sql::sqlparser::ast::{AlterTableOperation, Statement};
    use deltalake::datafusion::sql::sqlparser::dialect::MySqlDialect;
    use deltalake::datafusion::sql::sqlparser::parser::Parser;
    let Ok(statements) = Parser::parse_sql(&MySqlDialect {}, sql) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in statements {
        if let Statement::AlterTable(a) = s {
            for op in a.operations {
                match op {
                    AlterTableOperation::RenameColumn {
                        old_column_name,
                        new_column_name,
                    } => out.push((old_column_name.value, new_column_name.value)),
                    AlterTableOperation::ChangeColumn {
                        old_name, new_name, ..
                    } if old_name.value != new_name.value => {
                        out.push((old_name.value, new_name.value))
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// What the server wrote into the existing rows of columns new to a table: (source
/// name, value as MySQL text) for each that got a non-NULL value. Literal defaults
/// only; a computed one (`CURRENT_TIMESTAMP`, an expression) is an error, since its
/// value per row is not known here.
pub async fn added_defaults(
    source: &Source,
    db: &str,
    table: &str,
    columns: &[String],
) -> std::result::Result<Vec<(String, String)>, String> {
    use mysql_async::prelude::Queryable;
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = source.conn().await.map_err(|e| e.to_string())?;
    type Row = (String, Option<String>, String, String, String, String);
    let rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_DEFAULT, IS_NULLABLE, DATA_TYPE, EXTRA, VERSION() \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await
        .map_err(|e| format!("reading the new columns' defaults: {e}"))?;
    let mut out = Vec::new();
    for (name, default, nullable, data_type, extra, version) in rows {
        if !columns.iter().any(|c| c.eq_ignore_ascii_case(&name)) {
            continue;
        }
        match default_text(default.as_deref(), &nullable, &data_type, &extra, &version) {
            Ok(Some(v)) => out.push((name, v)),
            Ok(None) => {}
            Err(what) => {
                return Err(format!(
                    "column {name} was added with {what}, which the server wrote into every existing row without row events; add it without a default (or with a literal one), or land the table again"
                ))
            }
        }
    }
    Ok(out)
}

/// The value existing rows got for an added column, as MySQL text (`None`: NULL),
/// from `information_schema.COLUMNS`. MariaDB quotes string defaults and spells
/// "none" as the text NULL; MySQL leaves literals bare and flags expressions
/// `DEFAULT_GENERATED`.
fn default_text(
    default: Option<&str>,
    nullable: &str,
    data_type: &str,
    extra: &str,
    version: &str,
) -> std::result::Result<Option<String>, String> {
    let dt = data_type.to_ascii_lowercase();
    let numeric = matches!(
        dt.as_str(),
        "tinyint"
            | "smallint"
            | "mediumint"
            | "int"
            | "integer"
            | "bigint"
            | "decimal"
            | "numeric"
            | "float"
            | "double"
            | "real"
    );
    let stringy = matches!(
        dt.as_str(),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext"
    );
    match default {
        None | Some("NULL") if nullable == "YES" => Ok(None),
        // NOT NULL without a default: MySQL's implicit default.
        None | Some("NULL") if numeric => Ok(Some("0".into())),
        None | Some("NULL") if stringy => Ok(Some(String::new())),
        None | Some("NULL") => Err(format!("NOT NULL and no default ({data_type})")),
        Some(d) if extra.to_ascii_uppercase().contains("DEFAULT_GENERATED") => {
            Err(format!("the computed default {d}"))
        }
        Some(d) if d.len() >= 2 && d.starts_with('\'') && d.ends_with('\'') => {
            Ok(Some(d[1..d.len() - 1].replace("''", "'")))
        }
        Some(d) if d.parse::<f64>().is_ok() => Ok(Some(d.to_string())),
        Some(d) if version.to_ascii_lowercase().contains("mariadb") => {
            Err(format!("the computed default {d}"))
        }
        Some(d) => Ok(Some(d.to_string())),
    }
}

/// Table names from a statement the parser did not understand: every
/// identifier-looking word, in the default database and qualified. Its kind comes
/// from its first words as the SQL tokenizer sees them (comments skipped).
fn fallback_ddl_tables(sql: &str, default_db: &str) -> Vec<DdlTarget> {
    use deltalake::datafusion::sql::sqlparser::dialect::MySqlDialect;
    use deltalake::datafusion::sql::sqlparser::keywords::Keyword;
    use deltalake::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let words: Vec<Keyword> = Tokenizer::new(&MySqlDialect {}, sql)
        .tokenize()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .take(2)
        .map(|t| match t {
            Token::Word(w) => w.keyword,
            _ => Keyword::NoKeyword,
        })
        .collect();
    let kind = match words.as_slice() {
        [Keyword::TRUNCATE, ..] => DdlKind::Truncate,
        [Keyword::DROP, Keyword::TABLE] => DdlKind::Drop,
        _ => DdlKind::Other,
    };
    let mut out = Vec::new();
    for word in sql.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ';') {
        let w = word.replace('`', "");
        let (db, table) = match w.split_once('.') {
            Some((db, t)) => (db.to_string(), t.to_string()),
            None if !w.is_empty() => (default_db.to_string(), w),
            None => continue,
        };
        out.push(DdlTarget { db, table, kind });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{ddl_renames, ddl_tables, default_text, DdlKind, DdlTarget};

    #[test]
    fn renames_come_from_the_statement() {
        let r = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            ddl_renames("ALTER TABLE t RENAME COLUMN a TO b, ADD COLUMN c INT"),
            vec![r("a", "b")]
        );
        assert_eq!(
            ddl_renames("ALTER TABLE d.t CHANGE COLUMN a b BIGINT NOT NULL"),
            vec![r("a", "b")]
        );
        assert!(ddl_renames("ALTER TABLE t CHANGE a a BIGINT").is_empty());
        assert!(ddl_renames("ALTER TABLE t MODIFY a BIGINT").is_empty());
    }

    #[test]
    fn defaults_of_added_columns() {
        let maria = "10.11.6-MariaDB";
        let d = |def: Option<&str>, nullable: &str, dt: &str, extra: &str, v: &str| {
            default_text(def, nullable, dt, extra, v)
        };
        assert_eq!(d(Some("NULL"), "YES", "int", "", maria), Ok(None));
        assert_eq!(d(None, "YES", "int", "", "8.0.36"), Ok(None));
        assert_eq!(d(Some("5"), "NO", "int", "", maria), Ok(Some("5".into())));
        assert_eq!(
            d(Some("'it''s'"), "YES", "varchar", "", maria),
            Ok(Some("it's".into()))
        );
        assert_eq!(d(None, "NO", "int", "", maria), Ok(Some("0".into())));
        assert_eq!(d(None, "NO", "varchar", "", maria), Ok(Some(String::new())));
        assert!(d(None, "NO", "date", "", maria).is_err());
        assert!(d(Some("current_timestamp()"), "NO", "datetime", "", maria).is_err());
        assert_eq!(
            d(Some("open"), "NO", "varchar", "", "8.0.36"),
            Ok(Some("open".into()))
        );
        assert!(d(
            Some("CURRENT_TIMESTAMP"),
            "NO",
            "datetime",
            "DEFAULT_GENERATED",
            "8.0.36"
        )
        .is_err());
    }

    fn t(db: &str, table: &str, kind: DdlKind) -> DdlTarget {
        DdlTarget {
            db: db.into(),
            table: table.into(),
            kind,
        }
    }

    #[test]
    fn ddl_names_the_tables_it_touches() {
        use DdlKind::*;
        assert_eq!(
            ddl_tables("ALTER TABLE invoices ADD COLUMN note TEXT", "shop"),
            vec![t("shop", "invoices", Other)]
        );
        assert_eq!(
            ddl_tables("DROP TABLE `a`.`b`, c", "shop"),
            vec![t("a", "b", Drop), t("shop", "c", Drop)]
        );
        assert_eq!(
            ddl_tables("RENAME TABLE x TO y", "d"),
            vec![t("d", "x", Other), t("d", "y", Other)]
        );
        assert_eq!(
            ddl_tables("TRUNCATE TABLE x", "d"),
            vec![t("d", "x", Truncate)]
        );
        // Not parseable by sqlparser: every word counts as a candidate.
        assert!(ddl_tables("ALTER ONLINE TABLE q FORCE", "d").contains(&t("d", "q", Other)));
    }

    /// Issue 14, item 4: the kind comes from the parsed statement, not its first
    /// characters, so a comment an application (or an ORM) puts first changes nothing.
    #[test]
    fn ddl_kind_comes_from_the_parsed_statement() {
        use DdlKind::*;
        assert_eq!(
            ddl_tables("/* app:billing */ TRUNCATE TABLE m", "d"),
            vec![t("d", "m", Truncate)]
        );
        assert_eq!(
            ddl_tables("-- nightly\nTRUNCATE m", "d"),
            vec![t("d", "m", Truncate)]
        );
        assert_eq!(
            ddl_tables(
                "DROP TABLE IF EXISTS `d`.`m` /* generated by server */",
                "e"
            ),
            vec![t("d", "m", Drop)]
        );
        assert_eq!(ddl_tables("DROP VIEW v", "d"), vec![t("d", "v", Other)]);
        // Unparseable, with a comment first: still a TRUNCATE.
        assert!(
            ddl_tables("/* x */ TRUNCATE TABLE q PARTITION (p0) WAIT 5", "d")
                .contains(&t("d", "q", Truncate))
        );
    }
}
