//! One connection's state after login.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use deltalake::datafusion::prelude::SessionContext;

/// A logged-in connection: who it is, the SQL session it plans on, its settings.
/// Stored in pgwire's per-connection extensions, so it ends with the connection.
pub(crate) struct Session {
    /// The login name.
    pub(crate) user: String,
    /// The user's role at login (see [`crate::access`]). A session whose user has
    /// another role after a reload is ended (see `query.rs`).
    pub(crate) role: String,
    /// That role's grants, masks and row filters as they are now: set again from the
    /// users and roles in force when each request starts.
    pub(crate) grants: std::sync::Arc<crate::access::CurrentRole>,
    /// The client's address, for the audit.
    pub(crate) client: String,
    /// Where a cancel request for this connection arrives.
    pub(crate) cancel: Option<std::sync::Arc<pgwire::api::ConnectionHandle>>,
    /// This connection's own DataFusion session (see [`crate::catalog`]).
    pub(crate) ctx: SessionContext,
    settings: Mutex<Settings>,
    /// The server's limit, which a session can lower but not raise.
    server_timeout: Option<Duration>,
}

/// Client settings a session may change. They are per session and only what clients
/// set on connect; none reaches the engine or another session.
#[derive(Debug, Clone)]
struct Settings {
    values: BTreeMap<&'static str, String>,
    statement_timeout: Option<Duration>,
}

/// The settings `SET` accepts, with the spelling `SHOW` answers under and the
/// starting value.
pub(crate) const SETTABLE: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, YMD"),
    ("extra_float_digits", "1"),
    ("search_path", "public"),
    ("statement_timeout", "0"),
    ("TimeZone", "UTC"),
];

impl Session {
    pub(crate) fn new(
        user: String,
        grants: std::sync::Arc<crate::access::CurrentRole>,
        client: String,
        cancel: Option<std::sync::Arc<pgwire::api::ConnectionHandle>>,
        ctx: SessionContext,
        server_timeout: Option<Duration>,
        startup: &std::collections::HashMap<String, String>,
    ) -> Self {
        let mut values: BTreeMap<&'static str, String> = SETTABLE
            .iter()
            .map(|(k, v)| (*k, (*v).to_string()))
            .collect();
        // Startup parameters (`application_name=psql`) are settings too.
        if let Some(app) = startup.get("application_name") {
            values.insert("application_name", app.clone());
        }
        Self {
            user,
            role: grants.get().name().to_string(),
            grants,
            client,
            cancel,
            ctx,
            settings: Mutex::new(Settings {
                values,
                statement_timeout: None,
            }),
            server_timeout,
        }
    }

    /// The canonical name of a settable parameter (names are case-insensitive).
    pub(crate) fn settable(name: &str) -> Option<&'static str> {
        SETTABLE
            .iter()
            .map(|(k, _)| *k)
            .find(|k| k.eq_ignore_ascii_case(name))
    }

    /// Set a parameter already checked by [`Self::settable`].
    pub(crate) fn set(&self, name: &'static str, value: String, timeout: Option<Option<Duration>>) {
        let mut s = self.settings.lock().expect("settings lock");
        if let Some(t) = timeout {
            s.statement_timeout = t;
        }
        s.values.insert(name, value);
    }

    /// A parameter's value, if it is one of the settable ones.
    pub(crate) fn get(&self, name: &str) -> Option<(&'static str, String)> {
        let name = Self::settable(name)?;
        let s = self.settings.lock().expect("settings lock");
        Some((name, s.values.get(name).cloned().unwrap_or_default()))
    }

    /// The limit for the next statement: the session's, capped by the server's.
    pub(crate) fn statement_timeout(&self) -> Option<Duration> {
        let session = self
            .settings
            .lock()
            .expect("settings lock")
            .statement_timeout;
        match (session, self.server_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
