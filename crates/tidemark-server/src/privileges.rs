//! `has_table_privilege`, `has_any_column_privilege` and `has_schema_privilege`,
//! answered from the role's grants. datafusion-pg-catalog registers them answering
//! true for everything; SQL tools (DBeaver, pgAdmin, Metabase) ask them to decide
//! what to offer, so each session replaces them with ones bound to its role.
//!
//! The warehouse is read-only, so the only privileges ever held are SELECT on a
//! table the role reads (and USAGE on a schema it has such a table in). A table the
//! role may not read answers false whether or not it exists, where PostgreSQL
//! would say "relation does not exist" for a missing one: an error would tell a
//! role the names of tables the catalogs hide from it.
//!
//! A table given by oid comes from this session's pg_class, which lists only what
//! the role reads, so the oid forms answer from the privilege alone.

use std::sync::Arc;

use datafusion_pg_catalog::pg_catalog::PG_CATALOG_TABLES;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::catalog::information_schema::INFORMATION_SCHEMA_TABLES;
use deltalake::datafusion::catalog::CatalogProvider;
use deltalake::datafusion::error::{DataFusionError, Result as DFResult};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use deltalake::datafusion::sql::sqlparser::parser::Parser;
use deltalake::datafusion::sql::sqlparser::tokenizer::Token;
use tidemark_query::{Engine, CATALOG};

use crate::access::{CurrentRole, Role};
use crate::LiveAccess;

const PG_CATALOG: &str = "pg_catalog";
const INFORMATION_SCHEMA: &str = "information_schema";

/// What the functions answer from, for one session.
struct Grants {
    engine: Arc<Engine>,
    /// The engine's catalog, unfiltered: which tables exist.
    catalog: Arc<dyn CatalogProvider>,
    user: String,
    /// The session's role.
    role: Arc<CurrentRole>,
    /// The users and roles in force, for the forms that name a user.
    access: Arc<LiveAccess>,
}

/// Replace the privilege functions on a session's context with ones answering for
/// `user` of `role` (and, where a call names a user, for that user's role).
pub(crate) fn install(
    ctx: &SessionContext,
    engine: Arc<Engine>,
    catalog: Arc<dyn CatalogProvider>,
    user: &str,
    role: Arc<CurrentRole>,
    access: Arc<LiveAccess>,
) {
    let grants = Arc::new(Grants {
        engine,
        catalog,
        user: user.to_string(),
        role,
        access,
    });
    for kind in [Kind::Table, Kind::AnyColumn, Kind::Schema] {
        ctx.register_udf(ScalarUDF::new_from_impl(HasPrivilege::new(
            kind,
            grants.clone(),
        )));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Table,
    AnyColumn,
    Schema,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Table => "has_table_privilege",
            Kind::AnyColumn => "has_any_column_privilege",
            Kind::Schema => "has_schema_privilege",
        }
    }

    /// The privileges PostgreSQL knows for the object kind, and the one a reader
    /// holds.
    fn privileges(self) -> (&'static [&'static str], &'static str) {
        match self {
            Kind::Table => (
                &[
                    "SELECT",
                    "INSERT",
                    "UPDATE",
                    "DELETE",
                    "TRUNCATE",
                    "REFERENCES",
                    "TRIGGER",
                    "MAINTAIN",
                ],
                "SELECT",
            ),
            Kind::AnyColumn => (&["SELECT", "INSERT", "UPDATE", "REFERENCES"], "SELECT"),
            Kind::Schema => (&["USAGE", "CREATE"], "USAGE"),
        }
    }
}

struct HasPrivilege {
    kind: Kind,
    signature: Signature,
    grants: Arc<Grants>,
}

impl std::fmt::Debug for HasPrivilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HasPrivilege")
            .field("name", &self.kind.name())
            .field("user", &self.grants.user)
            .finish()
    }
}

// One session's function: equal only to itself (the grants it answers from).
impl PartialEq for HasPrivilege {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.grants, &other.grants)
    }
}

impl Eq for HasPrivilege {}

impl std::hash::Hash for HasPrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.grants.user.hash(state);
    }
}

impl HasPrivilege {
    fn new(kind: Kind, grants: Arc<Grants>) -> Self {
        use DataType::{Int32, Int64, Utf8};
        let mut forms = vec![
            TypeSignature::Exact(vec![Utf8, Utf8]),
            TypeSignature::Exact(vec![Utf8, Utf8, Utf8]),
        ];
        if kind != Kind::Schema {
            // A table's oid (pg_class.oid), alone or after a user name.
            for oid in [Int32, Int64] {
                forms.push(TypeSignature::Exact(vec![oid.clone(), Utf8]));
                forms.push(TypeSignature::Exact(vec![Utf8, oid, Utf8]));
            }
        }
        Self {
            kind,
            signature: Signature::one_of(forms, Volatility::Stable),
            grants,
        }
    }

