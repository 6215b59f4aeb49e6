//! Faults outside tidemark (issue 14, item 10): the source server restarted while
//! `run` streams, and the warehouse's disk full while it commits. After each, every
//! change is in the lake once, and nothing was committed by half.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{kill, record_checked, record_fault, spawn_run_with, wait_for_log, TestDb};

fn mariadb_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mariadb.sh")
}

/// A MariaDB of this test's own (binlog on, ROW), so restarting it disturbs no other
/// test: `scripts/mariadb.sh` with its own directory and port.
struct OwnMariaDb {
    base: PathBuf,
    port: u16,
}

impl OwnMariaDb {
    fn run(&self, verb: &str) -> String {
        let out = std::process::Command::new("bash")
            .arg(mariadb_script())
            .arg(verb)
            .env("TIDEMARK_MARIADB_BASE", &self.base)
            .env("TIDEMARK_MARIADB_PORT", self.port.to_string())
            .output()
            .expect("scripts/mariadb.sh");
        assert!(
            out.status.success(),
            "scripts/mariadb.sh {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn start(base: PathBuf) -> (Self, String) {
        // A port well away from the shared instance's, different per process.
        let port = 35_000 + (std::process::id() % 2_000) as u16;
        let db = Self { base, port };
        let url = db.run("start");
        (db, url)
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(mariadb_script())
            .arg("stop")
            .env("TIDEMARK_MARIADB_BASE", &self.base)
            .status();
    }
}

/// Rows and duplicate versions of `db.t` in the lake.
async fn landed(db: &TestDb, table: &str) -> (i64, i64, i64) {
    let s = db.name.to_lowercase();
    let current = db
        .sql_i64(&format!("SELECT count(*) FROM {s}.{table}"))
        .await;
    let history = db
        .sql_i64(&format!("SELECT count(*) FROM {s}_history.{table}"))
        .await;
    let doubled = db
        .sql_i64(&format!(
            "SELECT count(*) FROM (SELECT id, _valid_from FROM {s}_history.{table} \
             GROUP BY id, _valid_from HAVING count(*) > 1) d"
        ))
        .await;
    (current, history, doubled)
}

async fn wait_landed(db: &TestDb, table: &str, rows: i64, config: &Path) {
    let start = Instant::now();
    loop {
        let (current, history, doubled) = landed(db, table).await;
        assert_eq!(doubled, 0, "a version landed twice");
        if current == rows && history == rows {
            record_checked(rows as usize, "rows after a fault");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{table}: {current} current rows, {history} versions, want {rows}; run.log:\n{}",
            std::fs::read_to_string(config.with_file_name("run.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn capture_goes_on_across_a_source_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = OwnMariaDb::start(dir.path().join("mariadb"));
    let db = TestDb::new_on(&url, "restart").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        .await;
    db.exec("INSERT INTO t SELECT seq, 'before' FROM seq_1_to_50")
        .await;
    let config = db.config("flush_interval_ms = 200");
    let child = spawn_run_with(&config, &[]);
    wait_for_log(&config, "\"streaming\"", 1, Duration::from_secs(60));
    db.exec("INSERT INTO t SELECT seq, 'streamed' FROM seq_51_to_100")
        .await;
    wait_landed(&db, "t", 100, &config).await;
    // The server goes away mid-stream (a clean shutdown, as a failover or an upgrade
    // does) and comes back.
    record_fault("restart", "MariaDB mid-stream");
    server.run("stop");
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.run("start");
    db.exec("INSERT INTO t SELECT seq, 'after' FROM seq_101_to_150")
        .await;
    wait_landed(&db, "t", 150, &config).await;
    wait_for_log(
        &config,
        "binlog stream lost; reconnecting",
        1,
        Duration::from_secs(5),
    );
    kill(child);
    db.drop().await;
    drop(server);
}

/// A tmpfs mounted on the warehouse directory, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "mounting a tmpfs on {} failed: the full-disk test needs root (scripts/test.sh runs as root in CI)",
            at.display()
        );
        Self(at.to_path_buf())
    }

    /// Fill it: one file as large as what is left.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 1 << 16];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_stops_commits_cleanly_and_they_resume_when_space_returns() {
    let db = TestDb::new("fulldisk").await;
    let disk = SmallDisk::mount(&db.warehouse(), "48m");
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(200))")
        .await;
    db.exec("INSERT INTO t SELECT seq, REPEAT('x', 150) FROM seq_1_to_100")
        .await;
    let config = db.config(&format!(
        "flush_interval_ms = 200\nserver_id = {}",
        300_000 + std::process::id() % 10_000
    ));
    let child = spawn_run_with(&config, &[]);
    wait_for_log(&config, "\"streaming\"", 1, Duration::from_secs(60));
    let filler = disk.fill();
    record_fault("disk-full", "warehouse");
    db.exec("INSERT INTO t SELECT seq, REPEAT('y', 150) FROM seq_101_to_400")
        .await;
    // Commits fail, and say why, and are tried again.
    wait_for_log(
        &config,
        "commit failed; trying again",
        1,
        Duration::from_secs(60),
    );
    let log = std::fs::read_to_string(config.with_file_name("run.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("commit failed; trying again"))
        .unwrap();
    assert!(
        line.contains(&format!("{}.t", db.name)) && line.contains("No space left"),
        "the warning names the table and the cause: {line}"
    );
    // Space returns: the same changes land, once.
    std::fs::remove_file(filler).unwrap();
    wait_landed(&db, "t", 400, &config).await;
    kill(child);
    drop(disk);
    db.drop().await;
}

/// Issue 14, item 3, the binlog reader's side: after a failover (or a restore, or an
/// address pointed elsewhere) the source's address reaches another server, whose
/// binlog coordinates mean nothing for the committed positions. `run` refuses to
/// read, naming both servers, instead of resuming at a file and offset of the wrong
/// binlog.
#[tokio::test]
async fn capture_refuses_to_resume_on_another_server() {
    use crate::support::{ok, text};
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = OwnMariaDb::start(dir.path().join("mariadb"));
    let db = TestDb::new_on(&url, "otherserver").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    db.exec("INSERT INTO t VALUES (1, 1), (2, 2)").await;
    let config = db.config("");
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    // The same address, another server (as a failover to a replica looks).
    db.exec("SET GLOBAL server_id = 2").await;
    db.exec("INSERT INTO t VALUES (3, 3)").await;
    let out = db.tidemark(&config, &["run", "--until-caught-up"]);
    let t = text(&out);
    assert!(
        !out.status.success(),
        "must not resume on another server:\n{t}"
    );
    assert!(
        t.contains("of server 1 (server_id)")
            && t.contains("now reaches server 2")
            && t.contains("cannot be compared"),
        "{t}"
    );
    db.drop().await;
    drop(server);
}

/// SIGKILL during compaction (issue 14, item 10): `tidemark maintain` folds a streamed
/// table's history tail into a new current base; killed at random moments, again and
/// again, the table still answers exactly what the source has, and history keeps one
/// version per change.
#[tokio::test]
async fn compaction_killed_at_random_moments_loses_nothing() {
    use crate::support::{ok, Lcg};
    let db = TestDb::new("killcompact").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40), n INT)")
        .await;
    db.exec("INSERT INTO t SELECT seq, CONCAT('v', seq), seq FROM seq_1_to_20000")
        .await;
    let config = db.config(&format!(
        "server_id = {}",
        400_000 + std::process::id() % 10_000
    ));
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    // A tail to fold: updates and inserts streamed after the snapshot.
    db.exec("UPDATE t SET n = n + 1 WHERE id % 3 = 0").await;
    db.exec("INSERT INTO t SELECT seq, CONCAT('w', seq), seq FROM seq_20001_to_40000")
        .await;
    db.exec("DELETE FROM t WHERE id % 7 = 0").await;
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    // Each killed run leaves the tail to fold; more changes keep it there.
    let mut rng = Lcg(u64::from(std::process::id()) ^ 0xc0ffee);
    // Until four kills have landed inside a run (bounded: a fast machine may finish
    // some runs first, which is fine too: each then compacts fully).
    let mut kills = 0;
    for _ in 0..16 {
        if kills == 4 {
            break;
        }
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            // Each daemon its own API port: tests run side by side.
            .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
            .arg("--config")
            .arg(&config)
            .args(["maintain", "--retain-hours", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20 + rng.next(400))).await;
        if let Ok(None) = child.try_wait() {
            record_fault("sigkill", "tidemark maintain (compaction)");
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    ok(db.tidemark(&config, &["maintain", "--retain-hours", "0"]));
    let s = db.name.to_lowercase();
    let source_rows = db.query_i64("SELECT count(*) FROM t").await;
    let source_sum = db.query_i64("SELECT SUM(n) FROM t").await;
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {s}.t")).await,
        source_rows
    );
    assert_eq!(
        db.sql_i64(&format!("SELECT SUM(n) FROM {s}.t")).await,
        source_sum
    );
    // 20,000 snapshot rows, 6,666 updates, 20,000 inserts; deletes close versions.
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {s}_history.t"))
            .await,
        20_000 + 6_666 + 20_000
    );
    record_checked(source_rows as usize, "rows after compactions killed");
    db.drop().await;
}
