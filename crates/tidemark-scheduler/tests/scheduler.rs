mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use tidemark_scheduler::*;

fn cron(name: &str, expr: &str) -> JobSpec {
    spec(name, &format!("kind = \"test\"\ncron = \"{expr}\""))
}

fn record(
    job: &str,
    seq: u64,
    tick: Option<chrono::DateTime<chrono::Utc>>,
    outcome: Outcome,
) -> RunRecord {
    let started = tick.unwrap_or(at(0, 0, 0));
    RunRecord {
        id: RunRecord::run_id(job, seq),
        job: job.into(),
        seq,
        reason: "cron".into(),
        tick,
        inputs: BTreeMap::new(),
        params: BTreeMap::new(),
        holder: "old".into(),
        started,
        ended: (outcome != Outcome::Running).then_some(started),
        lease_until: started + chrono::Duration::seconds(60),
        outcome,
        attempts: 1,
        rows: 0,
        error: None,
    }
}

#[tokio::test]
async fn cron_runs_once_per_tick() {
    let w = World::new(at(0, 0, 30));
    let d = w.daemon(vec![cron("c", "* * * * *")], "d1").await;
    assert_eq!(w.lab.count(), 0);
    assert_eq!(
        w.clock.next_wake(),
        Some(at(0, 1, 0)),
        "the loop sleeps until the tick"
    );
    w.advance(Duration::from_secs(30)).await;
    w.advance(Duration::from_secs(60)).await;
    let runs = w.lab.ran("c");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].reason, Reason::Cron { tick: at(0, 1, 0) });
    assert_eq!(runs[1].reason, Reason::Cron { tick: at(0, 2, 0) });
    let recs = w.records("c");
    assert_eq!(
        recs.iter()
            .map(|r| (r.id.as_str(), r.outcome))
            .collect::<Vec<_>>(),
        [("c-1", Outcome::Succeeded), ("c-2", Outcome::Succeeded)]
    );
    assert_eq!(recs[0].rows, 7);
    assert_eq!(d.handle.runs(Some("c"), 10)[0].id, "c-2");
    d.stop().await;
}

#[tokio::test]
async fn a_never_seen_job_waits_for_its_next_tick() {
    let w = World::new(at(4, 30, 0));
    let d = w.daemon(vec![cron("h", "0 * * * *")], "d1").await;
    assert_eq!(w.lab.count(), 0);
    let st = d.handle.jobs();
    assert_eq!(st[0].next_due, Some(at(5, 0, 0)));
    assert_eq!(st[0].triggers, ["cron \"0 * * * *\" (UTC)"]);
    d.stop().await;
}

#[tokio::test]
async fn missed_ticks_catch_up_once() {
    let w = World::new(at(4, 30, 0));
    w.store
        .insert(record("h", 1, Some(at(1, 0, 0)), Outcome::Succeeded));
    let d = w.daemon(vec![cron("h", "0 * * * *")], "d1").await;
    let runs = w.lab.ran("h");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].reason, Reason::CatchUp { tick: at(4, 0, 0) });
    assert_eq!(d.handle.jobs()[0].next_due, Some(at(5, 0, 0)));
    w.advance(Duration::from_secs(29 * 60)).await;
    assert_eq!(w.lab.ran("h").len(), 1);
    w.advance(MIN).await;
    assert_eq!(w.lab.ran("h")[1].reason, Reason::Cron { tick: at(5, 0, 0) });
    d.stop().await;
}

#[tokio::test]
async fn missed_ticks_are_skipped_with_catch_up_skip() {
    let w = World::new(at(4, 30, 0));
    w.store
        .insert(record("h", 1, Some(at(1, 0, 0)), Outcome::Succeeded));
    let d = w
        .daemon(
            vec![spec(
                "h",
                "kind = \"test\"\ncron = \"0 * * * *\"\ncatch_up = \"skip\"",
            )],
            "d1",
        )
        .await;
    assert_eq!(w.lab.count(), 0);
    assert_eq!(d.handle.jobs()[0].next_due, Some(at(5, 0, 0)));
    d.stop().await;
}

