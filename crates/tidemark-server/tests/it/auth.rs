//! SCRAM: right password in, wrong password and unknown user out with the same
//! standard error.

use crate::support::{text, TestServer, PASSWORD, USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_get_the_same_error() {
    let s = TestServer::start().await;
    let mut messages = Vec::new();
    for (user, password) in [(USER, "wrong"), ("mallory", PASSWORD)] {
        let err = tokio_postgres::connect(&s.conninfo(user, password), tokio_postgres::NoTls)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} with a wrong password got in"));
        let db = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
        assert_eq!(db.code().code(), "28P01", "{db:?}");
        assert_eq!(db.severity(), "FATAL");
        messages.push(db.message().replace(user, "USER"));
    }
    assert_eq!(
        messages[0],
        "password authentication failed for user \"USER\""
    );
    assert_eq!(
        messages[0], messages[1],
        "unknown and known users must look alike"
    );

    // psql, too, reports the standard message.
    let o = s.psql("", "wrong", &["-c", "SELECT 1"]).await;
    assert!(!o.status.success());
    assert!(
        text(&o).contains("password authentication failed for user \"alice\""),
        "{}",
        text(&o)
    );
    // And the right password works.
    let c = s.client().await;
    let row = c.query_one("SELECT 1::BIGINT", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_file_holds_no_password() {
    let s = TestServer::start().await;
    let file = std::fs::read_to_string(s.path("users.toml")).unwrap();
    assert!(!file.contains(PASSWORD), "{file}");
    assert!(file.contains("SCRAM-SHA-256$4096:"), "{file}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.path("users.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "users file must not be readable by others");
    }
    s.stop().await;
}
