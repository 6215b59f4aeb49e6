//! TLS: sslmode=require works, require_tls refuses plaintext, a broken certificate is
//! a startup error.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use tidemark_query::Engine;
use tidemark_server::Server;

use crate::support::{demo_warehouse, text, TestServer, PASSWORD};

/// A self-signed certificate for localhost, made with the openssl CLI (rcgen is not
/// in the dependency tree).
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl CLI");
    assert!(
        o.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_works_and_plaintext_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let s = TestServer::start_with(|o| {
        o.tls = Some((cert.clone(), key.clone()));
        o.require_tls = true;
    })
    .await;
    let o = s
        .psql(
            "sslmode=require",
            PASSWORD,
            &["-At", "-c", "SELECT count(*) > 0 FROM invoicing.invoices"],
        )
        .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "t");

    // The connection really is encrypted (psql's \conninfo reports it).
    let o = s
        .psql("sslmode=require", PASSWORD, &[r"-c", r"\conninfo"])
        .await;
    assert!(text(&o).contains("SSL connection"), "{}", text(&o));

    let o = s
        .psql("sslmode=disable", PASSWORD, &["-c", "SELECT 1"])
        .await;
    assert!(!o.status.success());
    assert!(text(&o).contains("requires TLS"), "{}", text(&o));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_certificate_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let wh = demo_warehouse(&dir.path().join("warehouse")).await;
    let engine = Arc::new(Engine::open(&wh).await.unwrap());
    let users = dir.path().join("users.toml");
    tidemark_server::auth::UsersFile::add_user(&users, "alice", "analyst", "pw").unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for (c, k) in [
        (&cert, &garbage),
        (&garbage, &key),
        (&missing, &key),
        (&cert, &cert),
    ] {
        let mut opts = crate::support::options(users.clone());
        opts.tls = Some((c.clone(), k.clone()));
        let err = Server::bind(engine.clone(), &wh, opts)
            .await
            .expect_err("a broken certificate or key must stop the server");
        let msg = err.to_string();
        assert!(msg.starts_with("TLS: "), "{msg}");
        assert!(
            !msg.contains("not base64!"),
            "key material must not be echoed: {msg}"
        );
    }
}