#[tokio::test]
async fn every_first_runs_one_interval_after_start_then_keeps_its_grid() {
    let w = World::new(at(0, 0, 0));
    let d = w
        .daemon(vec![spec("e", "kind = \"test\"\nevery = \"10m\"")], "d1")
        .await;
    w.walk(Duration::from_secs(9 * 60), MIN).await;
    assert_eq!(w.lab.count(), 0);
    w.walk(Duration::from_secs(11 * 60), MIN).await;
    let ticks: Vec<_> = w.lab.ran("e").into_iter().map(|c| c.reason).collect();
    assert_eq!(
        ticks,
        [
            Reason::Every { tick: at(0, 10, 0) },
            Reason::Every { tick: at(0, 20, 0) }
        ]
    );
    d.stop().await;
    // Restarted 35 minutes later: one catch-up for 00:50, then 01:00 on the same grid.
    w.clock.set(at(0, 55, 0));
    let d = w
        .daemon(vec![spec("e", "kind = \"test\"\nevery = \"10m\"")], "d1")
        .await;
    assert_eq!(
        w.lab.ran("e")[2].reason,
        Reason::CatchUp { tick: at(0, 50, 0) }
    );
    assert_eq!(d.handle.jobs()[0].next_due, Some(at(1, 0, 0)));
    d.stop().await;
}

#[tokio::test]
async fn two_daemons_on_one_store_run_each_tick_once() {
    let w = World::new(at(0, 0, 30));
    let a = w.daemon(vec![cron("c", "* * * * *")], "a").await;
    let b = w.daemon(vec![cron("c", "* * * * *")], "b").await;
    w.walk(Duration::from_secs(5 * 60), Duration::from_secs(30))
        .await;
    let recs = w.records("c");
    let ticks: Vec<_> = recs.iter().map(|r| r.tick.unwrap()).collect();
    assert_eq!(
        ticks,
        [
            at(0, 1, 0),
            at(0, 2, 0),
            at(0, 3, 0),
            at(0, 4, 0),
            at(0, 5, 0)
        ]
    );
    assert_eq!(w.lab.count(), 5);
    assert!(recs.iter().all(|r| r.outcome == Outcome::Succeeded));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn new_data_debounces_and_batches() {
    let w = World::new(at(0, 0, 0));
    w.inputs.set("shop.orders", 1);
    let s = spec("m", "kind = \"test\"\non = \"new_data\"\ninputs = [\"shop.orders\", \"shop.customers\"]\ndebounce = \"5s\"");
    let d = w.daemon(vec![s], "d1").await;
    // A job that never ran fires for the inputs that exist, after the debounce.
    w.walk(Duration::from_secs(4), SEC).await;
    assert_eq!(w.lab.count(), 0);
    w.walk(Duration::from_secs(2), SEC).await;
    let runs = w.lab.ran("m");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].reason, Reason::NewData);
    assert_eq!(
        runs[0].inputs,
        BTreeMap::from([("shop.orders".to_string(), 1)])
    );
    // Nothing new: nothing runs.
    w.walk(Duration::from_secs(30), SEC).await;
    assert_eq!(w.lab.count(), 1);
    // Three commits two seconds apart, then quiet: one run with the latest versions.
    for v in 2..=4 {
        w.inputs.set("shop.orders", v);
        d.handle.notify("shop.orders");
        w.walk(Duration::from_secs(2), SEC).await;
    }
    w.inputs.set("shop.customers", 9);
    w.walk(Duration::from_secs(4), SEC).await;
    assert_eq!(w.lab.count(), 1, "still debouncing");
    w.walk(Duration::from_secs(2), SEC).await;
    let runs = w.lab.ran("m");
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[1].inputs,
        BTreeMap::from([
            ("shop.orders".to_string(), 4),
            ("shop.customers".to_string(), 9)
        ])
    );
    assert_eq!(w.records("m")[1].inputs, runs[1].inputs);
    d.stop().await;
}

