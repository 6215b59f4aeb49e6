mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::*;
use tidemark_scheduler::*;

fn table(s: &str) -> toml::Table {
    toml::from_str(s).unwrap()
}

fn err(s: &str) -> String {
    JobSpec::from_toml("nightly", &table(s))
        .unwrap_err()
        .to_string()
}

#[test]
fn parses_every_key() {
    let s = spec(
        "nightly",
        r#"
        kind = "sql"
        cron = "0 3 * * *"
        timezone = "Europe/Paris"
        every = "15m"
        on = "new_data"
        inputs = ["shop.orders", "shop.customers"]
        debounce = "5s"
        freshness = "1m"
        after = ["a", "b"]
        catch_up = "skip"
        retries = 5
        retry_backoff = "2s"
        lease = "30s"
        query = "select 1"
        "#,
    );
    assert_eq!(s.kind, "sql");
    assert_eq!(s.catch_up, CatchUp::Skip);
    assert_eq!(s.retry.max_attempts, 5);
    assert_eq!(s.retry.initial_backoff, Duration::from_secs(2));
    assert_eq!(s.lease, Duration::from_secs(30));
    assert_eq!(s.params.keys().collect::<Vec<_>>(), ["query"]);
    assert_eq!(s.triggers.len(), 4);
    assert!(matches!(&s.triggers[0], Trigger::Cron { tz, .. } if *tz == chrono_tz::Europe::Paris));
    assert_eq!(s.triggers[1], Trigger::Every(Duration::from_secs(900)));
    assert_eq!(
        s.triggers[2],
        Trigger::NewData {
            inputs: vec!["shop.orders".into(), "shop.customers".into()],
            debounce: Duration::from_secs(5),
            freshness: Some(Duration::from_secs(60)),
        }
    );
    assert_eq!(s.triggers[3], Trigger::After(vec!["a".into(), "b".into()]));
}

#[test]
fn defaults_and_manual_only() {
    let s = spec("m", r#"kind = "sql""#);
    assert!(s.triggers.is_empty());
    assert_eq!(s.catch_up, CatchUp::Once);
    assert_eq!(s.retry, RetryPolicy::default());
    assert_eq!(s.lease, Duration::from_secs(60));
    let s = spec("d", "kind = \"sql\"\non = \"new_data\"\ninputs = [\"t\"]");
    assert!(
        matches!(&s.triggers[0], Trigger::NewData { debounce, freshness: None, .. } if *debounce == Duration::from_secs(1))
    );
    // Six fields: seconds first.
    spec("s", "kind = \"sql\"\ncron = \"*/10 * * * * *\"");
}

#[test]
fn errors_name_the_job_and_say_what_to_write() {
    let e = err("kind = \"sql\"\ncron = \"0 3 * *\"");
    assert!(e.starts_with("job nightly: cron \"0 3 * *\": "), "{e}");
    assert!(
        e.ends_with("write five or six fields, e.g. \"0 3 * * *\""),
        "{e}"
    );
    let e = err("kind = \"sql\"\ncron = \"0 3 * * *\"\ntimezone = \"Mars/Olympus\"");
    assert!(
        e.contains("timezone \"Mars/Olympus\" is not a known time zone"),
        "{e}"
    );
    let e = err("kind = \"sql\"\non = \"commit\"");
    assert!(
        e.contains("on = \"commit\" is not a trigger; write on = \"new_data\""),
        "{e}"
    );
    let e = err("kind = \"sql\"\non = \"new_data\"");
    assert!(e.contains("inputs = [\"shop.orders\"]"), "{e}");
    let e = err("cron = \"0 3 * * *\"");
    assert_eq!(e, "job nightly: kind is missing; write e.g. kind = \"sql\"");
    let e = err("kind = \"sql\"\nevery = \"soon\"");
    assert!(e.contains("every \"soon\""), "{e}");
    let e = err("kind = \"sql\"\ncatch_up = \"all\"");
    assert!(e.contains("catch_up = \"once\" or \"skip\""), "{e}");
    let e = err("kind = \"sql\"\nretries = 0");
    assert!(e.contains("retries"), "{e}");
    let e = err("kind = \"sql\"\ninputs = [\"t\"]");
    assert!(
        e.contains("inputs applies to on = \"new_data\" only"),
        "{e}"
    );
}

#[test]
fn parse_jobs_checks_kinds_after_and_cycles() {
    let lab = Lab::default();
    let reg = lab.registry();
    let jobs = |entries: &[(&str, &str)]| -> BTreeMap<String, toml::Table> {
        entries
            .iter()
            .map(|(n, t)| (n.to_string(), table(t)))
            .collect()
    };
    let ok = parse_jobs(
        &jobs(&[
            ("a", "kind = \"test\""),
            ("b", "kind = \"test\"\nafter = [\"a\"]"),
        ]),
        &reg,
    )
    .unwrap();
    assert_eq!(ok.len(), 2);

    let e = parse_jobs(&jobs(&[("a", "kind = \"dbt\"")]), &reg)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "job a: kind \"dbt\" is not known; the kinds are: test");

    let e = parse_jobs(&jobs(&[("b", "kind = \"test\"\nafter = [\"zz\"]")]), &reg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("after names \"zz\", which is not a job"), "{e}");

    let e = parse_jobs(
        &jobs(&[
            ("a", "kind = \"test\"\nafter = [\"c\"]"),
            ("b", "kind = \"test\"\nafter = [\"a\"]"),
            ("c", "kind = \"test\"\nafter = [\"b\"]"),
        ]),
        &reg,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("after forms a cycle: a -> c -> b -> a"), "{e}");
}

#[test]
fn cron_ticks_follow_the_time_zone_across_dst() {
    let s = spec(
        "n",
        "kind = \"sql\"\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Paris\"",
    );
    // Paris is UTC+1 before 2024-03-31 and UTC+2 after.
    let before = s
        .next_tick_after(Utc.with_ymd_and_hms(2024, 3, 29, 12, 0, 0).unwrap())
        .unwrap();
    assert_eq!(before, Utc.with_ymd_and_hms(2024, 3, 30, 2, 0, 0).unwrap());
    let after = s.next_tick_after(before).unwrap();
    assert_eq!(after, Utc.with_ymd_and_hms(2024, 3, 31, 1, 0, 0).unwrap());
    let every = spec("e", "kind = \"sql\"\nevery = \"15m\"");
    assert_eq!(every.next_tick_after(at(1, 0, 0)), Some(at(1, 15, 0)));
}

#[test]
fn reason_round_trips_through_its_short_form() {
    for r in [
        Reason::Cron { tick: at(3, 0, 0) },
        Reason::CatchUp { tick: at(3, 0, 0) },
        Reason::Every { tick: at(3, 0, 0) },
        Reason::NewData,
        Reason::After { job: "a".into() },
        Reason::Manual { by: "ann".into() },
    ] {
        assert_eq!(
            Reason::from_record(&r.to_string(), r.tick()),
            Some(r.clone())
        );
    }
    assert_eq!(
        Reason::Manual { by: "ann".into() }.to_string(),
        "manual:ann"
    );
}
