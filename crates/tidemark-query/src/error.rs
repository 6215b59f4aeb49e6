//! Query errors, and the SQLSTATE each kind has.
//!
//! DataFusion's errors are kept as they are (not flattened to text), so the SQLSTATE
//! a client gets is decided from the error's variant ([`Error::sqlstate`]): DataFusion's
//! own kinds, the Arrow error under them, and tidemark's own errors raised inside
//! DataFusion (a catalog refusing a table) through `DataFusionError::External`.

use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::common::SchemaError;
use deltalake::datafusion::error::DataFusionError;

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong answering a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A statement tidemark's own checks refuse: the wrong arguments to a time-travel
    /// function, more than one statement where one is expected.
    #[error("{0}")]
    Sql(String),
    /// A form of a statement tidemark does not support (SQLSTATE 0A000).
    #[error("{0}")]
    Unsupported(String),
    /// A table the query names does not exist, or is not one the caller may read
    /// (the message names only what the query wrote).
    #[error(
        "table {0} does not exist; `SELECT * FROM information_schema.tables` lists the tables"
    )]
    UnknownTable(String),
    /// A function the statement calls does not exist.
    #[error("function {0} does not exist")]
    UnknownFunction(String),
    /// A statement that would change data.
    #[error("tidemark SQL is read-only: {0} statements are not allowed")]
    ReadOnly(String),
    /// The caller may not read something (raised by the endpoint's catalog; the
    /// message says what and why).
    #[error("{0}")]
    PermissionDenied(String),
    /// DataFusion could not parse, plan or run the statement (boxed: it is large).
    #[error("{}", message(.0))]
    DataFusion(Box<DataFusionError>),
    /// delta-rs could not load a table or version.
    #[error(transparent)]
    Delta(Box<deltalake::DeltaTableError>),
    /// Opening the warehouse failed (boxed: delta-rs errors are large).
    #[error(transparent)]
    Lake(Box<tidemark_lake::Error>),
}

impl Error {
    /// The SQLSTATE clients get for this error, decided from its kind.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Sql(_) => "22023",
            Error::Unsupported(_) => "0A000",
            Error::UnknownTable(_) => "42P01",
            Error::UnknownFunction(_) => "42883",
            Error::ReadOnly(_) => "25006",
            Error::PermissionDenied(_) => "42501",
            Error::DataFusion(e) => sqlstate(e),
            Error::Delta(_) | Error::Lake(_) => "XX000",
        }
    }
}

/// The SQLSTATE of a DataFusion error: from its root cause (DataFusion wraps errors
/// in context, in Arrow errors and back), tidemark's own errors found by downcasting.
pub fn sqlstate(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::External(x) => external_sqlstate(x.as_ref()),
        DataFusionError::ArrowError(a, _) => arrow_sqlstate(a),
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
        },
        DataFusionError::SQL(..) => "42601",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::Configuration(_) => "22023",
        // The statement is wrong in a way the planner has no finer kind for
        // (class 42: syntax error or access rule violation).
        DataFusionError::Plan(_) => "42000",
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => "58030",
        _ => "XX000",
    }
}

/// The SQLSTATE of an Arrow error (evaluating an expression on data).
pub fn arrow_sqlstate(e: &ArrowError) -> &'static str {
    match e {
        ArrowError::DivideByZero => "22012",
        ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
        ArrowError::ArithmeticOverflow(_) => "22003",
        ArrowError::MemoryError(_) => "53200",
        ArrowError::ExternalError(x) => external_sqlstate(x.as_ref()),
        _ => "XX000",
    }
}

fn external_sqlstate(x: &(dyn std::error::Error + Send + Sync + 'static)) -> &'static str {
    if let Some(e) = x.downcast_ref::<Error>() {
        e.sqlstate()
    } else if let Some(e) = x.downcast_ref::<DataFusionError>() {
        sqlstate(e)
    } else if let Some(e) = x.downcast_ref::<ArrowError>() {
        arrow_sqlstate(e)
    } else {
        "XX000"
    }
}

/// A DataFusion error's message as people should read it: its root cause without
/// DataFusion's wrapping ("External error: ", "Error during planning: ").
pub fn message(e: &DataFusionError) -> String {
    match e.find_root() {
        DataFusionError::External(x) => x.to_string(),
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::ExternalError(x) => x.to_string(),
            other => other.to_string(),
        },
        DataFusionError::SchemaError(s, _) => s.to_string(),
        DataFusionError::SQL(p, _) => p.to_string(),
        DataFusionError::Plan(m)
        | DataFusionError::Execution(m)
        | DataFusionError::NotImplemented(m)
        | DataFusionError::ResourcesExhausted(m)
        | DataFusionError::Configuration(m) => m.clone(),
        other => other.strip_backtrace(),
    }
}

impl From<tidemark_lake::Error> for Error {
    fn from(e: tidemark_lake::Error) -> Self {
        Error::Lake(Box::new(e))
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        // tidemark's own errors raised inside DataFusion come back as themselves.
        match e {
            DataFusionError::External(x) if x.is::<Error>() => {
                *x.downcast::<Error>().expect("checked")
            }
            e => Error::DataFusion(Box::new(e)),
        }
    }
}

impl From<deltalake::DeltaTableError> for Error {
    fn from(e: deltalake::DeltaTableError) -> Self {
        Error::Delta(Box::new(e))
    }
}

impl From<Error> for DataFusionError {
    /// For tidemark's errors raised where DataFusion expects its own (a catalog, a
    /// table provider): kept whole, so [`Error::sqlstate`] finds them again.
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(e) => *e,
            e => DataFusionError::External(Box::new(e)),
        }
    }
}
