//! Bad configuration and bad environments each get one clear message.

use crate::support::{server_url, text, TestDb};

#[tokio::test]
async fn config_typo_names_the_key() {
    let db = TestDb::new("errcfg").await;
    let config = db.config("snapshot_chunk_rowz = 10");
    let out = db.tidemark(&config, &["snapshot"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("snapshot_chunk_rowz") && t.contains("line "),
        "{t}"
    );
    db.drop().await;
}

#[tokio::test]
async fn unreachable_mysql_says_what_to_check() {
    let db = TestDb::new("errnet").await;
    // Port 9 (discard) on loopback: nothing listens there.
    let config = db.config_with_url("mysql://root@127.0.0.1:9", "");
    let out = db.tidemark(&config, &["snapshot"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("cannot connect to MySQL source main at 127.0.0.1:9")
            && t.contains("[sources.main]"),
        "{t}"
    );
    db.drop().await;
}

#[tokio::test]
async fn missing_password_env_and_wrong_password() {
    let db = TestDb::new("errpw").await;
    let user = db.create_user("tm_pw", "s3cret-pw").await;
    let url = server_url().replace("root@", &format!("{user}@"));
    let config = db.config_with_url(&url, "password_env = \"TM_TEST_UNSET_PASSWORD_VAR\"");
    let out = db.tidemark(&config, &["snapshot"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("TM_TEST_UNSET_PASSWORD_VAR, which is not set"),
        "{t}"
    );

    let config = db.config_as(&user, "wrong-password");
    let out = db.tidemark(&config, &["snapshot"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains(&format!("refused user {user}")),
        "{t}"
    );
    assert!(
        !t.contains("wrong-password"),
        "the password must never be printed: {t}"
    );
    db.exec(&format!("DROP USER '{user}'@'%'")).await;
    db.drop().await;
}

#[tokio::test]
async fn missing_select_privilege_names_the_grant() {
    let db = TestDb::new("errpriv").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY)").await;
    let user = db.create_user("tm_nopriv", "pw").await;
    let config = db.config_as(&user, "pw");
    let out = db.tidemark(&config, &["snapshot"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!("GRANT SELECT ON `{}`.*", db.name)),
        "{t}"
    );
    db.exec(&format!("DROP USER '{user}'@'%'")).await;
    db.drop().await;
}

#[tokio::test]
async fn table_without_primary_key_says_how_to_name_one() {
    let db = TestDb::new("errpk").await;
    db.exec("CREATE TABLE nokey (a INT, b VARCHAR(10))").await;
    db.exec("INSERT INTO nokey VALUES (1, 'x'), (2, 'y')").await;
    let config = db.config("");
    let out = db.tidemark(&config, &["snapshot"]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(
        t.contains("has no primary key") && t.contains("primary_key = ["),
        "{t}"
    );
    // Following the advice works.
    let config = db.config(&format!(
        "[sources.main.tables.\"{}.nokey\"]\nprimary_key = [\"a\"]",
        db.name
    ));
    let out = db.tidemark(&config, &["snapshot"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        db.sql_i64(&format!("SELECT COUNT(*) FROM {}.nokey", db.name))
            .await,
        2
    );
    db.drop().await;
}

#[tokio::test]
async fn check_reports_ready_server_and_missing_replication_grants() {
    let db = TestDb::new("check").await;
    let config = db.config("");
    let out = crate::support::ok(db.tidemark(&config, &["check"]));
    for line in [
        "ok   log_bin",
        "ok   binlog_format",
        "ok   binlog_row_image",
        "ok   server_id",
        "ok   privileges",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    // A user with SELECT only: told exactly which grants change capture needs.
    let user = db.create_user("tm_check", "pw").await;
    db.exec(&format!("GRANT SELECT ON `{}`.* TO '{user}'@'%'", db.name))
        .await;
    let config = db.config_as(&user, "pw");
    let out = db.tidemark(&config, &["check"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("FAIL privileges")
            && t.contains("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.*"),
        "{t}"
    );
    db.exec(&format!("DROP USER '{user}'@'%'")).await;
    db.drop().await;
}
