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
    wh: Warehouse,
}

/// A warehouse in `dir` with `days` simulated days of the demo's invoicing at
/// `scale` landed.
async fn demo_warehouse(dir: &Path, scale: f64, days: u32) -> Warehouse {
    let wh = Warehouse::new(dir.join("warehouse").to_str().unwrap(), Default::default()).unwrap();
    let mut w = tidemark_demo::Workload::new(tidemark_demo::WorkloadConfig {
        scale,
        days,
        seed: 7,
        ..Default::default()
    });
    tidemark_demo::land(&wh, Naming::SnakeCase, &mut w, 5)
        .await
        .unwrap();
    wh
}

/// The endpoint's options for `users` (name, role) in `dir`, with the roles of the
/// shipped examples/tidemark.toml followed by `more_roles` (TOML); and those roles.
fn server_options(
    dir: &Path,
    users: &[(&str, &str)],
    more_roles: &str,
) -> (
    tidemark_server::Options,
    std::collections::BTreeMap<String, tidemark_core::config::RoleConfig>,
) {
    let file = dir.join("users.toml");
    for (user, role) in users {
        UsersFile::add_user(&file, user, role, PASSWORD).unwrap();
    }
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tidemark.toml"),
    )
    .unwrap();
    let config: tidemark_core::config::Config =
        toml::from_str(&format!("{example}{more_roles}")).unwrap();
    let opts = tidemark_server::Options::from_config(&tidemark_core::config::ServerConfig {
        users_file: file,
        audit_flush_ms: 100,
        roles: config.server.roles.clone(),
        ..Default::default()
    })
    .unwrap();
    (opts, config.server.roles)
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let wh = demo_warehouse(dir.path(), 0.3, 30).await;
    let users = [
        ("alice", "analyst"),
        ("fiona", "finance"),
        ("root", "admin"),
    ];
    let (opts, _) = server_options(dir.path(), &users, "");
    let engine = Arc::new(Engine::open(&wh).await.unwrap());
    let gateway = Gateway::open(engine.clone(), &wh, opts).await.unwrap();
    let app = Console::new(gateway.clone(), wh.clone(), Options::default()).router();
    Fixture {
        _dir: dir,
        app,
        gateway,
        engine,
        wh,
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

/// Land rows `ids` of a small table `shop.items` in one commit.
async fn land_items(wh: &Warehouse, ids: std::ops::Range<i64>) {
    use tidemark_core::change::{ChangeBatchBuilder, Op, Value};
    use tidemark_core::schema::{ColumnSchema, TableSchema};
    let id = ColumnSchema {
        source_name: "id".into(),
        name: String::new(),
        column_type: "int(11)".into(),
        data_type: "int".into(),
        precision: None,
        scale: None,
        stored: Vec::new(),
    };
    let schema = TableSchema::new(
        tidemark_core::names::TableName::new("shop", "items", Naming::SnakeCase),
        vec![id],
        &["id".to_string()],
        Naming::SnakeCase,
    )
    .unwrap();
    let mut w = tidemark_lake::TableWriter::open(wh, Arc::new(schema))
        .await
        .unwrap();
    w.start_merge_on_read().await.unwrap();
    let mut b = ChangeBatchBuilder::new(w.schema().clone(), ids.clone().count());
    for i in ids.clone() {
        let at = 1_767_225_600_000_000 + i * 1_000_000;
        b.push_values(&[Value::Int(i)], Op::Create, at, &format!("pos:{i}"), i)
            .unwrap();
    }
    let state = tidemark_core::position::SourceState {
        source: "test".into(),
        source_table: "shop.items".into(),
        ..Default::default()
    };
    w.append_history(&b.finish().unwrap(), state).await.unwrap();
}

/// `POST /console/api/chart-data` for `sql` (as of `as_of`): its series.
async fn chart_series(app: &Router, c: &Client, sql: &str, as_of: Option<&str>) -> Value {
    let body = json!({"sql": sql, "as_of": as_of});
    let (status, d) = c.post(app, "/console/api/chart-data", body, true).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert!(d["now"]["error"].is_null(), "{d}");
    d["now"].clone()
}

/// A chart's result is answered again without running the statement while the
/// tables it reads have no new commit, and runs again after one; per user; never
/// for a statement with `now()`. The audit says which answers were kept ones.
#[tokio::test]
async fn chart_results_are_kept_until_their_tables_change() {
    const ITEMS: &str = "SELECT count(*) AS n FROM shop.items";
    const VOLATILE: &str = "SELECT count(*) AS n, now() AS at FROM shop.items";
    const INVOICES: &str = "SELECT count(*) AS n FROM invoicing.invoices";
    const EARLY: &str = "2026-01-01T00:00:02.500Z";
    let f = fixture().await;
    land_items(&f.wh, 0..3).await;
    f.engine.refresh().await.unwrap();
    let (_, root, _) = login(&f.app, "root", PASSWORD).await;
    let root = root.unwrap();
    let (_, alice, _) = login(&f.app, "alice", PASSWORD).await;
    let alice = alice.unwrap();
    let app = &f.app;

    assert_eq!(count_of(&chart_series(app, &root, ITEMS, None).await), 3);
    assert_eq!(count_of(&chart_series(app, &root, ITEMS, None).await), 3);
    // A commit to the table: the next load runs the statement again.
    land_items(&f.wh, 3..5).await;
    f.engine.refresh().await.unwrap();
    assert_eq!(count_of(&chart_series(app, &root, ITEMS, None).await), 5);
    assert_eq!(count_of(&chart_series(app, &root, ITEMS, None).await), 5);
    // As of an instant: kept per instant (rows 0, 1 and 2 were valid then).
    let early = Some(EARLY);
    assert_eq!(count_of(&chart_series(app, &root, ITEMS, early).await), 3);
    assert_eq!(count_of(&chart_series(app, &root, ITEMS, early).await), 3);
    // now() is not immutable: never kept.
    chart_series(app, &root, VOLATILE, None).await;
    chart_series(app, &root, VOLATILE, None).await;
    // Another user asking the same runs it as themselves.
    chart_series(app, &root, INVOICES, None).await;
    chart_series(app, &alice, INVOICES, None).await;

    f.gateway.close().await;
    let audit = f
        .engine
        .query(
            "SELECT user_name || ' ' || outcome || ' ' || statement FROM tidemark.audit WHERE application = 'tidemark console' ORDER BY started_at",
        )
        .await
        .unwrap();
    let mut lines = Vec::new();
    for b in &audit {
        let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let c = c
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        lines.extend(c.iter().map(|v| v.unwrap().to_string()));
    }
    let want = [
        format!("root ok {ITEMS}"),
        format!("root cached {ITEMS}"),
        format!("root ok {ITEMS}"),
        format!("root cached {ITEMS}"),
        format!("root ok /* as of {EARLY} */ {ITEMS}"),
        format!("root cached /* as of {EARLY} */ {ITEMS}"),
        format!("root ok {VOLATILE}"),
        format!("root ok {VOLATILE}"),
        format!("root ok {INVOICES}"),
        format!("alice ok {INVOICES}"),
    ];
    assert_eq!(lines, want);
}

/// The listing's figures for `schema.table` in a catalog answer.
fn listed<'a>(catalog: &'a Value, schema: &str, table: &str) -> &'a Value {
    catalog["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == schema)
        .and_then(|s| {
            s["tables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == table)
        })
        .unwrap_or_else(|| panic!("{schema}.{table} listed in {catalog}"))
}

async fn one_value(engine: &Engine, sql: &str) -> String {
    let b = engine.query(sql).await.unwrap();
    tidemark_query::sorted_lines(&b, "|").unwrap().remove(0)
}

/// The catalog listing carries each table's rows, changes and how far back its
/// history reaches from the Delta statistics, equal to what queries count; not for a
/// role that reads the table through a row filter.
#[tokio::test]
async fn the_catalog_lists_rows_and_history_from_statistics() {
    let f = fixture().await;
    let (_, root, _) = login(&f.app, "root", PASSWORD).await;
    let (status, catalog) = root.unwrap().get(&f.app, "/console/api/catalog").await;
    assert_eq!(status, StatusCode::OK);
    let t = listed(&catalog, "invoicing", "invoices");
    let rows = one_value(&f.engine, "SELECT count(*) FROM invoicing.invoices").await;
    assert_eq!(t["rows"].to_string(), rows, "{t}");
    assert_eq!(t["rows_exact"], true, "the demo compacts at the end: {t}");
    // Every version of the history view is a change in the log (which also holds
    // the deletes' tombstones).
    let versions = one_value(&f.engine, "SELECT count(*) FROM invoicing_history.invoices").await;
    let changes = t["changes"].as_u64().unwrap();
    assert!(changes >= versions.parse::<u64>().unwrap(), "{t}");
    let oldest = one_value(
        &f.engine,
        "SELECT to_char(min(_valid_from), '%Y-%m-%dT%H:%M:%S%.3fZ') FROM invoicing_history.invoices",
    )
    .await;
    assert_eq!(t["history_from"], oldest.as_str(), "{t}");

    // Finance reads invoices through a row filter: no figures; payments unfiltered.
    let (_, fiona, _) = login(&f.app, "fiona", PASSWORD).await;
    let (_, catalog) = fiona.unwrap().get(&f.app, "/console/api/catalog").await;
    let t = listed(&catalog, "invoicing", "invoices");
    assert!(t.get("rows").is_none() && t.get("changes").is_none(), "{t}");
    let p = listed(&catalog, "invoicing", "payments");
    let paid = one_value(&f.engine, "SELECT count(*) FROM invoicing.payments").await;
    assert_eq!(p["rows"].to_string(), paid, "{p}");
}

/// The Models and Features pages' data: a demo warehouse with the example models
/// (examples/models, as `tidemark demo` builds them) plus one that does not parse,
/// three feature views and an online store following them, and a role `board` that
/// reads two models but not what they read.
struct ModelsFixture {
    _dir: tempfile::TempDir,
    app: Router,
}

const BOARD_ROLE: &str = "\n[server.roles.board]\ngrants = [\"analytics.revenue_by_country\", \"analytics.revenue_by_month\", \"invoicing.payments\"]\n";

const FEATURE_VIEWS: &str = r#"
[customer_spend]
source = "analytics.customer_summary"
entity = "customer_id"
ttl = "30d"
features = ["billed", "paid", { name = "unpaid", sql = "billed - paid" }]

[payment_amounts]
source = "invoicing.payments"
entity = "payment_id"
join_on = "id"
features = ["amount", "method"]

[invoice_status]
source = "invoicing.invoices"
entity = "invoice_id"
join_on = "id"
features = ["status", "total"]
"#;

/// Copy a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

async fn models_fixture() -> ModelsFixture {
    let dir = tempfile::tempdir().unwrap();
    let wh = demo_warehouse(dir.path(), 0.2, 10).await;
    let models_dir = dir.path().join("models");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models"),
        &models_dir,
    );
    let models = tidemark_core::config::ModelsConfig {
        path: models_dir.clone(),
        ..Default::default()
    };
    let engine = Arc::new(Engine::open(&wh).await.unwrap());
    let project =
        tidemark_models::Project::load(&models, Some(&engine.landed_names()), "dev").unwrap();
    let report = tidemark_models::build(&wh, engine, &project, &Default::default())
        .await
        .unwrap();
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    // A SQL test on a model board reads that fails (every country is listed), run
    // as `tidemark test` runs it: its outcome lands in tidemark.model_tests with
    // its failing rows, next to the passing ones the build recorded.
    std::fs::write(
        models_dir.join("tests/no_country_is_listed.sql"),
        "SELECT country, paid FROM {{ ref('revenue_by_country') }} WHERE customers > 0",
    )
    .unwrap();
    let engine = Arc::new(Engine::open(&wh).await.unwrap());
    let project =
        tidemark_models::Project::load(&models, Some(&engine.landed_names()), "dev").unwrap();
    let ran_by = tidemark_models::RanBy {
        who: "tidemark test".into(),
        environment: "dev".into(),
    };
    let tested = tidemark_models::test(
        Some(&engine),
        &project,
        &["revenue_by_country".into()],
        Some((&wh, &ran_by)),
    )
    .await
    .unwrap();
    assert_eq!(tested[0].failures().len(), 1, "{tested:?}");
    // Broken after the build: the page shows it (to admins) with its error.
    std::fs::write(models_dir.join("broken_model.sql"), "SELEC nothing").unwrap();

    let users = [("fiona", "finance"), ("root", "admin"), ("bob", "board")];
    let (opts, roles) = server_options(dir.path(), &users, BOARD_ROLE);
    let engine = Arc::new(Engine::open(&wh).await.unwrap());
    let views: std::collections::BTreeMap<String, toml::Table> =
        toml::from_str(FEATURE_VIEWS).unwrap();
    let features = tidemark_features::FeatureViews::parse(&views).unwrap();
    let masks = tidemark_server::access::Policy::from_config(&roles)
        .unwrap()
        .mask_sets();
    let store = Arc::new(tidemark_features::OnlineStore::new(features.iter(), &masks));
    store.catch_up(&engine, true).await;
    let gateway = Gateway::open(engine, &wh, opts).await.unwrap();
    let options = Options {
        models: Some(models),
        features,
        online: Some(store),
        ..Options::default()
    };
    let app = Console::new(gateway, wh, options).router();
    ModelsFixture { _dir: dir, app }
}

