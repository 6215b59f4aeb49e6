//! `[jobs.NAME]` tables: when a job runs, how it retries, and the kind's own settings.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use croner::Cron;

use crate::clock::plus;
use crate::job::Registry;

/// A configuration problem, naming the job and saying what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job}: {message}")]
pub struct ConfigError {
    pub job: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(job: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            job: job.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Ticks missed while no daemon ran are dropped.
    Skip,
    /// Ticks missed while no daemon ran become one run, for the latest of them.
    #[default]
    Once,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

// A job has a handful of triggers; boxing the parsed cron would only cost its users
// a deref.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Cron {
        expr: String,
        schedule: Cron,
        tz: chrono_tz::Tz,
    },
    Every(Duration),
    NewData {
        inputs: Vec<String>,
        debounce: Duration,
        freshness: Option<Duration>,
    },
    After(Vec<String>),
}

impl Trigger {
    /// The first tick strictly after `t`, for cron and every triggers.
    pub fn next_tick_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Trigger::Cron { schedule, tz, .. } => schedule
                .find_next_occurrence(&t.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Trigger::Every(d) => Some(plus(t, *d)),
            _ => None,
        }
    }

    /// The latest tick in `[from, now]`, given that `from` is a tick (for `every`, the
    /// grid is anchored at `from`).
    fn latest_tick(&self, from: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if from > now {
            return None;
        }
        match self {
            Trigger::Cron { schedule, tz, .. } => schedule
                .find_previous_occurrence(&now.with_timezone(tz), true)
                .ok()
                .map(|t| t.with_timezone(&Utc))
                .filter(|t| *t >= from),
            Trigger::Every(d) => {
                let step = TimeDelta::from_std(*d).ok()?;
                let steps = (now - from).num_milliseconds() / step.num_milliseconds().max(1);
                i32::try_from(steps)
                    .ok()
                    .and_then(|n| from.checked_add_signed(step * n))
                    .or(Some(from))
            }
            _ => None,
        }
    }

    /// For `jobs()` and logs.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Cron { expr, tz, .. } => format!("cron \"{expr}\" ({tz})"),
            Trigger::Every(d) => format!("every {}", humantime::format_duration(*d)),
            Trigger::NewData {
                inputs,
                debounce,
                freshness,
            } => {
                let mut s = format!(
                    "new data in {} (debounce {}",
                    inputs.join(", "),
                    humantime::format_duration(*debounce)
                );
                if let Some(f) = freshness {
                    s.push_str(&format!(", freshness {}", humantime::format_duration(*f)));
                }
                s.push(')');
                s
            }
            Trigger::After(jobs) => format!("after {}", jobs.join(", ")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub kind: String,
    pub triggers: Vec<Trigger>,
    pub catch_up: CatchUp,
    pub retry: RetryPolicy,
    pub lease: Duration,
    /// Every key the scheduler does not know, for the job's kind.
    pub params: toml::Table,
}

const KNOWN_KEYS: &[&str] = &[
    "kind",
    "cron",
    "timezone",
    "every",
    "on",
    "inputs",
    "debounce",
    "freshness",
    "after",
    "catch_up",
    "retries",
    "retry_backoff",
    "retry_max_backoff",
    "lease",
];

fn string<'a>(
    job: &str,
    table: &'a toml::Table,
    key: &str,
    example: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ConfigError::new(
            job,
            format!(
                "{key} must be a string, not {}; write e.g. {key} = {example}",
                other.type_str()
            ),
        )),
    }
}

fn strings(
    job: &str,
    table: &toml::Table,
    key: &str,
    example: &str,
) -> Result<Option<Vec<String>>, ConfigError> {
    let wrong = || {
        ConfigError::new(
            job,
            format!("{key} must be a list of names; write e.g. {key} = {example}"),
        )
    };
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(wrong))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong()),
    }
}

fn duration(
    job: &str,
    table: &toml::Table,
    key: &str,
    example: &str,
) -> Result<Option<Duration>, ConfigError> {
    let Some(s) = string(job, table, key, example)? else {
        return Ok(None);
    };
    match humantime::parse_duration(s) {
        Ok(d) => Ok(Some(d)),
        Err(e) => Err(ConfigError::new(
            job,
            format!("{key} \"{s}\": {e}; write a duration, e.g. {key} = {example}"),
        )),
    }
}

