//! TLS to the target (`sslmode`, `sslrootcert` in the target URL), against the test
//! PostgreSQL, which runs with TLS on: scripts/postgres.sh makes a throwaway CA and a
//! server certificate it signs for 127.0.0.1 and localhost, and scripts/test.sh
//! names the CA in TIDEMARK_TEST_PG_CA. Without it the tests fail with the reason
//! rather than skip.
//!
//! Whether a publish's own connection was encrypted is read by the target: a column
//! default of the target table calls a function that looks its session up in
//! `pg_stat_ssl`, so the publisher's COPY into the table records, per row, the
//! session's application name and TLS version, or "plaintext". A publish without
//! TLS cannot write a TLS version there.

use super::*;

fn ca() -> String {
    std::env::var("TIDEMARK_TEST_PG_CA").unwrap_or_else(|_| {
        panic!(
            "TIDEMARK_TEST_PG_CA is not set: the TLS tests need the CA that signed the test \
             PostgreSQL's certificate. Run them through scripts/test.sh, which starts the \
             server with TLS (scripts/postgres.sh) and sets it (scripts/postgres.sh ca prints it)."
        )
    })
}

/// A URL parameter's value with what would end or change it escaped.
fn escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The test server's URL under the host name `host`, with `params` (`a=b&c=d`).
fn url(host: &str, params: &str) -> String {
    let base = pg_url();
    assert!(
        base.contains("@127.0.0.1:") && !base.contains('?'),
        "TIDEMARK_TEST_PG_URL {base} is not the form scripts/postgres.sh prints"
    );
    format!(
        "{}?{params}",
        base.replacen("@127.0.0.1:", &format!("@{host}:"), 1)
    )
}

fn with_ca(mode: &str) -> String {
    format!("sslmode={mode}&sslrootcert={}", escape(&ca()))
}

fn items_publication(schema: &str, target: String) -> PublishConfig {
    PublishConfig {
        target,
        ..publication(schema, &["shop.items"], PublishMode::Append)
    }
}

/// Publish `shop.items` to `target` twice (append: the second run COPYs straight
/// into the table, after the test gave it the recording column), and return what
/// the target recorded about the second run's session, one line per row written:
/// `application_name|TLS version` or `application_name|plaintext`.
async fn session_of_publish(test: &str, target: String) -> Vec<String> {
    let schema = target_schema(test).await;
    let cfg = items_publication(&schema, target);
    let mut lake = Lake::new(items_schema(items_columns())).await;
    lake.land(&[(Op::Create, item(1, "one", 1))]).await;
    assert_eq!(
        published(&run(&lake.engine().await, "t", &cfg).await).rows,
        1
    );
    // The default is set after the column exists, so the row already there (written
    // by the first run) stays NULL rather than recording this test's own session.
    pg().await
        .batch_execute(&format!(
            "CREATE FUNCTION \"{schema}\".session_tls() RETURNS text LANGUAGE sql AS $$ \
               SELECT current_setting('application_name') || '|' || coalesce( \
                 (SELECT CASE WHEN ssl THEN version END FROM pg_stat_ssl WHERE pid = pg_backend_pid()), \
                 'plaintext') $$; \
             ALTER TABLE \"{schema}\".items ADD COLUMN via text; \
             ALTER TABLE \"{schema}\".items ALTER COLUMN via SET DEFAULT \"{schema}\".session_tls()"
        ))
        .await
        .unwrap();
    lake.land(&[
        (Op::Create, item(2, "two", 2)),
        (Op::Update, item(1, "uno", 10)),
    ])
    .await;
    assert_eq!(
        published(&run(&lake.engine().await, "t", &cfg).await).rows,
        2
    );
    target_lines(&format!(
        "SELECT via FROM \"{schema}\".items WHERE via IS NOT NULL"
    ))
    .await
}

/// A publish that must fail before anything is written: its configuration error.
async fn refused(test: &str, target: String) -> String {
    let schema = target_schema(test).await;
    let cfg = items_publication(&schema, target);
    let mut lake = Lake::new(items_schema(items_columns())).await;
    lake.land(&[(Op::Create, item(1, "one", 1))]).await;
    let err = publish(&lake.engine().await, "t", &cfg, &Options::default())
        .await
        .unwrap_err();
    // Not worth a retry: someone has to change the URL, the CA file or the server.
    assert!(
        matches!(err, Error::Config { .. }) && !err.is_transient(),
        "{err:?}"
    );
    assert_eq!(
        target_count(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"
        ))
        .await,
        0,
        "nothing may reach the target over a connection that was refused"
    );
    err.to_string()
}

