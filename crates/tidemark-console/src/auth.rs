//! Signing in: the PostgreSQL endpoint's users and passwords, checked against their
//! SCRAM verifiers by tidemark-server ([`Gateway::login`]), then an HTTP session.
//!
//! * The session is a random 256-bit token in a cookie that is `HttpOnly` (page
//!   script cannot read it), `SameSite=Strict` (no other site's page can send it)
//!   and `Secure` when the console is served over TLS; `Path=/console`. Sessions
//!   live in memory: a restart signs everyone out.
//! * Every state-changing request (POST, DELETE) must carry the session's CSRF token
//!   (header `X-CSRF-Token`, or form field `csrf` for the CSV download), compared in
//!   constant time, and an `Origin`, when the browser sends one, naming this host.
//!   SameSite=Strict already keeps cross-site requests cookie-less; the token is the
//!   second lock, for browsers or proxies that do not honour it.
//! * Sign-in itself takes JSON only (a cross-site form cannot post JSON without a
//!   CORS preflight, which is never granted), and is rate limited: after
//!   [`MAX_FAILURES`] failures in [`WINDOW`] for one user name, or from one client
//!   address, further attempts get 429 until the window passes.
//! * Each request renews the session's role from the users and roles in force, as a
//!   SQL session does per statement: a reload's grants apply at once, and a user
//!   removed or given another role is signed out.
//!
//! [`Gateway::login`]: tidemark_server::direct::Gateway::login

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tidemark_server::direct::DirectSession;
use tracing::{info, warn};

use crate::query::Cursors;
use crate::{Console, ConsoleError, BASE};

/// The session cookie's name.
pub const COOKIE: &str = "tidemark_console";
/// The header state-changing requests carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Failed sign-ins allowed per user name, and per client address, within [`WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// How long failed sign-ins count.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// A session is signed out after this long whatever its use.
const MAX_AGE: Duration = Duration::from_secs(12 * 60 * 60);

/// A signed-in user.
pub struct SignedIn {
    /// Their SQL session (role, catalog, audit) in tidemark-server.
    pub(crate) direct: DirectSession,
    /// Echoed by the page on every state-changing request.
    csrf: String,
    /// The client's address at sign-in, for the audit and the log.
    pub(crate) client: String,
    created: Instant,
    last_seen: Mutex<Instant>,
    /// Open query results, a page at a time.
    pub(crate) cursors: Cursors,
}

impl SignedIn {
    /// Whether `presented` is this session's CSRF token.
    pub(crate) fn csrf_matches(&self, presented: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The sessions of one console, by token.
pub(crate) struct Sessions {
    idle: Duration,
    by_token: Mutex<HashMap<String, Arc<SignedIn>>>,
}

fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    pub(crate) fn new(idle: Duration) -> Self {
        Self {
            idle,
            by_token: Mutex::new(HashMap::new()),
        }
    }

    fn expired(&self, s: &SignedIn, now: Instant) -> bool {
        let last = *s.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        now.duration_since(last) > self.idle || now.duration_since(s.created) > MAX_AGE
    }

    /// Start a session; returns its token.
    fn insert(&self, direct: DirectSession, client: String) -> (String, Arc<SignedIn>) {
        let now = Instant::now();
        let signed = Arc::new(SignedIn {
            direct,
            csrf: random_token(),
            client,
            created: now,
            last_seen: Mutex::new(now),
            cursors: Cursors::default(),
        });
        let token = random_token();
        let mut map = self.by_token.lock().unwrap_or_else(|e| e.into_inner());
        // Expired sessions go when a new one comes (their cursors with them).
        map.retain(|_, s| !self.expired(s, now));
        map.insert(token.clone(), signed.clone());
        (token, signed)
    }

    /// The live session of `token`, marked as used now.
    fn get(&self, token: &str) -> Option<Arc<SignedIn>> {
        let now = Instant::now();
        let mut map = self.by_token.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.get(token)?.clone();
        if self.expired(&s, now) {
            map.remove(token);
            return None;
        }
        *s.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = now;
        Some(s)
    }

    fn remove(&self, token: &str) {
        self.by_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }
}

/// Failed sign-ins by user name and by client address.
#[derive(Default)]
pub(crate) struct Limiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Limiter {
    /// `Err(seconds to wait)` when any of `keys` has used up its failures.
    fn check(&self, keys: &[String]) -> Result<(), u64> {
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let wait = keys
            .iter()
            .filter_map(|k| map.get(k))
            .filter(|(n, since)| *n >= MAX_FAILURES && now.duration_since(*since) < WINDOW)
            .map(|(_, since)| (WINDOW - now.duration_since(*since)).as_secs().max(1))
            .max();
        wait.map_or(Ok(()), Err)
    }

