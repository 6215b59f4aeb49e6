//! SCRAM-SHA-256 verifiers in PostgreSQL's format and the server's half of the
//! exchange (RFC 5802 / RFC 7677).
//!
//! Hand-written because pgwire's `ScramAuth` needs the *SaltedPassword*, from which a
//! client proof can be forged: whoever reads that file can log in. A PostgreSQL
//! verifier keeps only `StoredKey = H(ClientKey)` and `ServerKey`, which let the
//! server check a proof and prove itself, but not log in. The primitives (PBKDF2,
//! HMAC, SHA-256, SASLprep) come from ring and stringprep, already in the tree
//! through pgwire.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::{digest, hmac, pbkdf2};

/// Iterations for new verifiers: PostgreSQL's default (`scram_iterations`).
pub const DEFAULT_ITERATIONS: u32 = 4096;
const KEY_LEN: usize = 32;

/// A stored SCRAM-SHA-256 verifier:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64), the format of
/// PostgreSQL's `pg_authid.rolpassword`, so verifiers move between the two.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 iterations the client must use.
    pub iterations: u32,
    /// Salt the client must use.
    pub salt: Vec<u8>,
    /// `SHA-256(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; KEY_LEN],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; KEY_LEN],
}

// Never print key material, not even in debug logs.
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; KEY_LEN] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg);
    let mut out = [0; KEY_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(msg: &[u8]) -> [u8; KEY_LEN] {
    let d = digest::digest(&digest::SHA256, msg);
    let mut out = [0; KEY_LEN];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equality whose time does not depend on where the inputs differ, so a proof cannot
/// be guessed byte by byte from response times (ring's own helper is deprecated for
/// outside use).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Verifier {
    /// A verifier for `password` with a fresh random 16-byte salt.
    pub fn new(password: &str, iterations: u32) -> Self {
        Self::with_salt(password, &rand::random::<[u8; 16]>(), iterations)
    }

    /// The verifier for `password` with this salt (deterministic; for tests and for
    /// the fake salt of unknown users).
    pub fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Self {
        // As PostgreSQL does: a password that SASLprep rejects is used as is.
        let normalized = stringprep::saslprep(password)
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| password.to_string());
        let mut salted = [0u8; KEY_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations.max(1)).expect("at least 1"),
            salt,
            normalized.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// Whether `password` is the one this verifier was made from (for logins that
    /// send the password itself, over TLS: HTTP Basic auth on the daemon's API).
    pub fn matches_password(&self, password: &str) -> bool {
        let candidate = Self::with_salt(password, &self.salt, self.iterations);
        constant_time_eq(&candidate.stored_key, &self.stored_key)
    }

    /// Check a client proof for `auth_message`; on success, the server signature
    /// that proves to the client that the server knows the verifier.
    pub fn verify(&self, auth_message: &[u8], proof: &[u8]) -> Option<[u8; KEY_LEN]> {
        if proof.len() != KEY_LEN {
            return None;
        }
        let client_signature = hmac_sha256(&self.stored_key, auth_message);
        let mut client_key = [0u8; KEY_LEN];
        for (i, k) in client_key.iter_mut().enumerate() {
            *k = proof[i] ^ client_signature[i];
        }
        constant_time_eq(&sha256(&client_key), &self.stored_key)
            .then(|| hmac_sha256(&self.server_key, auth_message))
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

impl FromStr for Verifier {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            "not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)"
                .to_string()
        };
        let rest = s.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let iterations: u32 = iterations.parse().map_err(|_| bad())?;
        if iterations == 0 {
            return Err(bad());
        }
        let key = |k: &str| -> Result<[u8; KEY_LEN], String> {
            B64.decode(k)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(bad)
        };
        Ok(Self {
            iterations,
            salt: B64.decode(salt).map_err(|_| bad())?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }
}

/// The parts of the client's first message the exchange needs.
#[derive(Debug)]
pub struct ClientFirst {
    /// The GS2 header (`n,,` or `y,,`), echoed base64-encoded in the final message.
    pub gs2_header: String,
    /// `n=…,r=…`: part of the signed auth message.
    pub bare: String,
    /// The client's nonce.
    pub nonce: String,
}

impl ClientFirst {
    /// Parse `gs2-header client-first-message-bare`. Channel binding (`p=`) is refused:
    /// the server offers only SCRAM-SHA-256, not -PLUS.
    pub fn parse(msg: &str) -> Result<Self, String> {
        let (cbind, rest) = msg
            .split_once(',')
            .ok_or("malformed SCRAM client-first message")?;
        if cbind.starts_with("p=") {
            return Err("channel binding is not supported; use SCRAM-SHA-256".into());
        }
        if cbind != "n" && cbind != "y" {
            return Err("malformed SCRAM client-first message".into());
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or("malformed SCRAM client-first message")?;
        if !authzid.is_empty() {
            return Err("SCRAM authorization identities are not supported".into());
        }
        let nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or("SCRAM client-first message without a nonce")?;
        Ok(Self {
            gs2_header: format!("{cbind},{authzid},"),
            bare: bare.to_string(),
            nonce: nonce.to_string(),
        })
    }
}

/// The parts of the client's final message.
#[derive(Debug)]
pub struct ClientFinal {
    /// `c=…,r=…`: part of the signed auth message.
    pub without_proof: String,
    /// The `c=` value: base64 of the GS2 header.
    pub channel_binding: String,
    /// The combined nonce.
    pub nonce: String,
    /// The decoded proof.
    pub proof: Vec<u8>,
}

impl ClientFinal {
    /// Parse `c=…,r=…[,…],p=…`.
    pub fn parse(msg: &str) -> Result<Self, String> {
        let bad = || "malformed SCRAM client-final message".to_string();
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or_else(bad)?;
        let attr = |k: &str| {
            without_proof
                .split(',')
                .find_map(|a| a.strip_prefix(k))
                .map(str::to_string)
                .ok_or_else(bad)
        };
        Ok(Self {
            channel_binding: attr("c=")?,
            nonce: attr("r=")?,
            without_proof: without_proof.to_string(),
            proof: B64.decode(proof).map_err(|_| bad())?,
        })
    }
}

/// A salt for a user that does not exist: stable per user name (derived with a
/// per-process secret), so asking twice shows the same salt as a real user would.
pub fn fake_salt(secret: &[u8], user: &str) -> Vec<u8> {
    hmac_sha256(secret, user.as_bytes())[..16].to_vec()
}

/// Encode bytes as SCRAM does (standard base64).
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14, item 10: what a client sends before it is authenticated, and the
    /// users file, under the fuzzer: any bytes get a value or an error, never a panic.
    #[test]
    fn fuzz_scram_messages() {
        let seeds = [
            b"n,,n=,r=rOprNGfwEbeRWgbNEkqO".to_vec(),
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=".to_vec(),
        ];
        tidemark_fuzz::fuzz("scram", &seeds, |input| {
            let text = String::from_utf8_lossy(input);
            let _ = ClientFirst::parse(&text);
            let _ = ClientFinal::parse(&text);
            let _ = text.parse::<Verifier>();
        });
    }

    #[test]
    fn fuzz_users_file() {
        let seed = format!("[users.ana]\nrole = \"analyst\"\nverifier = \"{EXPECTED_PENCIL}\"\n");
        tidemark_fuzz::fuzz("users", &[seed.into_bytes()], |input| {
            let text = String::from_utf8_lossy(input);
            let _ = crate::auth::Users::parse(&text, std::path::Path::new("fuzz-users.toml"));
        });
    }

    /// The verifier PostgreSQL would store for password `pencil` with this salt,
    /// computed independently (Python hashlib: pbkdf2_hmac, hmac, sha256, as
    /// PostgreSQL's `scram_build_secret` does) into testdata/pencil.verifier.
    #[test]
    fn matches_postgresql_format() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::with_salt("pencil", &salt, 4096);
        assert_eq!(v.to_string(), EXPECTED_PENCIL);
        assert_eq!(EXPECTED_PENCIL.parse::<Verifier>().unwrap(), v);
    }

    const EXPECTED_PENCIL: &str = include_str!("../../testdata/pencil.verifier").trim_ascii();

    /// RFC 7677's example exchange, checked against a verifier made from its
    /// password and salt.
    #[test]
    fn rfc7677_exchange() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::with_salt("pencil", &salt, 4096);
        let first = ClientFirst::parse("n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = ClientFinal::parse(
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
        assert_eq!(fin.channel_binding, b64(first.gs2_header.as_bytes()));
        let auth = format!("{},{server_first},{}", first.bare, fin.without_proof);
        let sig = v
            .verify(auth.as_bytes(), &fin.proof)
            .expect("proof accepted");
        assert_eq!(b64(&sig), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        let mut wrong = fin.proof.clone();
        wrong[0] ^= 1;
        assert!(v.verify(auth.as_bytes(), &wrong).is_none());
    }

    #[test]
    fn rejects_bad_verifiers_and_channel_binding() {
        for bad in [
            "",
            "md5abc",
            "SCRAM-SHA-256$0:AA==$AA==:AA==",
            "SCRAM-SHA-256$4096:AA==$AA==:AA==",
        ] {
            assert!(bad.parse::<Verifier>().is_err(), "{bad}");
        }
        assert!(ClientFirst::parse("p=tls-server-end-point,,n=,r=abc").is_err());
    }
}