#[tokio::test]
async fn freshness_caps_the_debounce() {
    let w = World::new(at(0, 0, 0));
    w.inputs.set("t", 1);
    w.store.insert(RunRecord {
        inputs: BTreeMap::from([("t".into(), 1)]),
        ..record("m", 1, None, Outcome::Succeeded)
    });
    let s = spec("m", "kind = \"test\"\non = \"new_data\"\ninputs = [\"t\"]\ndebounce = \"5s\"\nfreshness = \"10s\"");
    let d = w.daemon(vec![s], "d1").await;
    // A commit every second never leaves 5s of quiet; freshness fires it at 10s.
    for v in 2..=10 {
        w.inputs.set("t", v);
        w.advance(SEC).await;
    }
    assert_eq!(w.lab.count(), 0);
    w.inputs.set("t", 11);
    w.walk(Duration::from_secs(2), SEC).await;
    let runs = w.lab.ran("m");
    assert_eq!(runs.len(), 1);
    assert!(runs[0].inputs["t"] >= 10);
    d.stop().await;
}

#[tokio::test]
async fn commits_during_a_run_trigger_one_more_run() {
    let w = World::new(at(0, 0, 0));
    w.lab.set("m", Behave::Block);
    w.inputs.set("t", 1);
    let s = spec(
        "m",
        "kind = \"test\"\non = \"new_data\"\ninputs = [\"t\"]\ndebounce = \"1s\"",
    );
    let d = w.daemon(vec![s], "d1").await;
    w.walk(Duration::from_secs(2), SEC).await;
    assert_eq!(w.lab.count(), 1);
    for v in 2..=4 {
        w.inputs.set("t", v);
        w.advance(SEC).await;
    }
    assert_eq!(w.lab.count(), 1, "one run at a time");
    assert_eq!(d.handle.jobs()[0].running.as_deref(), Some("m-1"));
    w.lab.set("m", Behave::Ok);
    w.lab.release(1);
    settle().await;
    w.walk(Duration::from_secs(3), SEC).await;
    let runs = w.lab.ran("m");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].inputs["t"], 4);
    w.walk(Duration::from_secs(10), SEC).await;
    assert_eq!(w.lab.count(), 2);
    d.stop().await;
}

#[tokio::test]
async fn after_fires_on_upstream_success_only() {
    let w = World::new(at(0, 0, 0));
    let specs = vec![
        spec("a", "kind = \"test\""),
        spec("x", "kind = \"test\""),
        spec("b", "kind = \"test\"\nafter = [\"a\"]"),
        spec("both", "kind = \"test\"\nafter = [\"a\", \"x\"]"),
    ];
    let d = w.daemon(specs, "d1").await;
    assert_eq!(w.lab.count(), 0);
    w.advance(SEC).await;
    d.handle.trigger("a", "ann", BTreeMap::new()).await.unwrap();
    w.advance(SEC).await;
    assert_eq!(w.lab.ran("b")[0].reason, Reason::After { job: "a".into() });
    assert_eq!(w.lab.ran("both").len(), 0, "x has not succeeded yet");
    d.handle.trigger("x", "ann", BTreeMap::new()).await.unwrap();
    w.advance(SEC).await;
    assert_eq!(w.lab.ran("both").len(), 1);
    // A failure of the upstream does not trigger.
    w.lab.set("a", Behave::Definite);
    d.handle.trigger("a", "ann", BTreeMap::new()).await.unwrap();
    w.advance(SEC).await;
    assert_eq!(w.lab.ran("b").len(), 1);
    // Each success of a single upstream does.
    w.lab.set("a", Behave::Ok);
    d.handle.trigger("a", "ann", BTreeMap::new()).await.unwrap();
    w.advance(SEC).await;
    assert_eq!(w.lab.ran("b").len(), 2);
    assert_eq!(w.lab.ran("both").len(), 1, "x did not run again");
    d.stop().await;
}

#[tokio::test]
async fn after_survives_a_restart() {
    let w = World::new(at(0, 0, 0));
    let specs = || {
        vec![
            spec("a", "kind = \"test\""),
            spec("b", "kind = \"test\"\nafter = [\"a\"]"),
        ]
    };
    let d = w.daemon(specs(), "d1").await;
    w.advance(SEC).await;
    d.handle.trigger("a", "ann", BTreeMap::new()).await.unwrap();
    w.advance(SEC).await;
    assert_eq!(w.lab.ran("b").len(), 1);
    d.stop().await;
    // a succeeded again, but b's run was lost with its daemon (abandoned).
    w.store.insert(RunRecord {
        started: at(0, 0, 5),
        ended: Some(at(0, 0, 6)),
        ..record("a", 2, None, Outcome::Succeeded)
    });
    w.store.insert(RunRecord {
        started: at(0, 0, 7),
        ..record("b", 2, None, Outcome::Running)
    });
    w.clock.set(at(0, 5, 0));
    let d = w.daemon(specs(), "d1").await;
    assert_eq!(w.records("b")[1].outcome, Outcome::Abandoned);
    assert_eq!(w.lab.ran("b").len(), 2);
    assert_eq!(w.records("b")[2].reason, "after:a");
    d.stop().await;
}