    fn failed(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: windows that are over are forgotten.
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
        }
        for k in keys {
            let e = map.entry(k.clone()).or_insert((0, now));
            if now.duration_since(e.1) >= WINDOW {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The client's address, when the server was started with connect info.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// An `Origin` header, when present, must name the host the request was sent to:
/// a page of another site never gets to change anything here.
fn same_origin(headers: &HeaderMap) -> Result<(), ConsoleError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(format!(
            "request from origin {origin:?} refused: the console only accepts its own pages' requests"
        )))
    }
}

fn signed_in(parts: &Parts, console: &Console) -> Result<(String, Arc<SignedIn>), ConsoleError> {
    let token = cookie_token(&parts.headers).ok_or(ConsoleError::Unauthorized)?;
    let signed = console
        .inner
        .sessions
        .get(&token)
        .ok_or(ConsoleError::Unauthorized)?;
    if let Err(e) = signed.direct.renew() {
        console.inner.sessions.remove(&token);
        return Err(e.into());
    }
    Ok((token, signed))
}

/// A signed-in user, for requests that change nothing (GET). Also taken by the CSV
/// download, which checks the form's CSRF token itself.
pub struct Reader(pub Arc<SignedIn>);

impl FromRequestParts<Console> for Reader {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Self, ConsoleError> {
        signed_in(parts, c).map(|(_, s)| Reader(s))
    }
}

/// A signed-in user whose request carries the session's CSRF token and comes from
/// the console's own origin: what every state-changing request needs.
pub struct Writer {
    /// The session's token (for sign-out).
    token: String,
    /// The session.
    pub signed: Arc<SignedIn>,
}

impl FromRequestParts<Console> for Writer {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Self, ConsoleError> {
        let (token, signed) = signed_in(parts, c)?;
        same_origin(&parts.headers)?;
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let presented = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !signed.csrf_matches(presented) {
                return Err(ConsoleError::Forbidden(
                    "missing or wrong CSRF token: reload the page".into(),
                ));
            }
        }
        Ok(Writer { token, signed })
    }
}

/// Check a CSRF token that came in a form body (the CSV download is a form post, so
/// the file streams to disk rather than into the page).
pub(crate) fn check_form(
    headers: &HeaderMap,
    signed: &SignedIn,
    csrf: &str,
) -> Result<(), ConsoleError> {
    same_origin(headers)?;
    if signed.csrf_matches(csrf) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            "missing or wrong CSRF token: reload the page".into(),
        ))
    }
}

/// A sign-in request.
#[derive(Deserialize)]
pub struct Login {
    user: String,
    password: String,
}

/// Who is signed in, and the token the page sends back on changes.
#[derive(Serialize)]
pub struct Me {
    user: String,
    role: String,
    admin: bool,
    csrf: String,
}

impl Me {
    fn of(s: &SignedIn) -> Self {
        let role = s.direct.role();
        Me {
            user: s.direct.user().to_string(),
            role: role.name().to_string(),
            admin: role.is_admin(),
            csrf: s.csrf.clone(),
        }
    }
}

fn cookie(console: &Console, value: &str, clear: bool) -> Result<HeaderValue, ConsoleError> {
    let secure = if console.inner.options.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let age = if clear { "; Max-Age=0" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path={BASE}; HttpOnly; SameSite=Strict{secure}{age}"
    ))
    .map_err(|e| ConsoleError::Internal(format!("session cookie: {e}")))
}

