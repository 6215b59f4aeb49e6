//! A client of a Confluent-compatible schema registry, for Avro streams: the writer
//! schema of each id that a message names (`GET {url}/schemas/ids/{id}`), which the
//! caller caches (ids are immutable in a registry, so each is fetched once).
//!
//! Basic auth and a private CA come from the stream's config. Transient failures
//! (connection errors, timeouts, 5xx, 429) are tried again a few times with
//! backoff; a definite answer (404, 401, a schema that is not Avro) is returned at
//! once. Errors name the registry by its URL without credentials, the schema id, the
//! HTTP status with an excerpt of the body, and what to do. The password is never
//! logged or shown.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tracing::warn;

/// How long one request may take, and how long to wait for a connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries after the first, for transient failures (about 15 s in all).
const RETRIES: usize = 5;

/// A schema registry at one URL.
pub struct Registry {
    client: reqwest::Client,
    /// The base URL, no credentials, no trailing slash.
    base: reqwest::Url,
    /// What error messages call the registry (`base` as text).
    shown: String,
    username: Option<String>,
    password: Option<String>,
    /// Tries after the first for transient failures ([`RETRIES`]).
    retries: usize,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.shown)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why one request failed, and whether trying again can help.
struct Failure {
    transient: bool,
    error: anyhow::Error,
}

impl Registry {
    /// A client of the registry at `url` (`http://` or `https://`). Credentials
    /// written into the URL (`https://user:pass@host`) are used when `username` and
    /// `password` are not given, and never shown. `ca_file` is a PEM file of the
    /// certificates to trust for an `https` registry, instead of the system's.
    pub fn new(
        url: &str,
        username: Option<String>,
        password: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<Self> {
        let mut base = reqwest::Url::parse(url.trim()).map_err(|e| {
            anyhow!(
                "schema registry URL {:?} is not a URL ({e}); write it as http://host:8081 or https://host",
                redact(url)
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!(
                "schema registry URL {}: the scheme must be http or https",
                redact(url)
            );
        }
        let in_url_user = (!base.username().is_empty()).then(|| decode(base.username()));
        let in_url_password = base.password().map(decode);
        // Cannot fail for http(s) URLs, which have a host.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let trimmed = base.path().trim_end_matches('/').to_string();
        base.set_path(&trimmed);
        base.set_query(None);
        base.set_fragment(None);
        let shown = base.as_str().trim_end_matches('/').to_string();
        let username = username.or(in_url_user);
        let password = password.or(in_url_password);
        if password.is_some() && username.is_none() {
            bail!(
                "schema registry {shown}: a password is set but no username; basic auth needs both"
            );
        }
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).with_context(|| {
                format!(
                    "schema registry {shown}: cannot read the CA file {}",
                    path.display()
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "schema registry {shown}: the CA file {} is not PEM certificates",
                    path.display()
                )
            })?;
            if certs.is_empty() {
                bail!(
                    "schema registry {shown}: the CA file {} holds no certificate",
                    path.display()
                );
            }
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .with_context(|| format!("schema registry {shown}: cannot set up the HTTP client"))?;
        Ok(Registry {
            client,
            base,
            shown,
            username,
            password,
            retries: RETRIES,
        })
    }

    /// The registry's URL as shown in messages (no credentials).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The writer schema (Avro JSON text) with registry id `id`.
    pub async fn schema(&self, id: u32) -> Result<String> {
        use backon::BackoffBuilder;
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(self.retries)
            .with_jitter()
            .build();
        loop {
            let f = match self.try_schema(id).await {
                Ok(s) => return Ok(s),
                Err(f) => f,
            };
            if !f.transient {
                return Err(f.error);
            }
            let Some(delay) = delays.next() else {
                return Err(f.error.context(format!(
                    "schema registry {}: schema id {id}: gave up after {} tries; check that the registry is up and reachable from here",
                    self.shown,
                    self.retries + 1
                )));
            };
            warn!(registry = %self.shown, schema_id = id, error = %format!("{:#}", f.error), retry_in_ms = delay.as_millis() as u64, "fetching a schema failed; trying again");
            tokio::time::sleep(delay).await;
        }
    }

    async fn try_schema(&self, id: u32) -> std::result::Result<String, Failure> {
        let mut url = self.base.clone();
        let path = format!("{}/schemas/ids/{id}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        let what = format!("schema registry {}: schema id {id}", self.shown);
        let mut request = self.client.get(url).header(
            reqwest::header::ACCEPT,
            "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json",
        );
        if let Some(user) = &self.username {
            request = request.basic_auth(user, self.password.as_ref());
        }
        let response = request.send().await.map_err(|e| Failure {
            transient: true,
            // Without the URL: reqwest's message would repeat it.
            error: anyhow!("{what}: the request failed: {}", e.without_url()),
        })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| Failure {
            transient: true,
            error: anyhow!(
                "{what}: reading the answer failed (HTTP {status}): {}",
                e.without_url()
            ),
        })?;
        if !status.is_success() {
            let transient = status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT;
            let hint = match status.as_u16() {
                401 | 403 => "the registry refused the credentials: check the stream's schema registry username and password",
                404 => "the registry does not know this id: the topic was written with another registry (check the stream's schema registry URL), or the schema was deleted",
                _ if transient => "the registry is failing or overloaded",
                _ => "check the stream's schema registry URL",
            };
            return Err(Failure {
                transient,
                error: anyhow!("{what}: HTTP {status}: {}; {hint}", excerpt(&body)),
            });
        }
        let parsed: serde_json::Value = serde_json::from_str(&body).map_err(|e| Failure {
            transient: false,
            error: anyhow!(
                "{what}: the answer is not JSON ({e}): {}; is the URL a Confluent-compatible schema registry?",
                excerpt(&body)
            ),
        })?;
        if let Some(kind) = parsed.get("schemaType").and_then(|t| t.as_str()) {
            if !kind.eq_ignore_ascii_case("AVRO") {
                return Err(Failure {
                    transient: false,
                    error: anyhow!("{what}: the schema is {kind}, and tidemark reads Avro (and JSON without a registry); configure the connector's converter as io.confluent.connect.avro.AvroConverter"),
                });
            }
        }
        match parsed.get("schema").and_then(|s| s.as_str()) {
            Some(s) => Ok(s.to_string()),
            None => Err(Failure {
                transient: false,
                error: anyhow!(
                    "{what}: the answer has no \"schema\" string: {}; is the URL a Confluent-compatible schema registry?",
                    excerpt(&body)
                ),
            }),
        }
    }
}

/// The start of a response body, on one line.
fn excerpt(body: &str) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let one_line = one_line.trim();
    if one_line.is_empty() {
        "(empty body)".to_string()
    } else if body.chars().count() > 200 {
        format!("{one_line}…")
    } else {
        one_line.to_string()
    }
}

/// A URL as text with any `user:password@` removed, for messages about a URL that
/// did not parse.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => match url.rfind('@') {
            Some(at) => url[at + 1..].to_string(),
            None => url.to_string(),
        },
    }
}

