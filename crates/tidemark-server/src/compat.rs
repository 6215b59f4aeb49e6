//! What client libraries need beyond what pgwire and datafusion-pg-catalog give:
//! found by running psycopg, SQLAlchemy and pgjdbc against the endpoint
//! (tests/it/clients.rs). Kept apart from the catalog and session code so each
//! workaround says which client needs it and can go when the library fixes it.
//!
//! * `SAVEPOINT` / `RELEASE SAVEPOINT` are accepted as no-ops, like BEGIN: psycopg
//!   opens a savepoint for `conn.transaction()` inside a transaction, which
//!   SQLAlchemy does on connect (psycopg's `TypeInfo.fetch`).
//! * `pg_attribute.atttypmod` carries numeric precision and scale: pg_catalog
//!   reports -1 for every column, so pgjdbc's `getColumns` says DECIMAL_DIGITS 0 and
//!   SQLAlchemy reflects `total` as a NUMERIC without scale.
//! * `to_regtype(text)`: psycopg's `TypeInfo.fetch` (SQLAlchemy's psycopg dialect
//!   looks up hstore with it on connect).
//! * `information_schema._pg_expandarray(array)`: pgjdbc's `getPrimaryKeys` and
//!   `getIndexInfo` call it on `pg_index.indkey`. The warehouse declares no keys or
//!   indexes (pg_index is empty), so it is only ever planned, never run on a row.
//! * `pg_get_serial_sequence`, `pg_collation_is_visible` and `json_build_object`:
//!   SQLAlchemy's column reflection plans them in CASE branches for identity and
//!   collation details. The warehouse has neither (attidentity is '' and
//!   attcollation 0), so the first is always NULL and the second true; the third
//!   builds a real JSON object.
//! * In statements that read the catalogs (see [`reads_catalog`]; an analyst's
//!   query keeps the answer `tidemark sql` gives it), a correlated scalar subquery
//!   inside CASE becomes NULL unless it aggregates:
//!   DataFusion plans a correlated scalar subquery only when it is aggregated, and
//!   SQLAlchemy's column reflection has three of them, guarded by CASE on
//!   `atthasdef`, `attidentity != ''` and `attcollation != 0`. pg_attribute has no
//!   defaults, identities or collations, so those branches are NULL anyway; this is
//!   what datafusion-pg-catalog does for such subqueries directly in a SELECT list.
//! * `(expr).field`, a field of a composite value: pgjdbc's `getPrimaryKeys` reads
//!   `(_pg_expandarray(indkey)).n`; DataFusion plans only a quoted field name there.
//! * `LIKE … ESCAPE '/'`: DataFusion runs LIKE only with the backslash escape, and
//!   SQLAlchemy's inspector escapes with `/` (`nspname NOT LIKE 'pg/_%' ESCAPE '/'`);
//!   the pattern is translated to backslash escapes by `pg_like_escape`.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion_pg_catalog::pg_catalog::PG_CATALOG_TABLES;
use datafusion_pg_catalog::sql::rules::{
    CurrentUserVariableToSessionUserFunctionCall, FixArrayLiteral, FixVersionColumnName,
    PrependUnqualifiedPgTableName, RewritePgCatalogOperator, RewriteRegCastToSubquery,
    SqlStatementRewriteRule, StripCallableQualifier, StripCollate,
};
use deltalake::arrow::array::{Array, AsArray, Int32Array, RecordBatch, StringArray, StructArray};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::{DataType, Field, Fields, Int32Type, SchemaRef};
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::catalog::{CatalogProviderList, SchemaProvider, TableProvider};
use deltalake::datafusion::error::Result as DFResult;
use deltalake::datafusion::execution::session_state::SessionStateBuilder;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, visit_relations, AccessExpr, Expr, Function,
    FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, GroupByExpr, Ident,
    ObjectName, Query, SetExpr, Statement, TableAlias, TableFactor, Value,
};
use pgwire::api::Type;

