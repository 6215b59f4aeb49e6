//! The handlers pgwire calls for each connection.

use std::sync::Arc;

use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireServerHandlers};
use pgwire::error::PgWireError;

use crate::auth::startup::ScramStartup;
use crate::error::library_error;
use crate::query::QueryHandler;
use crate::Shared;

/// Cheap to clone: one per accepted socket.
#[derive(Clone)]
pub(crate) struct Handlers {
    shared: Arc<Shared>,
    query: Arc<QueryHandler>,
    errors: Arc<Errors>,
    cancel: Arc<DefaultCancelHandler>,
    /// Every connection slot is taken: the startup answers 53300 and ends.
    full: bool,
}

impl Handlers {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            query: Arc::new(QueryHandler::new(shared.clone())),
            errors: Arc::new(Errors),
            cancel: Arc::new(DefaultCancelHandler::new(shared.connections.clone())),
            shared,
            full: false,
        }
    }

    /// The handlers for a connection over `max_connections`: it gets PostgreSQL's
    /// "too many clients" error after the startup message, as clients expect,
    /// rather than a closed socket.
    pub(crate) fn refusing(&self) -> Self {
        Self {
            full: true,
            ..self.clone()
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    // A fresh one per socket: it holds the connection's SCRAM state.
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(ScramStartup::new(self.shared.clone(), self.full))
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        self.errors.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Gives errors from libraries (arrow-pg encoding, DataFusion while streaming) a
/// SQLSTATE instead of pgwire's catch-all XX000 where the error's kind tells us better.
struct Errors;

impl ErrorHandler for Errors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        if let PgWireError::ApiError(e) = error {
            *error = library_error(e.as_ref());
        }
    }
}