/// Percent-decoding of the user and password written into a URL.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        let r = Registry::new(
            "https://bob:s3cr%40t@registry.example:8081/api/",
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(r.url(), "https://registry.example:8081/api");
        assert_eq!(r.username.as_deref(), Some("bob"));
        assert_eq!(r.password.as_deref(), Some("s3cr@t"));
        assert!(!format!("{r:?}").contains("s3cr"));
        let e = Registry::new("bob:pw@nohost", None, None, None).unwrap_err();
        assert!(!format!("{e:#}").contains("pw"), "{e:#}");
        let e = Registry::new("ftp://bob:pw@host", None, None, None).unwrap_err();
        assert!(!format!("{e:#}").contains("pw"), "{e:#}");
    }

    #[test]
    fn excerpts_are_short_and_one_line() {
        assert_eq!(excerpt(""), "(empty body)");
        assert_eq!(
            excerpt("{\"error_code\":40403,\n\"message\":\"x\"}"),
            "{\"error_code\":40403, \"message\":\"x\"}"
        );
        assert!(excerpt(&"x".repeat(1000)).chars().count() <= 201);
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_named_in_the_error() {
        // Port 9 (discard) on localhost: refused at once. One retry, to go through
        // the retry path quickly; the error names the registry and the id.
        let mut r = Registry::new("http://127.0.0.1:9", None, None, None).unwrap();
        r.retries = 1;
        let e = r.schema(42).await.unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("http://127.0.0.1:9")
                && text.contains("schema id 42")
                && text.contains("2 tries"),
            "{text}"
        );
    }
}
