//! Users and roles replaced while the server runs (`Reloader::reload`): open
//! sessions read through their role as it is now from their next statement (grants,
//! masks, row filters, the catalogs, the privilege functions), a refused reload
//! changes nothing, a new user logs in at once, and the sessions of a removed user
//! (or of a user whose role changed) end at their next statement.

use tidemark_server::auth::UsersFile;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::support::{roles, TestServer, ADMIN, FINANCE, PASSWORD, USER};

/// A query that must succeed; its single value as text.
async fn one(c: &Client, sql: &str) -> String {
    let rows = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Every value of the first column, as text.
async fn column(c: &Client, sql: &str) -> Vec<String> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .collect()
}

/// A query that must fail with `code`; the message.
async fn fails(c: &Client, sql: &str, code: &str) -> String {
    let err = c
        .simple_query(sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("{sql} must fail"));
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: {err:?}"));
    assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
    db.message().to_string()
}

const CUSTOMERS: &str = "SELECT count(*) FROM invoicing.customers";
const INVOICES: &str = "SELECT count(*) FROM invoicing.invoices";
const MASKED: &str = "SELECT count(customer_id) FROM invoicing.invoices";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sessions_read_through_the_reloaded_roles() {
    let s = TestServer::start().await;
    let users = s.path("users.toml");
    let fin = s.client_as(FINANCE).await;
    let admin = s.client_as(ADMIN).await;
    let all_customers = one(&admin, CUSTOMERS).await;
    let all_invoices = one(&admin, INVOICES).await;
    let all_masked = one(&admin, MASKED).await;
    let not_draft = one(
        &admin,
        "SELECT count(*) FROM invoicing.invoices WHERE status <> 'draft'",
    )
    .await;

    // As configured: customers refused, invoices filtered and masked.
    assert!(fails(&fin, CUSTOMERS, "42501")
        .await
        .contains("invoicing.customers"));
    assert_eq!(one(&fin, INVOICES).await, not_draft);
    assert_eq!(one(&fin, MASKED).await, "0");
    // Kept prepared across the reload, as pooled drivers do.
    let prepared = fin.prepare(INVOICES).await.unwrap();

    // finance gets customers, and invoices without mask or filter.
    let mut wider = roles();
    let f = wider.get_mut("finance").unwrap();
    f.grants.push("invoicing.customers".into());
    f.masks.clear();
    f.row_filters.clear();
    let summary = s.reloader.reload(&users, &wider).await.unwrap();
    assert_eq!(summary.roles_changed, vec!["finance".to_string()]);
    assert!(summary.users_added.is_empty() && summary.users_removed.is_empty());
    assert_eq!(summary.users, 3);

    // The same session, without reconnecting.
    assert_eq!(one(&fin, CUSTOMERS).await, all_customers);
    assert_eq!(one(&fin, INVOICES).await, all_invoices);
    assert_eq!(one(&fin, MASKED).await, all_masked);
    let n: i64 = fin.query_one(&prepared, &[]).await.unwrap().get(0);
    assert_eq!(n.to_string(), all_invoices);
    assert!(column(
        &fin,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'invoicing'"
    )
    .await
    .contains(&"customers".to_string()));
    assert_eq!(
        one(
            &fin,
            "SELECT has_table_privilege('invoicing.customers', 'SELECT')"
        )
        .await,
        "t"
    );
    // Another user's privileges are answered from the roles in force too.
    assert_eq!(
        one(
            &admin,
            &format!("SELECT has_table_privilege('{FINANCE}', 'invoicing.customers', 'SELECT')")
        )
        .await,
        "t"
    );

    // Refused reloads change nothing, and say so.
    let mut bad_mask = wider.clone();
    bad_mask
        .get_mut("finance")
        .unwrap()
        .masks
        .insert("invoicing.invoices.no_such_column".into(), "NULL".into());
    let mut no_finance = wider.clone();
    no_finance.remove("finance");
    let mut bad_grant = wider.clone();
    bad_grant
        .get_mut("finance")
        .unwrap()
        .grants
        .push("not a grant".into());
    for (r, file, want) in [
        (&bad_mask, users.clone(), "no_such_column"),
        (
            &no_finance,
            users.clone(),
            "user fiona has role \"finance\"",
        ),
        (&bad_grant, users.clone(), "not a grant"),
        (&wider, s.path("missing.toml"), "missing.toml"),
    ] {
        let e = s.reloader.reload(&file, r).await.unwrap_err().to_string();
        assert!(
            e.contains(want) && e.contains("the previous ones stay in force"),
            "{e}"
        );
    }
    assert_eq!(one(&fin, CUSTOMERS).await, all_customers);
    assert_eq!(one(&fin, MASKED).await, all_masked);

    // Narrowed again: the open session loses what it was given.
    s.reloader.reload(&users, &roles()).await.unwrap();
    assert!(fails(&fin, CUSTOMERS, "42501")
        .await
        .contains("invoicing.customers"));
    assert_eq!(one(&fin, INVOICES).await, not_draft);
    assert_eq!(one(&fin, MASKED).await, "0");
    let n: i64 = fin.query_one(&prepared, &[]).await.unwrap().get(0);
    assert_eq!(n.to_string(), not_draft);

    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_come_and_go_without_a_restart() {
    let s = TestServer::start().await;
    let fin = s.client_as(FINANCE).await;
    let alice = s.client_as(USER).await;
    let admin = s.client_as(ADMIN).await;
    assert!(
        tokio_postgres::connect(&s.conninfo("gus", PASSWORD), tokio_postgres::NoTls)
            .await
            .is_err()
    );

    // A new users file: gus added, fiona gone, alice now of role finance.
    let next = s.path("users-next.toml");
    UsersFile::add_user(&next, ADMIN, "admin", PASSWORD).unwrap();
    UsersFile::add_user(&next, USER, "finance", PASSWORD).unwrap();
    UsersFile::add_user(&next, "gus", "finance", PASSWORD).unwrap();
    let summary = s.reloader.reload(&next, &roles()).await.unwrap();
    assert_eq!(summary.users_added, vec!["gus".to_string()]);
    assert_eq!(summary.users_removed, vec![FINANCE.to_string()]);
    // alice's role changed; root's password verifier is new (fresh salt).
    assert_eq!(
        summary.users_changed,
        vec![USER.to_string(), ADMIN.to_string()]
    );

    // gus logs in at once, with finance's grants.
    let gus = s.client_as("gus").await;
    assert_eq!(one(&gus, "SELECT current_user").await, "gus");
    assert!(fails(&gus, CUSTOMERS, "42501")
        .await
        .contains("invoicing.customers"));

    // fiona's open session ends at its next statement, and she cannot log in again.
    let m = fails(&fin, "SELECT 1", "28000").await;
    assert!(m.contains("removed from the users file"), "{m}");
    assert!(fin.is_closed() || fin.simple_query("SELECT 1").await.is_err());
    let e = tokio_postgres::connect(&s.conninfo(FINANCE, PASSWORD), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a removed user cannot log in");
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("28P01"),
        "{e:?}"
    );

    // alice's session (analyst) ends too: reading as finance needs a new login.
    let m = fails(&alice, "SELECT 1", "28000").await;
    assert!(m.contains("has role finance now, not analyst"), "{m}");
    let alice = s.client_as(USER).await;
    assert!(fails(&alice, CUSTOMERS, "42501")
        .await
        .contains("invoicing.customers"));

    // root's session is untouched (a new verifier does not end sessions).
    assert_eq!(one(&admin, "SELECT 1").await, "1");

    s.stop().await;
}