impl JobSpec {
    /// Parses a `[jobs.NAME]` table. Kinds, `after` names and cycles are checked by
    /// [`parse_jobs`] / [`validate`], which see all jobs.
    pub fn from_toml(name: &str, table: &toml::Table) -> Result<JobSpec, ConfigError> {
        let job = name;
        let kind = string(job, table, "kind", "\"sql\"")?
            .ok_or_else(|| ConfigError::new(job, "kind is missing; write e.g. kind = \"sql\""))?
            .to_string();
        let mut triggers = Vec::new();

        let timezone = string(job, table, "timezone", "\"Europe/Paris\"")?;
        if let Some(expr) = string(job, table, "cron", "\"0 3 * * *\"")? {
            let schedule: Cron = expr.parse().map_err(|e| {
                ConfigError::new(
                    job,
                    format!("cron \"{expr}\": {e}; write five or six fields, e.g. \"0 3 * * *\""),
                )
            })?;
            let tz = match timezone {
                None => chrono_tz::UTC,
                Some(tz) => tz.parse().map_err(|_| {
                    ConfigError::new(
                        job,
                        format!("timezone \"{tz}\" is not a known time zone; write an IANA name, e.g. timezone = \"Europe/Paris\""),
                    )
                })?,
            };
            // Patterns that never match fail here rather than silently never running.
            if schedule
                .find_next_occurrence(&Utc::now().with_timezone(&tz), false)
                .is_err()
            {
                return Err(ConfigError::new(
                    job,
                    format!("cron \"{expr}\" never matches a date; check day and month fields"),
                ));
            }
            triggers.push(Trigger::Cron {
                expr: expr.to_string(),
                schedule,
                tz,
            });
        } else if timezone.is_some() {
            return Err(ConfigError::new(
                job,
                "timezone applies to cron only; add cron = \"...\" or remove timezone",
            ));
        }

        if let Some(d) = duration(job, table, "every", "\"15m\"")? {
            if d.is_zero() {
                return Err(ConfigError::new(
                    job,
                    "every must be longer than zero; write e.g. every = \"15m\"",
                ));
            }
            triggers.push(Trigger::Every(d));
        }

        let inputs = strings(job, table, "inputs", "[\"shop.orders\"]")?;
        let debounce = duration(job, table, "debounce", "\"5s\"")?;
        let freshness = duration(job, table, "freshness", "\"1m\"")?;
        match string(job, table, "on", "\"new_data\"")? {
            Some("new_data") => {
                let inputs = inputs.filter(|i| !i.is_empty()).ok_or_else(|| {
                    ConfigError::new(job, "on = \"new_data\" needs the tables to watch; write e.g. inputs = [\"shop.orders\"]")
                })?;
                triggers.push(Trigger::NewData {
                    inputs,
                    debounce: debounce.unwrap_or(Duration::from_secs(1)),
                    freshness,
                });
            }
            Some(other) => {
                return Err(ConfigError::new(job, format!("on = \"{other}\" is not a trigger; write on = \"new_data\" (with inputs = [...]), or use cron, every or after")));
            }
            None => {
                for (key, set) in [
                    ("inputs", inputs.is_some()),
                    ("debounce", debounce.is_some()),
                    ("freshness", freshness.is_some()),
                ] {
                    if set {
                        return Err(ConfigError::new(
                            job,
                            format!(
                                "{key} applies to on = \"new_data\" only; add it or remove {key}"
                            ),
                        ));
                    }
                }
            }
        }

        if let Some(after) = strings(job, table, "after", "[\"job_a\"]")? {
            if after.is_empty() {
                return Err(ConfigError::new(
                    job,
                    "after is empty; name the jobs to follow, e.g. after = [\"job_a\"]",
                ));
            }
            triggers.push(Trigger::After(after));
        }

        let catch_up = match string(job, table, "catch_up", "\"once\"")? {
            None | Some("once") => CatchUp::Once,
            Some("skip") => CatchUp::Skip,
            Some(other) => {
                return Err(ConfigError::new(
                    job,
                    format!("catch_up = \"{other}\"; write catch_up = \"once\" or \"skip\""),
                ));
            }
        };

        let mut retry = RetryPolicy::default();
        match table.get("retries") {
            None => {}
            Some(toml::Value::Integer(n)) if *n >= 1 && *n <= 1000 => {
                retry.max_attempts = *n as u32
            }
            Some(_) => {
                return Err(ConfigError::new(job, "retries is the number of attempts, 1 to 1000 (1 = no retry); write e.g. retries = 3"));
            }
        }
        if let Some(d) = duration(job, table, "retry_backoff", "\"1s\"")? {
            retry.initial_backoff = d;
        }
        if let Some(d) = duration(job, table, "retry_max_backoff", "\"60s\"")? {
            retry.max_backoff = d;
        }
        retry.max_backoff = retry.max_backoff.max(retry.initial_backoff);

        let lease = duration(job, table, "lease", "\"60s\"")?.unwrap_or(Duration::from_secs(60));
        if lease < Duration::from_secs(1) {
            return Err(ConfigError::new(
                job,
                "lease must be at least 1s; write e.g. lease = \"60s\"",
            ));
        }

        let params = table
            .iter()
            .filter(|(k, _)| !KNOWN_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        Ok(JobSpec {
            name: name.to_string(),
            kind,
            triggers,
            catch_up,
            retry,
            lease,
            params,
        })
    }

    pub fn after(&self) -> impl Iterator<Item = &String> {
        self.triggers.iter().flat_map(|t| match t {
            Trigger::After(jobs) => jobs.as_slice(),
            _ => &[],
        })
    }

    pub fn new_data_inputs(&self) -> Vec<String> {
        let mut all = BTreeSet::new();
        for t in &self.triggers {
            if let Trigger::NewData { inputs, .. } = t {
                all.extend(inputs.iter().cloned());
            }
        }
        all.into_iter().collect()
    }

    pub(crate) fn has_ticks(&self) -> bool {
        self.triggers
            .iter()
            .any(|t| matches!(t, Trigger::Cron { .. } | Trigger::Every(_)))
    }

    /// The first cron/every tick strictly after `t`.
    pub fn next_tick_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.triggers
            .iter()
            .filter_map(|tr| tr.next_tick_after(t))
            .min()
    }

