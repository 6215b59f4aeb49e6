//! The console's API over a demo warehouse, in process: sign-in with the endpoint's
//! users, CSRF, rate limiting, and every answer as the user's role reads (the roles
//! of the shipped examples/tidemark.toml: analyst, finance, admin).

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tidemark_console::{Console, Options};
use tidemark_core::names::Naming;
use tidemark_lake::Warehouse;
use tidemark_query::Engine;
use tidemark_server::auth::UsersFile;
use tidemark_server::direct::Gateway;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    gateway: Gateway,
    engine: Arc<Engine>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(
        dir.path().join("warehouse").to_str().unwrap(),
        Default::default(),
    )
    .unwrap();
    let mut w = tidemark_demo::Workload::new(tidemark_demo::WorkloadConfig {
        scale: 0.3,
        days: 30,
        seed: 7,
        ..Default::default()
    });
    tidemark_demo::land(&wh, Naming::SnakeCase, &mut w, 5)
        .await
        .unwrap();
    let users = dir.path().join("users.toml");
    for (user, role) in [
        ("alice", "analyst"),
        ("fiona", "finance"),
        ("root", "admin"),
    ] {
        UsersFile::add_user(&users, user, role, PASSWORD).unwrap();
    }
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tidemark.toml"),
    )
    .unwrap();
    let config: tidemark_core::config::Config = toml::from_str(&example).unwrap();
    let opts = tidemark_server::Options::from_config(&tidemark_core::config::ServerConfig {
        users_file: users,
        audit_flush_ms: 100,
        roles: config.server.roles,
        ..Default::default()
    })
    .unwrap();
    let engine = Arc::new(Engine::open(&wh).await.unwrap());
    let gateway = Gateway::open(engine.clone(), &wh, opts).await.unwrap();
    let app = Console::new(gateway.clone(), wh, Options::default()).router();
    Fixture {
        _dir: dir,
        app,
        gateway,
        engine,
    }
}

/// A browser's session: the cookie and the CSRF token.
struct Client {
    cookie: String,
    csrf: String,
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 24).await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

fn post_json(path: &str) -> axum::http::request::Builder {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::HOST, "127.0.0.1:8420")
}

async fn login(app: &Router, user: &str, password: &str) -> (StatusCode, Option<Client>, Value) {
    let body = json!({"user": user, "password": password});
    let req = post_json("/console/api/login")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, headers, body) = send(app, req).await;
    let client = headers.get(header::SET_COOKIE).map(|c| {
        let c = c.to_str().unwrap();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/console"),
            "{c}"
        );
        Client {
            cookie: c.split(';').next().unwrap().to_string(),
            csrf: body["csrf"].as_str().unwrap().to_string(),
        }
    });
    (status, client, body)
}

impl Client {
    async fn get(&self, app: &Router, path: &str) -> (StatusCode, Value) {
        let req = Request::get(path)
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap();
        let (s, _, b) = send(app, req).await;
        (s, b)
    }

    async fn post(&self, app: &Router, path: &str, body: Value, csrf: bool) -> (StatusCode, Value) {
        let mut req = post_json(path).header(header::COOKIE, &self.cookie);
        if csrf {
            req = req.header("x-csrf-token", &self.csrf);
        }
        let (s, _, b) = send(app, req.body(Body::from(body.to_string())).unwrap()).await;
        (s, b)
    }

    async fn query(&self, app: &Router, id: &str, sql: &str) -> (StatusCode, Value) {
        self.post(
            app,
            "/console/api/queries",
            json!({"id": id, "sql": sql, "page_rows": 100}),
            true,
        )
        .await
    }
}

fn tables(catalog: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for s in catalog["schemas"].as_array().unwrap() {
        for t in s["tables"].as_array().unwrap() {
            out.push(format!(
                "{}.{}",
                s["name"].as_str().unwrap(),
                t["name"].as_str().unwrap()
            ));
        }
    }
    out
}