#[tokio::test]
async fn an_abandoned_run_is_reaped_and_its_tick_runs_again() {
    let w = World::new(at(1, 30, 0));
    w.store
        .insert(record("h", 1, Some(at(0, 0, 0)), Outcome::Succeeded));
    w.store
        .insert(record("h", 2, Some(at(1, 0, 0)), Outcome::Running));
    let d = w.daemon(vec![cron("h", "0 * * * *")], "d1").await;
    let recs = w.records("h");
    assert_eq!(recs[1].outcome, Outcome::Abandoned);
    assert!(recs[1]
        .error
        .as_deref()
        .unwrap()
        .starts_with("the process running it stopped"));
    assert_eq!(recs[2].reason, "catch_up");
    assert_eq!(recs[2].tick, Some(at(1, 0, 0)));
    assert_eq!(recs[2].outcome, Outcome::Succeeded);
    d.stop().await;
}

#[tokio::test]
async fn a_run_in_another_daemon_holds_the_job_until_its_lease_lapses() {
    let w = World::new(at(0, 0, 30));
    // Another daemon runs c-1 (tick 00:00) with a lease until 00:01:30, and dies.
    w.store.insert(RunRecord {
        started: at(0, 0, 30),
        lease_until: at(0, 1, 30),
        ..record("c", 1, Some(at(0, 0, 0)), Outcome::Running)
    });
    let d = w.daemon(vec![cron("c", "* * * * *")], "d1").await;
    assert_eq!(d.handle.jobs()[0].running.as_deref(), Some("c-1"));
    w.advance(Duration::from_secs(30)).await;
    assert_eq!(w.lab.count(), 0, "the 00:01 tick waits for the other run");
    w.walk(Duration::from_secs(31), SEC).await;
    let recs = w.records("c");
    assert_eq!(recs[0].outcome, Outcome::Abandoned);
    // One run owes both the abandoned 00:00 and the waiting 00:01.
    assert_eq!(
        (recs[1].reason.as_str(), recs[1].tick),
        ("catch_up", Some(at(0, 1, 0)))
    );
    assert_eq!(w.lab.count(), 1);
    w.advance(Duration::from_secs(29)).await;
    assert_eq!(w.records("c")[2].reason, "cron");
    d.stop().await;
}

#[tokio::test]
async fn leases_are_renewed_while_running() {
    let w = World::new(at(0, 0, 0));
    w.lab.set("j", Behave::Block);
    let d = w
        .daemon(vec![spec("j", "kind = \"test\"\nlease = \"30s\"")], "d1")
        .await;
    d.handle.trigger("j", "ann", BTreeMap::new()).await.unwrap();
    settle().await;
    assert_eq!(w.records("j")[0].lease_until, at(0, 0, 30));
    w.walk(Duration::from_secs(95), SEC).await;
    let r = &w.records("j")[0];
    assert_eq!(r.outcome, Outcome::Running);
    assert!(r.lease_until >= at(0, 1, 55), "{}", r.lease_until);
    w.lab.release(1);
    settle().await;
    assert_eq!(w.records("j")[0].outcome, Outcome::Succeeded);
    d.stop().await;
}