fn model<'a>(models: &'a Value, name: &str) -> &'a Value {
    models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no model {name} in {models}"))
}

fn names_of(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn models_and_features_as_each_role_may_see_them() {
    let f = models_fixture().await;
    let (_, root, _) = login(&f.app, "root", PASSWORD).await;
    let root = root.unwrap();
    let (status, m) = root.get(&f.app, "/console/api/models").await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(
        names_of(&m["models"]),
        [
            "customer_summary",
            "open_receivables",
            "overdue_invoices",
            "payments_received",
            "revenue_by_country",
            "revenue_by_month"
        ]
    );
    // The DAG: sources on the left, a model reading a model one column further.
    assert_eq!(
        m["tables"],
        json!([
            "invoicing.customers",
            "invoicing.invoices",
            "invoicing.payments"
        ])
    );
    assert_eq!(model(&m, "customer_summary")["layer"], 1);
    let by_country = model(&m, "revenue_by_country");
    assert_eq!(by_country["layer"], 2);
    assert_eq!(
        by_country["reads"],
        json!([{"table": "analytics.customer_summary", "model": "customer_summary"}])
    );
    // Its last build, from its table's commit: number, instant, version, inputs.
    let summary = model(&m, "customer_summary");
    let b = &summary["last_build"];
    assert_eq!(b["build"], 1, "{summary}");
    assert!(
        b["at_ms"].as_i64().unwrap() > 0 && b["version"].as_i64().is_some(),
        "{b}"
    );
    assert_eq!(b["sql_changed"], false);
    let inputs: Vec<&str> = b["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["table"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, ["invoicing.customers", "invoicing.invoices"]);
    let tests: Vec<&str> = summary["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tests,
        [
            "unique(customer_id)",
            "not_null(customer_id)",
            "paid_never_exceeds_billed"
        ]
    );
    assert_eq!(summary["unit_tests"].as_array().unwrap().len(), 1);
    // Each test's last run, as the build recorded it: passed.
    for t in summary["tests"].as_array().unwrap() {
        let last = &t["last"];
        assert_eq!(last["outcome"], "pass", "{t}");
        assert_eq!(last["failing_rows"], 0, "{t}");
        assert_eq!(last["ran_by"], "tidemark build", "{t}");
        assert!(last["at_ms"].as_i64().unwrap() > 0, "{t}");
    }
    // And the failing one `tidemark test` ran, with its first failing rows.
    let failing = &model(&m, "revenue_by_country")["tests"][0];
    assert_eq!(failing["name"], "no_country_is_listed", "{failing}");
    let last = &failing["last"];
    assert_eq!(last["outcome"], "fail", "{failing}");
    assert!(last["failing_rows"].as_i64().unwrap() > 0, "{failing}");
    assert!(
        last["rows"][0].as_str().unwrap().starts_with("(country="),
        "{failing}"
    );
    assert_eq!(last["ran_by"], "tidemark test", "{failing}");
    assert_eq!(model(&m, "overdue_invoices")["view"], "current");
    assert_eq!(model(&m, "payments_received")["strategy"], "append");
    let broken = m["broken"].as_array().unwrap();
    assert_eq!(broken.len(), 1, "{m}");
    assert_eq!(broken[0]["name"], "broken_model");
    assert!(!m["dir"].is_null());
    // No daemon here: no jobs.
    assert_eq!(m["daemon"], false);

    // board reads two models, not what they read: those are never named.
    let (_, bob, _) = login(&f.app, "bob", PASSWORD).await;
    let bob = bob.unwrap();
    let (status, m) = bob.get(&f.app, "/console/api/models").await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(
        names_of(&m["models"]),
        ["revenue_by_country", "revenue_by_month"]
    );
    assert_eq!(m["reads_hidden"], true);
    assert_eq!(m["tables"], json!([]));
    for name in ["revenue_by_country", "revenue_by_month"] {
        let x = model(&m, name);
        assert_eq!(x["reads"], json!([]), "{x}");
        assert_eq!(x["hidden_reads"], 1, "{x}");
        assert_eq!(x["last_build"]["hidden_inputs"], 1, "{x}");
        assert_eq!(x["last_build"]["inputs"], json!([]), "{x}");
    }
    // board reads revenue_by_country unmasked: its failing test's rows are the
    // model's, shown; who ran it (a job's name, for admins) is not.
    let last = &model(&m, "revenue_by_country")["tests"][0]["last"];
    assert_eq!(last["outcome"], "fail", "{last}");
    assert!(!last["rows"].as_array().unwrap().is_empty(), "{last}");
    assert!(last["ran_by"].is_null(), "{last}");
    let text = m.to_string();
    for hidden in ["customer_summary", "invoicing", "broken_model", "customers"] {
        assert!(!text.contains(hidden), "{hidden} in {text}");
    }
    assert!(m["broken"].is_null() && m["dir"].is_null());

    // finance reads no model.
    let (_, fiona, _) = login(&f.app, "fiona", PASSWORD).await;
    let fiona = fiona.unwrap();
    let (status, m) = fiona.get(&f.app, "/console/api/models").await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["models"], json!([]));
    assert!(!m.to_string().contains("analytics"), "{m}");

    // Features: the HTTP features API's rule. Admin reads the three, with the
    // online store's counts.
    let (status, fv) = root.get(&f.app, "/console/api/features").await;
    assert_eq!(status, StatusCode::OK, "{fv}");
    assert_eq!(fv["served"], true);
    assert_eq!(
        names_of(&fv["views"]),
        ["customer_spend", "invoice_status", "payment_amounts"]
    );
    let spend = fv["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "customer_spend")
        .unwrap();
    assert_eq!(spend["source"], "analytics.customer_summary");
    assert_eq!(spend["ttl_s"], 30 * 86400);
    assert!(spend["online"]["entities"].as_u64().unwrap() > 0, "{spend}");
    assert!(spend["online"]["version"].as_i64().is_some(), "{spend}");
    assert!(
        spend["features"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["type"].is_string()),
        "{spend}"
    );
    // finance: its row filter on invoices refuses that view; customers' is not
    // granted; payments' is.
    let (_, fv) = fiona.get(&f.app, "/console/api/features").await;
    assert_eq!(names_of(&fv["views"]), ["payment_amounts"]);
    let payments = &fv["views"][0];
    assert_eq!(payments["source"], "invoicing.payments");
    assert!(payments["features"][0]["type"].is_string(), "{payments}");
    assert!(!fv.to_string().contains("customer"), "{fv}");
}