#[tokio::test]
async fn the_page_carries_a_strict_policy() {
    let f = fixture().await;
    let (status, headers, body) = send(
        &f.app,
        Request::get("/console/").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(body.as_str().unwrap().contains("assets/app.js"));
    let (status, headers, _) = send(
        &f.app,
        Request::get("/console/assets/app.js")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    // Not signed in: the API answers 401.
    let (status, _, _) = send(
        &f.app,
        Request::get("/console/api/catalog")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_in_checks_the_scram_verifier_and_limits_failures() {
    let f = fixture().await;
    let (status, client, me) = login(&f.app, "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert!(client.is_some());
    assert_eq!(me["role"], "analyst");
    let (status, client, _) = login(&f.app, "alice", "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(client.is_none());
    // Unknown users fail the same way.
    let (status, _, body) = login(&f.app, "nobody", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "user name or password is wrong");
    // Five failures for one name: the sixth try is refused even with the password.
    for _ in 0..4 {
        login(&f.app, "root", "guess").await;
    }
    let (status, _, _) = login(&f.app, "root", "guess").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = login(&f.app, "root", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // Another origin's page cannot sign in.
    let body = json!({"user": "alice", "password": PASSWORD});
    let req = post_json("/console/api/login")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::from(body.to_string()))
        .unwrap();
    assert_eq!(send(&f.app, req).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn finance_sees_its_tables_only_masked_and_filtered() {
    let f = fixture().await;
    let (_, fiona, _) = login(&f.app, "fiona", PASSWORD).await;
    let fiona = fiona.unwrap();
    let (status, catalog) = fiona.get(&f.app, "/console/api/catalog").await;
    assert_eq!(status, StatusCode::OK);
    let mut seen = tables(&catalog);
    seen.sort();
    // Its three tables and their histories, as `\dt` and `\dn` list them over psql.
    assert_eq!(
        seen,
        [
            "invoicing.invoice_lines",
            "invoicing.invoices",
            "invoicing.payments",
            "invoicing_history.invoice_lines",
            "invoicing_history.invoices",
            "invoicing_history.payments"
        ]
    );
    let text = catalog.to_string();
    for forbidden in ["customers", "products", "audit", "dead_letters"] {
        assert!(!text.contains(forbidden), "{forbidden} in {text}");
    }
    let (status, health) = fiona.get(&f.app, "/console/api/health").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = health["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(!health.to_string().contains("customers"));
    assert!(health["dead_letters"].is_null());

    // Without the CSRF token nothing runs.
    let (status, _) = fiona
        .post(
            &f.app,
            "/console/api/queries",
            json!({"id": "q-nocsrf-1", "sql": "SELECT 1"}),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A table outside the grants is refused as over psql.
    let (status, err) = fiona
        .query(&f.app, "q-denied-1", "SELECT * FROM invoicing.customers")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["sqlstate"], "42501");
    // The mask and the row filter apply.
    let (status, page) = fiona
        .query(
            &f.app,
            "q-masked-1",
            "SELECT customer_id, status FROM invoicing.invoices ORDER BY id",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 100);
    assert!(
        rows.iter().all(|r| r[0].is_null() && r[1] != "draft"),
        "{page}"
    );
    assert_eq!(page["done"], false);
    // The next page continues the same result.
    let (status, next) = fiona
        .post(
            &f.app,
            "/console/api/queries/q-masked-1/next",
            json!({"page_rows": 50}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(next["offset"], 100);
    assert_eq!(next["rows"].as_array().unwrap().len(), 50);
    // EXPLAIN of a guarded table is refused (it would print the filter).
    let (status, err) = fiona
        .query(
            &f.app,
            "q-explain-1",
            "EXPLAIN SELECT * FROM invoicing.invoices",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
}

#[tokio::test]
async fn queries_page_cancel_and_reach_the_audit() {
    let f = fixture().await;
    let (_, alice, _) = login(&f.app, "alice", PASSWORD).await;
    let alice = alice.unwrap();
    let (status, page) = alice
        .query(
            &f.app,
            "q-small-01",
            "SELECT '<img src=x onerror=alert(1)>' AS x",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["rows"][0][0], "<img src=x onerror=alert(1)>");
    assert_eq!(page["done"], true);
    // A finished result is closed at once.
    let (status, _) = alice
        .post(
            &f.app,
            "/console/api/queries/q-small-01/next",
            json!({}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // An open result closes on DELETE.
    let (status, _) = alice
        .query(
            &f.app,
            "q-large-01",
            "SELECT * FROM invoicing.invoice_lines",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let req = Request::delete("/console/api/queries/q-large-01")
        .header(header::COOKIE, &alice.cookie)
        .header("x-csrf-token", &alice.csrf)
        .body(Body::empty())
        .unwrap();
    let (status, _, closed) = send(&f.app, req).await;
    assert_eq!(
        (status, closed["closed"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    // Errors keep their SQLSTATE.
    let (status, err) = alice
        .query(&f.app, "q-missing-1", "SELECT * FROM nowhere.t")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["sqlstate"], "42P01", "{err}");
    // The CSV download streams every row.
    let req = Request::post("/console/api/csv")
        .header(header::COOKIE, &alice.cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "sql=SELECT%20id%20FROM%20invoicing.invoices&csrf={}",
            alice.csrf
        )))
        .unwrap();
    let (status, headers, csv) = send(&f.app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let lines = csv.as_str().unwrap().lines().count();
    let expected = f
        .engine
        .query("SELECT count(*) FROM invoicing.invoices")
        .await
        .unwrap();
    let n = tidemark_query::sorted_lines(&expected, "|").unwrap()[0]
        .parse::<usize>()
        .unwrap();
    assert_eq!(lines, n + 1, "a header and every row");
    // Sign out ends the session.
    let (status, _) = alice
        .post(&f.app, "/console/api/logout", json!({}), true)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = alice.get(&f.app, "/console/api/session").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Console statements are in tidemark.audit like the endpoint's.
    f.gateway.close().await;
    let audit = f
        .engine
        .query(
            "SELECT outcome, sqlstate FROM tidemark.audit WHERE application = 'tidemark console' AND user_name = 'alice' ORDER BY started_at",
        )
        .await
        .unwrap();
    let lines = tidemark_query::sorted_lines(&audit, "|").unwrap();
    assert!(lines.iter().any(|l| l.starts_with("ok|")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("cancelled|")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.ends_with("|42P01")), "{lines:?}");
}

/// An instant `days` before now, as the page sends it.
fn days_ago(days: i64) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - days * 86_400;
    arrow::temporal_conversions::timestamp_s_to_datetime(secs)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S.000Z")
        .to_string()
}

async fn data(app: &Router, c: &Client, id: &str, body: Value) -> (StatusCode, Value) {
    c.post(app, &format!("/console/api/charts/{id}/data"), body, true)
        .await
}

async fn del(app: &Router, c: &Client, path: String) -> (StatusCode, axum::http::HeaderMap, Value) {
    let req = Request::delete(path)
        .header(header::COOKIE, &c.cookie)
        .header("x-csrf-token", &c.csrf)
        .header(header::HOST, "127.0.0.1:8420")
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

fn count_of(series: &Value) -> i64 {
    series["rows"][0][0].as_str().unwrap().parse().unwrap()
}

/// Charts and dashboards are saved in the warehouse, and every card runs as the
/// viewer: finance gets its own (filtered) numbers, and a refusal without the name
/// of the table it may not read. "As of" and "compare" read the past through the
/// same time-travel rewrite.
#[tokio::test]
async fn charts_and_dashboards_run_as_the_viewer_and_travel_in_time() {
    let f = fixture().await;
    let (_, alice, _) = login(&f.app, "alice", PASSWORD).await;
    let alice = alice.unwrap();
    let (_, fiona, _) = login(&f.app, "fiona", PASSWORD).await;
    let fiona = fiona.unwrap();
    let (_, root, _) = login(&f.app, "root", PASSWORD).await;
    let root = root.unwrap();

    let (status, by_status) = alice
        .post(
            &f.app,
            "/console/api/charts",
            json!({"name": "Invoices by status", "kind": "bar", "x": "status", "y": ["n"],
                   "sql": "SELECT status, count(*) AS n FROM invoicing.invoices GROUP BY status ORDER BY status"}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{by_status}");
    let (status, hidden) = alice
        .post(
            &f.app,
            "/console/api/charts",
            json!({"name": "Sign-ups", "kind": "line", "x": "country", "y": ["n"],
                   "sql": "SELECT country, count(*) AS n FROM invoicing.customers GROUP BY country ORDER BY country"}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{hidden}");
    let ids = [
        by_status["id"].as_str().unwrap(),
        hidden["id"].as_str().unwrap(),
    ];
    let (status, dash) = alice
        .post(
            &f.app,
            "/console/api/dashboards",
            json!({"name": "Receivables", "charts": ids}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dash}");
    let dash_id = dash["id"].as_str().unwrap();

    // Finance opens it: the first card is its own filtered numbers (no drafts)...
    let (status, list) = fiona.get(&f.app, "/console/api/dashboards").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["id"], dash_id);
    let (status, d) = fiona
        .get(&f.app, &format!("/console/api/dashboards/{dash_id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["cards"].as_array().unwrap().len(), 2);
    assert_eq!(d["editable"], false);
    let (status, mine) = data(&f.app, &fiona, ids[0], json!({})).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let statuses: Vec<&str> = mine["now"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert!(
        !statuses.is_empty() && !statuses.contains(&"draft"),
        "{statuses:?}"
    );
    assert!(mine["chart"]["sql"].as_str().is_some());
    let (_, alices) = data(&f.app, &alice, ids[0], json!({})).await;
    assert!(alices["now"]["rows"].to_string().contains("draft"));
    // ...the second is refused as the endpoint refuses it, without its name or SQL.
    let (status, refused) = data(&f.app, &fiona, ids[1], json!({})).await;
    assert_eq!(status, StatusCode::OK, "{refused}");
    assert_eq!(refused["now"]["error"]["sqlstate"], "42501", "{refused}");
    assert!(refused["now"]["rows"].as_array().unwrap().is_empty());
    assert!(refused["chart"]["sql"].is_null());
    for secret in ["customers", "country"] {
        assert!(
            !refused.to_string().contains(secret) && !d.to_string().contains(secret),
            "{secret}: {refused} {d}"
        );
    }
    // Finance may not change or delete alice's chart; an admin may.
    let (status, _) = fiona
        .post(
            &f.app,
            "/console/api/charts",
            json!({"id": ids[0], "name": "mine now", "kind": "bar", "x": "status", "y": ["n"], "sql": "SELECT 1"}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        del(&f.app, &fiona, format!("/console/api/charts/{}", ids[1]))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        del(&f.app, &root, format!("/console/api/charts/{}", ids[1]))
            .await
            .0,
        StatusCode::OK
    );
    let (_, d) = alice
        .get(&f.app, &format!("/console/api/dashboards/{dash_id}"))
        .await;
    assert!(d["cards"][1]["summary"].is_null(), "{d}");
    // The dashboard as saved before the delete still has both charts.
    let (_, charts) = alice.get(&f.app, "/console/api/charts").await;
    assert_eq!(charts.as_array().unwrap().len(), 1);

    // As of: the same statement over the past (the demo spans 30 days).
    let count = "SELECT count(*) AS n FROM invoicing.invoices";
    let (status, now) = alice
        .post(
            &f.app,
            "/console/api/chart-data",
            json!({"sql": count}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{now}");
    let (status, then) = alice
        .post(
            &f.app,
            "/console/api/chart-data",
            json!({"sql": count, "as_of": days_ago(15), "compare_as_of": days_ago(60)}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{then}");
    let (n_now, n_then, n_before) = (
        count_of(&now["now"]),
        count_of(&then["now"]),
        count_of(&then["compare"]),
    );
    assert!(n_now > n_then && n_then > 0, "{n_now} {n_then}");
    assert_eq!(n_before, 0, "nothing existed 60 days ago");
    // The editor's as-of is the same rewrite, and agrees with AS OF written out.
    let t = days_ago(15);
    let (status, page) = alice
        .post(
            &f.app,
            "/console/api/queries",
            json!({"id": "q-asof-0001", "sql": count, "as_of": t}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (_, written) = alice
        .query(
            &f.app,
            "q-asof-0002",
            &format!("SELECT count(*) AS n FROM invoicing.invoices FOR SYSTEM_TIME AS OF TIMESTAMP '{t}'"),
        )
        .await;
    assert_eq!(page["rows"], written["rows"]);
    assert_eq!(count_of(&page), n_then);
    // Finance as of the past: still filtered, still refused elsewhere.
    let (_, f_then) = fiona
        .post(
            &f.app,
            "/console/api/chart-data",
            json!({"sql": "SELECT count(*) FROM invoicing.invoices WHERE status = 'draft'", "as_of": t}),
            true,
        )
        .await;
    assert_eq!(count_of(&f_then["now"]), 0, "{f_then}");
    let (_, f_refused) = fiona
        .post(
            &f.app,
            "/console/api/chart-data",
            json!({"sql": "SELECT count(*) FROM invoicing.customers", "as_of": t}),
            true,
        )
        .await;
    assert_eq!(
        f_refused["now"]["error"]["sqlstate"], "42501",
        "{f_refused}"
    );
    // Not an instant: refused before anything runs.
    let (status, _) = alice
        .post(
            &f.app,
            "/console/api/chart-data",
            json!({"sql": count, "as_of": "yesterday'--"}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Health: throughput over the role's tables only; no daemon, so no jobs.
    let (status, tp) = fiona
        .get(&f.app, "/console/api/health/throughput?hours=2")
        .await;
    assert_eq!(status, StatusCode::OK, "{tp}");
    assert_eq!(tp["tables"], 3);
    let landed: i64 = tp["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_i64().unwrap())
        .sum();
    assert!(landed > 0, "the demo landed minutes ago: {tp}");
    let (status, compactions) = fiona.get(&f.app, "/console/api/health/compactions").await;
    assert_eq!(status, StatusCode::OK, "{compactions}");
    assert!(
        compactions.as_array().unwrap().iter().all(|c| c["table"]
            .as_str()
            .unwrap()
            .starts_with("invoicing.invoice")
            || c["table"] == "invoicing.payments"),
        "{compactions}"
    );
    let (_, h) = root.get(&f.app, "/console/api/health").await;
    assert_eq!(h["daemon"], false);
    assert!(h["jobs"].is_null());
    let (status, _) = root
        .post(&f.app, "/console/api/jobs/anything/runs", json!({}), true)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = fiona
        .post(&f.app, "/console/api/jobs/anything/runs", json!({}), true)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Every save is a row (and a commit) of tidemark's own tables, which admins
    // read over SQL like the audit.
    f.engine.refresh().await.unwrap();
    let (status, revs) = root
        .query(
            &f.app,
            "q-saved-0001",
            "SELECT id, deleted FROM tidemark.console_charts ORDER BY saved_at",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revs}");
    assert_eq!(revs["rows"].as_array().unwrap().len(), 3, "{revs}");
    let _ = &f.gateway;
}