    /// The latest tick in `[from, now]` (`from` being a tick).
    pub(crate) fn latest_tick(
        &self,
        from: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.triggers
            .iter()
            .filter_map(|tr| tr.latest_tick(from, now))
            .max()
    }

    pub(crate) fn is_cron_tick(&self, tick: DateTime<Utc>) -> bool {
        self.triggers.iter().any(|t| match t {
            Trigger::Cron { schedule, tz, .. } => schedule
                .is_time_matching(&tick.with_timezone(tz))
                .unwrap_or(false),
            _ => false,
        })
    }
}

/// Parses every `[jobs.*]` table and checks them together.
pub fn parse_jobs(
    jobs: &BTreeMap<String, toml::Table>,
    registry: &Registry,
) -> Result<Vec<JobSpec>, ConfigError> {
    let specs = jobs
        .iter()
        .map(|(name, table)| JobSpec::from_toml(name, table))
        .collect::<Result<Vec<_>, _>>()?;
    validate(&specs, registry)?;
    Ok(specs)
}

/// Checks what needs all jobs at once: unique names, registered kinds, `after`
/// naming existing jobs, and no `after` cycle.
pub fn validate(specs: &[JobSpec], registry: &Registry) -> Result<(), ConfigError> {
    let mut by_name = BTreeMap::new();
    for spec in specs {
        if by_name.insert(spec.name.as_str(), spec).is_some() {
            return Err(ConfigError::new(
                &spec.name,
                "defined twice; give each job its own name",
            ));
        }
    }
    for spec in specs {
        if registry.get(&spec.kind).is_none() {
            return Err(ConfigError::new(
                &spec.name,
                format!(
                    "kind \"{}\" is not known; the kinds are: {}",
                    spec.kind,
                    registry.kinds().join(", ")
                ),
            ));
        }
        for up in spec.after() {
            if !by_name.contains_key(up.as_str()) {
                return Err(ConfigError::new(
                    &spec.name,
                    format!(
                        "after names \"{up}\", which is not a job; the jobs are: {}",
                        by_name.keys().copied().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    // Depth-first search for a cycle, reporting its path.
    fn visit<'a>(
        name: &'a str,
        by_name: &BTreeMap<&'a str, &'a JobSpec>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Result<(), ConfigError> {
        if let Some(pos) = path.iter().position(|p| *p == name) {
            let mut cycle: Vec<&str> = path[pos..].to_vec();
            cycle.push(name);
            return Err(ConfigError::new(
                name,
                format!(
                    "after forms a cycle: {}; remove one of these after entries",
                    cycle.join(" -> ")
                ),
            ));
        }
        if done.contains(name) {
            return Ok(());
        }
        path.push(name);
        if let Some(spec) = by_name.get(name) {
            for up in spec.after() {
                visit(up, by_name, path, done)?;
            }
        }
        path.pop();
        done.insert(name);
        Ok(())
    }
    let mut done = BTreeSet::new();
    for name in by_name.keys() {
        visit(name, &by_name, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}
