use mysql_async::prelude::Queryable;
#[tokio::test(flavor = "multi_thread")]
async fn tmp_bench() {
    let url = std::env::var("TIDEMARK_TEST_MYSQL_URL").unwrap();
    let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .unwrap();
    conn.query_drop("DROP DATABASE IF EXISTS invoicing")
        .await
        .unwrap();
    tidemark_demo::create_schema(&mut conn).await.unwrap();
    let t = std::time::Instant::now();
    let mut n = 0;
    for day in tidemark_demo::Workload::new(tidemark_demo::WorkloadConfig {
        end_us: 1_717_200_000_000_000,
        ..Default::default()
    }) {
        n += day.len();
        tidemark_demo::apply_to_mysql(&mut conn, &day)
            .await
            .unwrap();
    }
    eprintln!("{n} events in {:?}", t.elapsed());
    let c: Option<(i64,)> = conn
        .query_first("SELECT COUNT(*) FROM invoicing.invoices")
        .await
        .unwrap();
    eprintln!("{c:?}");
    conn.query_drop("DROP DATABASE invoicing").await.unwrap();
}
