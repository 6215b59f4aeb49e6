//! The demo workload lands identically offline and through a real MariaDB, and the
//! offline history holds exactly one version per generated change.

use deltalake::arrow::util::pretty::pretty_format_batches;
use tidemark_lake::Warehouse;
use tidemark_query::Engine;

use crate::support::{ok, server_url, tidemark};

async fn dump(wh: &std::path::Path, sql: &str) -> String {
    let wh = Warehouse::new(wh.to_str().unwrap(), Default::default()).unwrap();
    let engine = Engine::open(&wh).await.unwrap();
    let batches = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&batches).unwrap().to_string()
}

#[tokio::test]
async fn demo_offline_equals_demo_through_mysql() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tidemark.toml");
    let offline = dir.path().join("offline");
    let args = ["--days", "12", "--scale", "0.3", "--seed", "7"];

    let mut a = vec!["demo", "--dir", offline.to_str().unwrap()];
    a.extend(args);
    let out = ok(tidemark(&cfg, &a));
    assert!(out.contains("Revenue by status"), "{out}");
    // The config it writes for the console reads: its models (the ones it built)
    // and feature views for the Models and Features pages.
    let written = tidemark_core::config::Config::from_file(&offline.join("tidemark.toml")).unwrap();
    assert_eq!(written.models.path, offline.join("models"));
    let views = tidemark_features::FeatureViews::parse(&written.features).unwrap();
    let names: Vec<String> = views.iter().map(|v| v.name.clone()).collect();
    assert_eq!(names, ["customer_spend", "payment_amounts"]);

    // The same workload written to MariaDB, then snapshotted.
    let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(&server_url()).unwrap())
        .await
        .unwrap();
    use mysql_async::prelude::Queryable;
    c.query_drop("DROP DATABASE IF EXISTS invoicing")
        .await
        .unwrap();
    let url = server_url();
    let mut a = vec!["demo", "--mysql", url.as_str()];
    a.extend(args);
    ok(tidemark(&cfg, &a));
    let through = dir.path().join("through");
    std::fs::write(
        &cfg,
        format!(
            "[environments.dev]\nwarehouse = \"{}\"\n[sources.demo]\nurl = \"{url}\"\ndatabases = [\"invoicing\"]\n",
            through.display()
        ),
    )
    .unwrap();
    ok(tidemark(&cfg, &["snapshot"]));

    // The server reports exactly the shapes the generator declares (same mapping on
    // both paths, so offline landings look like landings from MySQL).
    let config = tidemark_core::config::Config::from_file(&cfg).unwrap();
    let source =
        tidemark_mysql::connect::Source::connect("demo", config.source_for("dev", "demo").unwrap())
            .await
            .unwrap();
    let discovered = tidemark_mysql::discover::discover(&source).await.unwrap();
    for declared in tidemark_demo::schemas(tidemark_core::names::Naming::SnakeCase) {
        let found = discovered
            .iter()
            .find(|d| d.schema.name == declared.name)
            .unwrap_or_else(|| panic!("{} not discovered", declared.name.source()));
        assert_eq!(found.schema.as_ref(), declared.as_ref());
    }
    source.close().await;

    for sql in [
        "SELECT id, customer_id, status, currency, due_date, total FROM invoicing.invoices ORDER BY id",
        "SELECT id, invoice_id, product_id, quantity, unit_price, amount FROM invoicing.invoice_lines ORDER BY id",
        "SELECT id, invoice_id, amount, method FROM invoicing.payments ORDER BY id",
        "SELECT id, sku, unit_price, active FROM invoicing.products ORDER BY id",
        "SELECT id, name, email, country FROM invoicing.customers ORDER BY id",
    ] {
        let (x, y) = (dump(&offline, sql).await, dump(&through, sql).await);
        assert!(x == y, "{sql}\noffline:\n{}\nthrough MariaDB:\n{}", &x[..x.len().min(2000)], &y[..y.len().min(2000)]);
    }
    // Offline history: one version per non-delete change, never two for one position.
    let versions = dump(
        &offline,
        "SELECT count(*) AS versions, count(DISTINCT _source_pos) AS positions FROM invoicing_history.invoices",
    )
    .await;
    let nums: Vec<&str> = versions
        .lines()
        .nth(3)
        .unwrap()
        .split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(nums[0], nums[1], "{versions}");
    // Current = the versions that are still open.
    let open = dump(
        &offline,
        "SELECT count(*) FROM invoicing_history.invoices WHERE _is_current",
    )
    .await;
    let current = dump(&offline, "SELECT count(*) FROM invoicing.invoices").await;
    assert_eq!(open, current);
    c.query_drop("DROP DATABASE IF EXISTS invoicing")
        .await
        .unwrap();
    let _ = c.disconnect().await;
}