    /// Whether any of the comma-separated `privileges` is held on the object;
    /// `object` is `None` for a table given by oid (see the module docs).
    fn answer(&self, role: &Role, object: Option<&str>, privileges: &str) -> DFResult<bool> {
        let (known, held) = self.kind.privileges();
        let mut wants_held = false;
        for p in privileges.split(',') {
            let p = p.trim().to_ascii_uppercase();
            let (p, grant_option) = match p.strip_suffix("WITH GRANT OPTION") {
                Some(p) => (p.trim_end().to_string(), true),
                None => (p, false),
            };
            if !known.contains(&p.as_str()) {
                return Err(DataFusionError::Execution(format!(
                    "unrecognized privilege type: \"{p}\""
                )));
            }
            // Nobody may grant: grants live in the config file.
            wants_held |= p == held && !grant_option;
        }
        if !wants_held {
            return Ok(false);
        }
        let Some(object) = object else {
            return Ok(true);
        };
        let Some(parts) = object_name(object) else {
            return Ok(false);
        };
        let g = &self.grants;
        let catalog = g.catalog.as_ref();
        Ok(match self.kind {
            Kind::Schema => match parts.as_slice() {
                [schema] => {
                    schema == PG_CATALOG
                        || schema == INFORMATION_SCHEMA
                        || role.uses_schema(&g.engine, catalog, schema)
                }
                _ => false,
            },
            Kind::Table | Kind::AnyColumn => {
                let (schema, table) = match parts.as_slice() {
                    // PostgreSQL's search path: pg_catalog, then public.
                    [t] if is_pg_catalog_table(t) => (PG_CATALOG, t.as_str()),
                    [t] => ("public", t.as_str()),
                    [s, t] => (s.as_str(), t.as_str()),
                    [c, s, t] if c == CATALOG => (s.as_str(), t.as_str()),
                    _ => return Ok(false),
                };
                match schema {
                    PG_CATALOG => is_pg_catalog_table(table),
                    INFORMATION_SCHEMA => INFORMATION_SCHEMA_TABLES.contains(&table),
                    _ => role.reads(&g.engine, catalog, schema, table),
                }
            }
        })
    }

    /// The role a call answers for: the session's, or the named user's.
    fn role_of(&self, user: Option<&str>) -> Option<Arc<Role>> {
        match user {
            None => Some(self.grants.role.get()),
            Some(u) if u == self.grants.user => Some(self.grants.role.get()),
            Some(u) => {
                let access = self.grants.access.get();
                let (role, _) = access.users.get(u)?;
                access.policy.role(role)
            }
        }
    }
}

fn is_pg_catalog_table(name: &str) -> bool {
    PG_CATALOG_TABLES.contains(&name)
}

/// A relation or schema name as SQL reads it: unquoted parts fold to lower case.
fn object_name(text: &str) -> Option<Vec<String>> {
    let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(text).ok()?;
    let name = parser.parse_object_name(false).ok()?;
    if parser.peek_token().token != Token::EOF {
        return None;
    }
    name.0
        .iter()
        .map(|part| {
            let ident = part.as_ident()?;
            Some(match ident.quote_style {
                Some(_) => ident.value.clone(),
                None => ident.value.to_lowercase(),
            })
        })
        .collect()
}

impl ScalarUDFImpl for HasPrivilege {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(n))
            .collect::<DFResult<Vec<ArrayRef>>>()?;
        let (user, object, privileges) = match arrays.as_slice() {
            [o, p] => (None, o, p),
            [u, o, p] => (Some(cast(u, &DataType::Utf8)?), o, p),
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "{} takes 2 or 3 arguments",
                    self.name()
                )))
            }
        };
        let by_oid = object.data_type().is_integer();
        let object = cast(object, &DataType::Utf8)?;
        let privileges = cast(privileges, &DataType::Utf8)?;
        let (object, privileges) = (object.as_string::<i32>(), privileges.as_string::<i32>());
        let users = user.as_ref().map(|u| u.as_string::<i32>());
        let mut out = BooleanArray::builder(n);
        for row in 0..n {
            let user = users.map(|u| u.is_valid(row).then(|| u.value(row)));
            if object.is_null(row) || privileges.is_null(row) || user == Some(None) {
                out.append_null();
                continue;
            }
            let Some(role) = self.role_of(user.flatten()) else {
                // No such user: holds nothing.
                out.append_value(false);
                continue;
            };
            // An oid is this session's (see the module docs): not another user's.
            let other_user = user.flatten().is_some_and(|u| u != self.grants.user);
            if by_oid && other_user {
                out.append_value(false);
                continue;
            }
            let name = (!by_oid).then(|| object.value(row));
            out.append_value(self.answer(&role, name, privileges.value(row))?);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::object_name;

    #[test]
    fn names_fold_like_sql() {
        assert_eq!(
            object_name("Invoicing.Invoices"),
            Some(vec!["invoicing".into(), "invoices".into()])
        );
        assert_eq!(
            object_name("\"Shop\".t"),
            Some(vec!["Shop".into(), "t".into()])
        );
        assert_eq!(object_name("a b"), None);
    }
}