fn assert_tls(lines: &[String], what: &str) {
    assert!(!lines.is_empty(), "{what}: no row recorded its session");
    for l in lines {
        assert!(
            l.starts_with("tidemark publish|TLSv1."),
            "{what}: the publish's connection was not encrypted: {l}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_ca_publishes_over_tls() {
    let lines = session_of_publish("tls_full", url("127.0.0.1", &with_ca("verify-full"))).await;
    assert_tls(&lines, "verify-full to 127.0.0.1");
    assert_eq!(lines.len(), 2);
    // The certificate names localhost too.
    let lines = session_of_publish("tls_full_dns", url("localhost", &with_ca("verify-full"))).await;
    assert_tls(&lines, "verify-full to localhost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sslmode_tls_is_used_and_disable_stays_plaintext() {
    // tokio-postgres's default, prefer, now upgrades to TLS when the server has it.
    let lines = session_of_publish("tls_default", pg_url()).await;
    assert_tls(&lines, "no sslmode");
    // The recording tells the difference (this test's premise).
    let lines = session_of_publish("tls_disable", url("127.0.0.1", "sslmode=disable")).await;
    assert_eq!(lines, ["tidemark publish|plaintext"; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_with_a_ca_nobody_trusts_and_verify_full_refuses_it() {
    // No sslrootcert: the system store, which does not hold the test CA.
    for mode in ["verify-full", "verify-ca"] {
        let e = refused(
            &format!("tls_unknown_{}", mode.replace('-', "_")),
            url("127.0.0.1", &format!("sslmode={mode}")),
        )
        .await;
        assert!(
            e.contains("the certificate of 127.0.0.1 is not signed by a CA of the system store")
                && e.contains(&format!("sslmode={mode}"))
                && e.contains("set sslrootcert="),
            "{e}"
        );
    }
    let lines = session_of_publish("tls_require", url("127.0.0.1", "sslmode=require")).await;
    assert_tls(&lines, "require without a CA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_host_name_the_certificate_does_not_list() {
    // hostaddr connects to the server while the name checked is the URL's host.
    let host = "publish-target.invalid";
    let params = |mode| format!("{}&hostaddr=127.0.0.1", with_ca(mode));
    let e = refused("tls_wrong_name", url(host, &params("verify-full"))).await;
    assert!(
        e.contains(&format!(
            "the certificate of {host} is not valid for the host name {host}"
        )) && e.contains("sslmode=verify-ca"),
        "{e}"
    );
    // verify-ca checks the chain only, so the same URL connects.
    let lines = session_of_publish("tls_ca_only", url(host, &params("verify-ca"))).await;
    assert_tls(&lines, "verify-ca under another name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_that_does_not_exist_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let e = refused(
        "tls_no_ca_file",
        url(
            "127.0.0.1",
            &format!(
                "sslmode=verify-full&sslrootcert={}",
                escape(missing.to_str().unwrap())
            ),
        ),
    )
    .await;
    assert!(
        e.contains(&format!(
            "sslrootcert {}: cannot read it",
            missing.display()
        )),
        "{e}"
    );
}

/// What PostgreSQL with `ssl = off` does: answer the SSLRequest with "N". (The test
/// server has TLS on, and the others' tests need it so.) Returns the port and the
/// first 8 bytes each connection sent.
async fn server_without_tls() -> (u16, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut first = [0u8; 8];
            if sock.read_exact(&mut first).await.is_ok() {
                let _ = tx.send(first.to_vec());
                let _ = sock.write_all(b"N").await;
            }
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_against_a_server_without_tls_says_what_to_do() {
    let (port, mut seen) = server_without_tls().await;
    let e = refused(
        "tls_no_server_tls",
        format!("postgres://tidemark@127.0.0.1:{port}/postgres?sslmode=require"),
    )
    .await;
    assert!(
        e.contains("the server at 127.0.0.1 does not accept TLS, and sslmode=require requires it")
            && e.contains("ssl = on"),
        "{e}"
    );
    // It was asked: an SSLRequest (length 8, code 80877103), nothing in plaintext.
    let first = seen.recv().await.unwrap();
    assert_eq!(first, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
}
