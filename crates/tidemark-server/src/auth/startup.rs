//! The startup phase: TLS policy, then SCRAM-SHA-256 against the users file.
//!
//! Our own `StartupHandler` rather than pgwire's `SASLAuthStartupHandler` because that
//! one needs each user's SaltedPassword (login-equivalent); see [`super::scram`].

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::{
    ClientInfo, ConnectionGuard, ConnectionHandle, PgWireConnectionState, PidSecretKeyGenerator,
    METADATA_USER,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::scram::{self, ClientFinal, ClientFirst, Verifier};
use crate::error::fatal;
use crate::session::Session;
use crate::Shared;

const MECHANISM: &str = "SCRAM-SHA-256";

enum State {
    /// Waiting for the startup message.
    Initial,
    /// SASL offered; waiting for the client-first message.
    Offered,
    /// server-first sent; waiting for the client's proof.
    // Boxed: the exchange's state is large and lives only between two messages.
    ServerFirstSent(Box<Exchange>),
    /// Logged in.
    Done,
}

/// What the last SCRAM message needs from the first.
struct Exchange {
    /// `None` for an unknown user: the exchange runs to the end with a fake salt and
    /// then fails exactly as a wrong password does.
    user: Option<(String, Verifier)>,
    client_first: ClientFirst,
    server_first: String,
    nonce: String,
}

/// One connection's authentication (pgwire asks for a fresh handler per socket).
pub(crate) struct ScramStartup {
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// The server is at `max_connections`: refuse after the startup message.
    full: bool,
}

impl ScramStartup {
    pub(crate) fn new(shared: Arc<Shared>, full: bool) -> Self {
        Self {
            shared,
            state: Mutex::new(State::Initial),
            full,
        }
    }

    fn parameters(&self) -> DefaultServerParameterProvider {
        let mut p = DefaultServerParameterProvider::default();
        p.server_version = crate::catalog::server_version();
        p.is_superuser = false;
        p.default_transaction_read_only = true;
        p.time_zone = "UTC".into();
        p
    }
}

/// The one message for a wrong password and for an unknown user, as PostgreSQL
/// words it, so a client cannot tell which.
fn auth_failed(user: &str) -> PgWireError {
    fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

fn protocol(message: impl Into<String>) -> PgWireError {
    fatal("08P01", message)
}

#[async_trait]
impl StartupHandler for ScramStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut state = self.state.lock().await;
        match (message, &*state) {
            (PgWireFrontendMessage::Startup(startup), State::Initial) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                if self.full {
                    return Err(fatal(
                        "53300",
                        "sorry, too many clients already; try again later, or raise max_connections in [server]",
                    ));
                }
                if self.shared.require_tls && !client.is_secure() {
                    warn!(peer = %client.socket_addr(), "refused a client without TLS (require_tls)");
                    return Err(fatal(
                        "28000",
                        "this server requires TLS; connect with sslmode=require",
                    ));
                }
                if client
                    .metadata()
                    .get(METADATA_USER)
                    .is_none_or(|u| u.is_empty())
                {
                    return Err(fatal(
                        "28000",
                        "no PostgreSQL user name specified in startup packet",
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![MECHANISM.to_string()],
                    )))
                    .await?;
                *state = State::Offered;
            }
            (PgWireFrontendMessage::PasswordMessageFamily(msg), State::Offered) => {
                let initial = msg.into_sasl_initial_response()?;
                if initial.auth_method != MECHANISM {
                    return Err(protocol(format!(
                        "SASL mechanism {} is not offered; use {MECHANISM}",
                        initial.auth_method
                    )));
                }
                let data = initial.data.as_deref().unwrap_or_default();
                let text = std::str::from_utf8(data)
                    .map_err(|_| protocol("SCRAM message is not UTF-8"))?;
                let client_first = ClientFirst::parse(text).map_err(protocol)?;
                // The startup packet's user name counts; SCRAM's n= is ignored, as
                // PostgreSQL does (libpq sends it empty).
                let name = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                // The users in force now: a user added by a reload logs in at once.
                let user = self
                    .shared
                    .access
                    .get()
                    .users
                    .get(&name)
                    .map(|(role, v)| (role.clone(), v.clone()));
                let (salt, iterations) = match &user {
                    Some((_, v)) => (v.salt.clone(), v.iterations),
                    None => (
                        scram::fake_salt(&self.shared.fake_salt_secret, &name),
                        scram::DEFAULT_ITERATIONS,
                    ),
                };
                let nonce = format!(
                    "{}{}",
                    client_first.nonce,
                    scram::b64(&rand::random::<[u8; 18]>())
                );
                let server_first = format!("r={nonce},s={},i={iterations}", scram::b64(&salt));
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLContinue(server_first.clone().into_bytes().into()),
                    ))
                    .await?;
                *state = State::ServerFirstSent(Box::new(Exchange {
                    user,
                    client_first,
                    server_first,
                    nonce,
                }));
            }
            (
                PgWireFrontendMessage::PasswordMessageFamily(msg),
                State::ServerFirstSent(exchange),
            ) => {
                let Exchange {
                    user,
                    client_first,
                    server_first,
                    nonce,
                } = exchange.as_ref();
                let name = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let response = msg.into_sasl_response()?;
                let text = std::str::from_utf8(&response.data)
                    .map_err(|_| protocol("SCRAM message is not UTF-8"))?;
                let fin = ClientFinal::parse(text).map_err(protocol)?;
                if fin.channel_binding != scram::b64(client_first.gs2_header.as_bytes())
                    || fin.nonce != *nonce
                {
                    return Err(protocol("SCRAM channel binding or nonce mismatch"));
                }
                let auth_message =
                    format!("{},{server_first},{}", client_first.bare, fin.without_proof);
                let verified = user.as_ref().and_then(|(role, v)| {
                    v.verify(auth_message.as_bytes(), &fin.proof)
                        .map(|sig| (role.clone(), sig))
                });
                let Some((role, signature)) = verified else {
                    // Logged for the operator (who may need to know the name was
                    // unknown); the client hears the same as for a wrong password.
                    warn!(user = %name, known = user.is_some(), peer = %client.socket_addr(), "authentication failed");
                    return Err(auth_failed(&name));
                };
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLFinal(
                            format!("v={}", scram::b64(&signature)).into_bytes().into(),
                        ),
                    ))
                    .await?;
                *state = State::Done;
                drop(state);

                let (pid, key) = self.shared.pids.generate(client);
                client.set_pid_and_secret_key(pid, key.clone());
                // Lets pgwire's cancel handler reach this connection's queries.
                let (handle, guard) = self.shared.connections.register(pid, key);
                client
                    .session_extensions()
                    .insert::<Arc<ConnectionHandle>>(handle.clone());
                client.session_extensions().insert::<ConnectionGuard>(guard);
                // Every user's role is defined in the roles in force (checked at
                // startup and by each reload), so this is a guard; it also catches a
                // reload between the two SCRAM messages that removed the user.
                let grants = self
                    .shared
                    .access
                    .get()
                    .session_role(&name, &role)
                    .map_err(|r| match r {
                        crate::Revoked::UserRemoved => auth_failed(&name),
                        r => fatal("28000", r.message(&name, &role)),
                    })?;
                let grants = Arc::new(crate::access::CurrentRole::new(grants));
                let ctx = crate::catalog::session_context(&self.shared, &name, grants.clone())
                    .map_err(|e| fatal("XX000", e.to_string()))?;
                let session = Session::new(
                    name.clone(),
                    grants,
                    client.socket_addr().to_string(),
                    Some(handle),
                    ctx,
                    self.shared.statement_timeout,
                    client.metadata(),
                );
                client.session_extensions().insert::<Session>(session);
                info!(user = %name, role = %role, peer = %client.socket_addr(), tls = client.is_secure(), "logged in");
                finish_authentication(client, &self.parameters()).await?;
            }
            (_, State::Done) => {}
            _ => return Err(protocol("unexpected message during authentication")),
        }
        Ok(())
    }
}