#[tokio::test]
async fn transient_errors_are_retried_with_backoff() {
    let w = World::new(at(0, 0, 0));
    w.lab.set("j", Behave::Transient(2));
    let d = w
        .daemon(vec![spec("j", "kind = \"test\"\nretries = 3")], "d1")
        .await;
    d.handle.trigger("j", "ann", BTreeMap::new()).await.unwrap();
    settle().await;
    assert_eq!(
        w.records("j")[0].outcome,
        Outcome::Running,
        "waiting out the backoff"
    );
    w.walk(Duration::from_secs(10), SEC).await;
    let r = &w.records("j")[0];
    assert_eq!((r.outcome, r.attempts), (Outcome::Succeeded, 3));
    // Exhausted: failed, but not paused.
    w.lab.set("j", Behave::Transient(5));
    d.handle.trigger("j", "ann", BTreeMap::new()).await.unwrap();
    w.walk(Duration::from_secs(10), SEC).await;
    let r = &w.records("j")[1];
    assert_eq!((r.outcome, r.attempts), (Outcome::Failed, 3));
    assert!(r
        .error
        .as_deref()
        .unwrap()
        .contains("gave up after 3 attempts"));
    assert!(!d.handle.jobs()[0].paused_by_error);
    d.stop().await;
}

#[tokio::test]
async fn a_definite_error_pauses_the_job_until_someone_acts() {
    let w = World::new(at(0, 0, 30));
    w.lab.set("c", Behave::Definite);
    let d = w.daemon(vec![cron("c", "* * * * *")], "d1").await;
    w.advance(Duration::from_secs(30)).await;
    let r = &w.records("c")[0];
    assert_eq!((r.outcome, r.attempts), (Outcome::Failed, 1));
    assert_eq!(
        r.error.as_deref().unwrap(),
        "table shop.nope does not exist; check the query; fix it, then trigger the job by hand (tidemark jobs run c) or change its config"
    );
    assert!(d.handle.jobs()[0].paused_by_error);
    w.walk(Duration::from_secs(180), MIN).await;
    assert_eq!(w.lab.count(), 1, "paused: ticks do not run it");
    d.stop().await;
    // Still paused after a restart.
    let d = w.daemon(vec![cron("c", "* * * * *")], "d1").await;
    w.walk(Duration::from_secs(120), MIN).await;
    assert_eq!(w.lab.count(), 1);
    // A manual trigger resumes it.
    w.lab.set("c", Behave::Ok);
    let id = d
        .handle
        .trigger("c", "ann", BTreeMap::from([("k".into(), "v".into())]))
        .await
        .unwrap();
    assert_eq!(id, "c-2");
    settle().await;
    assert_eq!(w.lab.ran("c")[1].params["k"], "v");
    assert!(!d.handle.jobs()[0].paused_by_error);
    w.advance(MIN).await;
    assert_eq!(w.lab.count(), 3);
    // Paused again, then a config change resumes it.
    w.lab.set("c", Behave::Definite);
    w.advance(MIN).await;
    assert!(d.handle.jobs()[0].paused_by_error);
    w.lab.set("c", Behave::Ok);
    d.handle
        .replace(vec![spec(
            "c",
            "kind = \"test\"\ncron = \"* * * * *\"\nretries = 2",
        )])
        .unwrap();
    settle().await;
    assert!(!d.handle.jobs()[0].paused_by_error);
    w.advance(MIN).await;
    assert_eq!(w.lab.count(), 5);
    d.stop().await;
}

#[tokio::test]
async fn a_panic_is_recorded_as_a_failure() {
    let w = World::new(at(0, 0, 0));
    w.lab.set("p", Behave::Panic);
    let d = w.daemon(vec![spec("p", "kind = \"test\"")], "d1").await;
    d.handle.trigger("p", "ann", BTreeMap::new()).await.unwrap();
    settle().await;
    let r = &w.records("p")[0];
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r
        .error
        .as_deref()
        .unwrap()
        .starts_with("the job panicked: boom"));
    assert!(!d.handle.jobs()[0].paused_by_error);
    d.stop().await;
}

#[tokio::test]
async fn manual_triggers_while_running_collapse_into_one() {
    let w = World::new(at(0, 0, 0));
    w.lab.set("j", Behave::Block);
    let d = w.daemon(vec![spec("j", "kind = \"test\"")], "d1").await;
    let mut events = d.handle.subscribe();
    assert_eq!(
        d.handle.trigger("j", "ann", BTreeMap::new()).await.unwrap(),
        "j-1"
    );
    for _ in 0..3 {
        assert_eq!(
            d.handle.trigger("j", "bob", BTreeMap::new()).await.unwrap(),
            QUEUED
        );
    }
    assert_eq!(
        d.handle.trigger("nope", "bob", BTreeMap::new()).await,
        Err(TriggerError::UnknownJob("nope".into()))
    );
    w.lab.release(2);
    settle().await;
    let runs = w.lab.ran("j");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].reason, Reason::Manual { by: "bob".into() });
    let mut seen = Vec::new();
    while let Ok(r) = events.try_recv() {
        seen.push((r.id, r.outcome));
    }
    assert_eq!(
        seen,
        [
            ("j-1".to_string(), Outcome::Running),
            ("j-1".to_string(), Outcome::Succeeded),
            ("j-2".to_string(), Outcome::Running),
            ("j-2".to_string(), Outcome::Succeeded)
        ]
    );
    assert_eq!(d.handle.run("j-2").unwrap().reason, "manual:bob");
    assert_eq!(d.handle.runs(None, 1)[0].id, "j-2");
    d.stop().await;
}