use crate::utility::Utility;
use crate::Result;

/// Register the functions clients call that DataFusion and pg_catalog lack: once on
/// the server's base session, which every connection copies.
pub(crate) fn install(ctx: &SessionContext) {
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(to_regtype),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(PgExpandArray::new()));
    ctx.register_udf(create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(CollationIsVisible::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject::new()));
    ctx.register_udf(create_udf(
        "pg_like_escape",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(pg_like_escape),
    ));
}

/// A connection's pg_catalog (`inner`, built over the catalogs its role sees) with
/// pg_attribute's type modifiers filled in from those same catalogs.
pub(crate) fn pg_catalog(
    inner: Arc<dyn SchemaProvider>,
    catalogs: Arc<dyn CatalogProviderList>,
) -> Arc<dyn SchemaProvider> {
    Arc::new(PgCatalog { inner, catalogs })
}

/// Whether a statement reads the catalogs: names, anywhere in it (FROM, joins,
/// subqueries, CTEs, set operations), a relation of schema `pg_catalog` or
/// `information_schema` (however qualified), or an unqualified pg_catalog table,
/// which PostgreSQL finds through its search path (pg_catalog comes first) and
/// datafusion-pg-catalog qualifies. Decided on the parsed names, never on the text,
/// so a string or a column that merely says "pg_class" does not count.
///
/// The rewrites that can change the answer of a statement DataFusion would plan
/// as it is (a subquery replaced by NULL, `LIMIT 1` added to a scalar subquery,
/// unqualified columns qualified by the wildcard's table, duplicated columns
/// renamed, `= ANY` turned into `array_contains`) exist for the catalog queries
/// clients send; applied to an analyst's query they make the wire answer
/// differently from `tidemark sql`. So only statements that read the catalogs get
/// them.
pub(crate) fn reads_catalog(s: &Statement) -> bool {
    let mut found = false;
    let _ = visit_relations(s, |name| {
        found |= is_catalog_relation(name);
        ControlFlow::<()>::Continue(())
    });
    found
}

fn is_catalog_relation(name: &ObjectName) -> bool {
    // As SQL reads names: unquoted parts fold to lower case.
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) if i.quote_style.is_none() => i.value.to_ascii_lowercase(),
            Some(i) => i.value.clone(),
            None => String::new(),
        })
        .collect();
    match parts.as_slice() {
        [.., schema, _] => schema == "pg_catalog" || schema == "information_schema",
        [table] => PG_CATALOG_TABLES.contains(&table.as_str()),
        [] => false,
    }
}

/// datafusion-pg-catalog's rewrites that only make statements DataFusion refuses
/// plannable (qualified function names, `current_user` without parentheses,
/// COLLATE, `OPERATOR(pg_catalog.~)`, `'x'::regclass`, `'{a,b}'::text[]`, the
/// column name of `version()`): applied to every statement. Its other rules (see
/// [`reads_catalog`]) run, with its whole-query substitutions, only on catalog
/// statements.
pub(crate) fn general_rules() -> Vec<Arc<dyn SqlStatementRewriteRule>> {
    vec![
        Arc::new(PrependUnqualifiedPgTableName),
        Arc::new(StripCallableQualifier),
        Arc::new(FixArrayLiteral),
        Arc::new(CurrentUserVariableToSessionUserFunctionCall),
        Arc::new(StripCollate),
        Arc::new(RewritePgCatalogOperator),
        Arc::new(RewriteRegCastToSubquery::new()),
        Arc::new(FixVersionColumnName),
    ]
}