/// `POST /console/api/login` `{"user", "password"}`: a session cookie and [`Me`].
pub(crate) async fn login(
    State(console): State<Console>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Json(body): Json<Login>,
) -> Result<Response, ConsoleError> {
    same_origin(&headers)?;
    let user_key = format!("user:{}", body.user);
    let mut keys = vec![user_key.clone()];
    if let Some(p) = peer {
        keys.push(format!("ip:{}", p.ip()));
    }
    let inner = &console.inner;
    inner
        .limiter
        .check(&keys)
        .map_err(|retry_after_s| ConsoleError::TooManyAttempts { retry_after_s })?;
    let client = peer.map_or_else(|| "console".to_string(), |p| p.ip().to_string());
    // PBKDF2 (4096 rounds by default) is CPU work: off the async threads.
    let gateway = inner.gateway.clone();
    let user = body.user.clone();
    let role = tokio::task::spawn_blocking(move || gateway.login(&user, &body.password))
        .await
        .map_err(|e| ConsoleError::Internal(format!("sign-in: {e}")))?;
    let Some(role) = role else {
        inner.limiter.failed(&keys);
        warn!(user = %body.user, client = %client, "console sign-in failed");
        return Err(ConsoleError::BadLogin);
    };
    inner.limiter.succeeded(&user_key);
    let direct = inner.gateway.session(&body.user, &role, &client)?;
    let (token, signed) = inner.sessions.insert(direct, client.clone());
    info!(user = %body.user, role = %role, client = %client, "console sign-in");
    let mut r = Json(Me::of(&signed)).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&console, &token, false)?);
    Ok(r)
}

/// `POST /console/api/logout`: the session ends, its open results close.
pub(crate) async fn logout(
    State(console): State<Console>,
    w: Writer,
) -> Result<Response, ConsoleError> {
    console.inner.sessions.remove(&w.token);
    w.signed.cursors.close_all();
    info!(user = %w.signed.direct.user(), client = %w.signed.client, "console sign-out");
    let mut r = Json(serde_json::json!({"signed_out": true})).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&console, "", true)?);
    Ok(r)
}

/// `GET /console/api/session`: who is signed in (401 when nobody is).
pub(crate) async fn session(Reader(s): Reader) -> Json<Me> {
    Json(Me::of(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_counts_failures_per_key() {
        let l = Limiter::default();
        let keys = vec!["user:ana".to_string(), "ip:127.0.0.1".to_string()];
        for _ in 0..MAX_FAILURES {
            assert!(l.check(&keys).is_ok());
            l.failed(&keys);
        }
        let wait = l.check(&keys).unwrap_err();
        assert!(wait > 0 && wait <= WINDOW.as_secs());
        // Another user from the same address is refused too; the same user from
        // elsewhere as well.
        assert!(l
            .check(&["user:bob".into(), "ip:127.0.0.1".into()])
            .is_err());
        assert!(l.check(&["user:ana".into(), "ip:10.0.0.9".into()]).is_err());
        assert!(l.check(&["user:bob".into(), "ip:10.0.0.9".into()]).is_ok());
        // A success clears the user's count, not the address's.
        l.succeeded("user:ana");
        assert!(l.check(&["user:ana".into()]).is_ok());
        assert!(l.check(&["ip:127.0.0.1".into()]).is_err());
    }

    #[test]
    fn origins_must_be_this_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8420".parse().unwrap());
        assert!(same_origin(&h).is_ok());
        h.insert(header::ORIGIN, "http://127.0.0.1:8420".parse().unwrap());
        assert!(same_origin(&h).is_ok());
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(same_origin(&h).is_err());
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(same_origin(&h).is_err());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("a=1; {COOKIE}=tok-en_1; b=2").parse().unwrap(),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("tok-en_1"));
        assert_eq!(cookie_token(&HeaderMap::new()), None);
    }
}