#[tokio::test]
async fn shutdown_cancels_runs_and_records_them() {
    let w = World::new(at(0, 0, 30));
    w.lab.set("c", Behave::Block);
    let d = w.daemon(vec![cron("c", "* * * * *")], "d1").await;
    w.advance(Duration::from_secs(30)).await;
    assert_eq!(w.records("c")[0].outcome, Outcome::Running);
    d.stop().await;
    let r = &w.records("c")[0];
    assert_eq!(r.outcome, Outcome::Abandoned);
    assert!(r.error.as_deref().unwrap().starts_with("cancelled"));
    // Its tick was not consumed: the next start catches it up.
    w.lab.set("c", Behave::Ok);
    w.clock.set(at(0, 1, 10));
    let d = w.daemon(vec![cron("c", "* * * * *")], "d1").await;
    assert_eq!(w.records("c")[1].tick, Some(at(0, 1, 0)));
    assert_eq!(w.records("c")[1].reason, "catch_up");
    d.stop().await;
}

#[tokio::test]
async fn replace_validates_first_and_cancels_removed_jobs() {
    let w = World::new(at(0, 0, 0));
    w.lab.set("gone", Behave::Block);
    let d = w
        .daemon(
            vec![
                spec("gone", "kind = \"test\""),
                spec("stay", "kind = \"test\""),
            ],
            "d1",
        )
        .await;
    d.handle
        .trigger("gone", "ann", BTreeMap::new())
        .await
        .unwrap();
    settle().await;
    let e = d
        .handle
        .replace(vec![spec("stay", "kind = \"nope\"")])
        .unwrap_err();
    assert!(e.to_string().contains("kind \"nope\" is not known"));
    assert_eq!(d.handle.jobs().len(), 2, "the old specs stay");
    d.handle
        .replace(vec![
            spec("stay", "kind = \"test\""),
            cron("new", "0 * * * *"),
        ])
        .unwrap();
    settle().await;
    let names: Vec<_> = d.handle.jobs().into_iter().map(|j| j.name).collect();
    assert_eq!(names, ["new", "stay"]);
    assert_eq!(w.records("gone")[0].outcome, Outcome::Abandoned);
    assert_eq!(d.handle.jobs()[0].next_due, Some(at(1, 0, 0)));
    d.stop().await;
}

/// The benchmark shape: a thousand idle cron jobs are one sleeping loop.
#[tokio::test]
async fn a_thousand_idle_cron_jobs() {
    let w = World::new(at(0, 0, 0));
    let specs: Vec<_> = (0..1000)
        .map(|i| cron(&format!("job{i:04}"), &format!("{} 3 * * *", i % 60)))
        .collect();
    let started = std::time::Instant::now();
    let d = w.daemon(specs, "d1").await;
    assert_eq!(w.clock.next_wake(), Some(at(3, 0, 0)));
    assert_eq!(d.handle.jobs().len(), 1000);
    w.clock.set(at(3, 0, 0));
    settle().await;
    assert_eq!(w.lab.count(), 17, "jobs 0, 60, 120, ... tick at 03:00");
    w.clock.set(at(3, 59, 0));
    for _ in 0..20 {
        settle().await;
    }
    assert_eq!(w.lab.count(), 1000);
    assert_eq!(
        w.clock.next_wake(),
        Some(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2024, 1, 2, 3, 0, 0).unwrap())
    );
    eprintln!(
        "1000 jobs scheduled and run once in {:?}",
        started.elapsed()
    );
    d.stop().await;
}