/// Rewrite a parsed client statement into one DataFusion plans: see the module
/// docs. `catalog`: whether it reads the catalogs ([`reads_catalog`]); only then
/// are subqueries inside CASE replaced by NULL.
pub(crate) fn rewrite(mut s: Statement, catalog: bool) -> Statement {
    let _ = visit_expressions_mut(&mut s, |e| {
        match e {
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } if catalog => {
                let branches = operand
                    .iter_mut()
                    .map(|b| b.as_mut())
                    .chain(
                        conditions
                            .iter_mut()
                            .flat_map(|w| [&mut w.condition, &mut w.result]),
                    )
                    .chain(else_result.iter_mut().map(|b| b.as_mut()));
                for branch in branches {
                    null_correlated_subqueries(branch);
                }
            }
            Expr::CompoundFieldAccess { root, access_chain }
                if matches!(**root, Expr::Nested(_) | Expr::Function(_)) =>
            {
                for a in access_chain.iter_mut() {
                    if let AccessExpr::Dot(Expr::Identifier(id)) = a {
                        let name = std::mem::take(&mut id.value);
                        *a = AccessExpr::Dot(Expr::value(Value::SingleQuotedString(name)));
                    }
                }
            }
            Expr::Like {
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char,
                ..
            } => {
                let escape = match escape_char.as_ref().map(|v| &v.value) {
                    Some(Value::SingleQuotedString(c)) if c != "\\" => c.clone(),
                    _ => return ControlFlow::<()>::Continue(()),
                };
                let original = std::mem::replace(pattern.as_mut(), Expr::value(Value::Null));
                **pattern = Expr::Function(Function {
                    name: ObjectName::from(vec![Ident::new("pg_like_escape")]),
                    uses_odbc_syntax: false,
                    parameters: FunctionArguments::None,
                    args: FunctionArguments::List(FunctionArgumentList {
                        duplicate_treatment: None,
                        args: vec![
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(original)),
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                                Value::SingleQuotedString(escape),
                            ))),
                        ],
                        clauses: vec![],
                    }),
                    filter: None,
                    null_treatment: None,
                    over: None,
                    within_group: vec![],
                });
                *escape_char = None;
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    s
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "json_agg",
    "first_value",
    "last_value",
];

/// Replace, within `e`, the scalar subqueries DataFusion cannot plan (correlated,
/// not aggregated) by NULL.
fn null_correlated_subqueries(e: &mut Expr) {
    let _ = visit_expressions_mut(e, |e| {
        if let Expr::Subquery(q) = e {
            if is_correlated(q) && !is_aggregated(q) {
                *e = Expr::value(Value::Null);
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn is_aggregated(q: &Query) -> bool {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return true;
    };
    if !matches!(&select.group_by, GroupByExpr::Expressions(v, _) if v.is_empty()) {
        return true;
    }
    let mut found = false;
    let _ = visit_expressions(&select.projection, |e| {
        if let Expr::Function(f) = e {
            let name = f.name.to_string().to_ascii_lowercase();
            let name = name.rsplit('.').next().unwrap_or(&name);
            found |= AGGREGATES.contains(&name);
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Whether `q` names a column qualified by a relation not in its own FROM.
fn is_correlated(q: &Query) -> bool {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return false;
    };
    let mut local: Vec<String> = Vec::new();
    for t in &select.from {
        for f in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            match f {
                TableFactor::Table { name, alias, .. } => {
                    let full = name.to_string().to_ascii_lowercase();
                    if let Some(last) = full.rsplit('.').next() {
                        local.push(last.to_string());
                    }
                    local.push(full);
                    if let Some(a) = alias {
                        local.push(a.name.value.to_ascii_lowercase());
                    }
                }
                // A derived table, UNNEST, a table function: named by its alias.
                _ => {
                    if let Some(a) = table_factor_alias(f) {
                        local.push(a.name.value.to_ascii_lowercase());
                    }
                }
            }
        }
    }
    let mut correlated = false;
    let _ = visit_expressions(select, |e| {
        if let Expr::CompoundIdentifier(parts) = e {
            if parts.len() >= 2 {
                let qualifier = parts[..parts.len() - 1]
                    .iter()
                    .map(|p| p.value.to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(".");
                correlated |= !local.contains(&qualifier);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    correlated
}

fn table_factor_alias(f: &TableFactor) -> Option<&TableAlias> {
    match f {
        TableFactor::Derived { alias, .. }
        | TableFactor::TableFunction { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. }
        | TableFactor::NestedJoin { alias, .. } => alias.as_ref(),
        _ => None,
    }
}

/// A LIKE pattern written with escape character `escape` (empty: none), as the
/// same pattern with backslash escapes, the only kind DataFusion runs.
fn like_escape(pattern: &str, escape: &str) -> String {
    let esc = escape.chars().next();
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == esc {
            match chars.next() {
                Some(n @ ('%' | '_' | '\\')) => {
                    out.push('\\');
                    out.push(n);
                }
                Some(n) => out.push(n),
                None => out.push(c),
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

fn pg_like_escape(args: &[ColumnarValue]) -> DFResult<ColumnarValue> {
    let args = ColumnarValue::values_to_arrays(args)?;
    let patterns = args[0].as_string::<i32>();
    let escapes = args[1].as_string::<i32>();
    let out: StringArray = patterns
        .iter()
        .zip(escapes.iter())
        .map(|(p, e)| Some(like_escape(p?, e.unwrap_or(""))))
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out)))
}

/// Statements answered as no-ops that [`crate::utility`] does not know.
pub(crate) fn utility(s: &Statement) -> Option<Utility> {
    match s {
        // Every statement reads its own snapshot and nothing writes, so there is
        // nothing to roll back to; `ROLLBACK TO SAVEPOINT` is already a ROLLBACK.
        Statement::Savepoint { .. } => Some(Utility::Noop("SAVEPOINT")),
        Statement::ReleaseSavepoint { .. } => Some(Utility::Noop("RELEASE")),
        _ => None,
    }
}

/// Built-in type names (and the SQL spellings clients use) to their oids.
fn type_oids() -> &'static HashMap<String, i32> {
    static OIDS: OnceLock<HashMap<String, i32>> = OnceLock::new();
    OIDS.get_or_init(|| {
        let mut m: HashMap<String, i32> = (0..=u16::MAX as u32)
            .filter_map(Type::from_oid)
            .filter_map(|t| Some((t.name().to_string(), i32::try_from(t.oid()).ok()?)))
            .collect();
        for (alias, name) in [
            ("integer", "int4"),
            ("int", "int4"),
            ("smallint", "int2"),
            ("bigint", "int8"),
            ("boolean", "bool"),
            ("real", "float4"),
            ("double precision", "float8"),
            ("decimal", "numeric"),
            ("character varying", "varchar"),
            ("character", "bpchar"),
            ("timestamp without time zone", "timestamp"),
            ("timestamp with time zone", "timestamptz"),
            ("time without time zone", "time"),
            ("time with time zone", "timetz"),
        ] {
            if let Some(oid) = m.get(name).copied() {
                m.insert(alias.to_string(), oid);
            }
        }
        m
    })
}

/// `to_regtype(name)`: the type's oid, NULL when there is no such type (never an
/// error, which is why clients use it rather than `::regtype`).
fn to_regtype(args: &[ColumnarValue]) -> DFResult<ColumnarValue> {
    let args = ColumnarValue::values_to_arrays(args)?;
    let names = args[0].as_string::<i32>();
    let oids: Int32Array = names
        .iter()
        .map(|n| {
            let n = n?.trim().to_ascii_lowercase();
            let n = n.strip_prefix("pg_catalog.").unwrap_or(&n);
            let n = n.trim_matches('"');
            match n.strip_suffix("[]") {
                Some(elem) => type_oids().get(&format!("_{elem}")).copied(),
                None => type_oids().get(n).copied(),
            }
        })
        .collect();
    Ok(ColumnarValue::Array(Arc::new(oids)))
}

/// `_pg_expandarray(anyarray)`, which in PostgreSQL returns a set of `(x, n)`:
/// here a NULL `(x, n)` per row, enough to plan the queries pgjdbc sends over an
/// empty pg_index.
#[derive(Debug, Hash, PartialEq, Eq)]
struct PgExpandArray {
    signature: Signature,
}

impl PgExpandArray {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("x", DataType::Int32, true),
            Field::new("n", DataType::Int32, true),
        ])
    }
}

impl ScalarUDFImpl for PgExpandArray {
    fn name(&self) -> &str {
        "_pg_expandarray"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Struct(Self::fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        Ok(ColumnarValue::Array(Arc::new(StructArray::new_null(
            Self::fields(),
            args.number_rows,
        ))))
    }
}

/// `pg_collation_is_visible(oid)`: every collation is (there is only the default).
#[derive(Debug, Hash, PartialEq, Eq)]
struct CollationIsVisible {
    signature: Signature,
}

impl CollationIsVisible {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for CollationIsVisible {
    fn name(&self) -> &str {
        "pg_collation_is_visible"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
    }
}

/// `json_build_object(k1, v1, …)` as JSON text.
#[derive(Debug, Hash, PartialEq, Eq)]
struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(n))
            .collect::<DFResult<Vec<_>>>()?;
        let texts = arrays
            .iter()
            .map(|a| cast(a, &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()?;
        let out: StringArray = (0..n)
            .map(|row| {
                let mut obj = String::from("{");
                for (i, pair) in texts.chunks(2).enumerate() {
                    if i > 0 {
                        obj.push_str(", ");
                    }
                    let key = pair[0].as_string::<i32>();
                    let key = if key.is_null(row) { "" } else { key.value(row) };
                    obj.push_str(&json_string(key));
                    obj.push_str(" : ");
                    let value = pair.get(1).filter(|v| !v.is_null(row));
                    match value {
                        None => obj.push_str("null"),
                        Some(v) => {
                            let text = v.as_string::<i32>().value(row);
                            let t = arrays[2 * i + 1].data_type();
                            if t.is_numeric() || t == &DataType::Boolean {
                                obj.push_str(text);
                            } else {
                                obj.push_str(&json_string(text));
                            }
                        }
                    }
                }
                obj.push('}');
                Some(obj)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `s` as a JSON string literal, quotes and escapes included.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// PostgreSQL's type modifier for a column type, where clients read one.
fn typmod(t: &DataType) -> i32 {
    match t {
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *s >= 0 => {
            ((i32::from(*p) << 16) | i32::from(*s as u8)) + 4
        }
        _ => -1,
    }
}

/// pg_catalog with pg_attribute's type modifiers filled in; every other table as is.
#[derive(Debug)]
struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
    catalogs: Arc<dyn CatalogProviderList>,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        match table {
            Some(t) if name == "pg_attribute" => {
                let stream = Arc::new(Attributes {
                    schema: t.schema(),
                    inner: t,
                    catalogs: self.catalogs.clone(),
                });
                Ok(Some(Arc::new(StreamingTable::try_new(
                    stream.schema.clone(),
                    vec![stream],
                )?)))
            }
            other => Ok(other),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[derive(Debug)]
struct Attributes {
    inner: Arc<dyn TableProvider>,
    catalogs: Arc<dyn CatalogProviderList>,
    schema: SchemaRef,
}

/// Every column of every table as pg_attribute lists them (catalogs, schemas,
/// tables and fields in the catalog's order), with its type modifier.
async fn columns(catalogs: &dyn CatalogProviderList) -> DFResult<Vec<(String, i32)>> {
    let mut out = Vec::new();
    for c in catalogs.catalog_names() {
        let Some(catalog) = catalogs.catalog(&c) else {
            continue;
        };
        for s in catalog.schema_names() {
            let Some(schema) = catalog.schema(&s) else {
                continue;
            };
            for t in schema.table_names() {
                if let Some(table) = schema.table(&t).await? {
                    for f in table.schema().fields() {
                        out.push((f.name().clone(), typmod(f.data_type())));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `batch` with atttypmod set from `columns`, when the rows are those columns in the
/// same order; otherwise (a table came or went in between) unchanged, as before.
fn with_typmods(batch: RecordBatch, columns: &[(String, i32)]) -> DFResult<RecordBatch> {
    let schema = batch.schema();
    let (Ok(name_idx), Ok(mod_idx)) = (schema.index_of("attname"), schema.index_of("atttypmod"))
    else {
        return Ok(batch);
    };
    let names = batch.column(name_idx).as_string::<i32>();
    let same = names.len() == columns.len()
        && columns
            .iter()
            .enumerate()
            .all(|(i, (n, _))| names.is_valid(i) && names.value(i) == n);
    if !same || batch.column(mod_idx).data_type() != &DataType::Int32 {
        return Ok(batch);
    }
    let old = batch.column(mod_idx).as_primitive::<Int32Type>();
    let mods: Int32Array = columns
        .iter()
        .enumerate()
        .map(|(i, (_, m))| Some(if *m >= 0 { *m } else { old.value(i) }))
        .collect();
    let mut arrays = batch.columns().to_vec();
    arrays[mod_idx] = Arc::new(mods);
    Ok(RecordBatch::try_new(schema, arrays)?)
}

impl PartitionStream for Attributes {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let inner = self.inner.clone();
        let catalogs = self.catalogs.clone();
        let schema = self.schema.clone();
        let batch = async move {
            // pg_catalog's own table ignores the session it is scanned with.
            let state = SessionStateBuilder::new().build();
            let plan = inner.scan(&state, None, &[], None).await?;
            let batches = deltalake::datafusion::physical_plan::collect(plan, ctx).await?;
            let batch = concat_batches(&schema, &batches)?;
            let columns = columns(catalogs.as_ref()).await?;
            with_typmods(batch, &columns)
        };
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(batch),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{like_escape, reads_catalog};
    use deltalake::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use deltalake::datafusion::sql::sqlparser::parser::Parser;

    fn catalog(sql: &str) -> bool {
        let s = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        reads_catalog(&s[0])
    }

    #[test]
    fn catalog_statements_are_told_by_the_relations_they_read() {
        assert!(catalog("SELECT relname FROM pg_catalog.pg_class"));
        assert!(catalog("SELECT relname FROM pg_class"));
        assert!(catalog("SELECT * FROM tidemark.information_schema.tables"));
        assert!(catalog(
            "SELECT id FROM shop.t WHERE id IN (SELECT oid FROM PG_CATALOG.pg_namespace)"
        ));
        assert!(catalog(
            "WITH n AS (SELECT * FROM information_schema.columns) SELECT count(*) FROM n"
        ));
        assert!(!catalog("SELECT 'pg_class', pg_catalog.version()"));
        assert!(!catalog("SELECT pg_class FROM shop.pg_class"));
        assert!(!catalog("SELECT * FROM \"PG_CATALOG\".pg_class"));
        assert!(!catalog(
            "SELECT CASE WHEN v > 0 THEN (SELECT x.m FROM (SELECT max(v) m FROM t) x) END FROM t"
        ));
    }

    #[test]
    fn like_patterns_get_backslash_escapes() {
        // SQLAlchemy's "not a pg_ schema" pattern.
        assert_eq!(like_escape("pg/_%", "/"), "pg\\_%");
        assert_eq!(like_escape("a//b", "/"), "a/b");
        assert_eq!(like_escape("a/x", "/"), "ax");
        assert_eq!(like_escape("a\\b", "/"), "a\\\\b");
        assert_eq!(like_escape("a\\b_", ""), "a\\\\b_");
    }
}
