//! Migrations between backends on a live gateway, driven by `hermes migrate` while clients keep
//! sending requests: none of them may fail, and traffic must end up where the plan says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{chat_body, duck, hermes_once, post_json, Hermes};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BACKENDS: &[(&str, &str)] = &[
    ("HERMES_BACKENDS_ENABLED", "old,new,flaky"),
    ("BACKEND_OLD_TYPE", "sim"),
    ("BACKEND_OLD_MODELS", "old-model"),
    ("BACKEND_OLD_LATENCY_MS", "2"),
    ("BACKEND_OLD_TOKENS_PER_SECOND", "0"),
    ("BACKEND_NEW_TYPE", "sim"),
    ("BACKEND_NEW_MODELS", "new-model"),
    ("BACKEND_NEW_LATENCY_MS", "2"),
    ("BACKEND_NEW_TOKENS_PER_SECOND", "0"),
    // Fails every request: a migration to it must stop at its first check.
    ("BACKEND_FLAKY_TYPE", "sim"),
    ("BACKEND_FLAKY_MODELS", "flaky-model"),
    ("BACKEND_FLAKY_LATENCY_MS", "2"),
    ("BACKEND_FLAKY_TOKENS_PER_SECOND", "0"),
    ("BACKEND_FLAKY_FAILURE_RATE", "1.0"),
    ("HERMES_UNHEALTHY_THRESHOLD", "100000"),
    ("HERMES_FAILOVER_DELAY_SECONDS", "0"),
];

/// Clients sending requests until stopped; every (when sent, status, backend) they saw, in order.
struct Clients {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, u16, String)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Clients {
    fn start(url: String) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..2)
            .map(|_| {
                let (stop, seen, url) = (stop.clone(), seen.clone(), url.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let r = post_json(&url, None, &chat_body("auto", "Summarise the quarterly figures"));
                        let backend = r.header("x-hermes-backend").unwrap_or("none").to_string();
                        seen.lock().unwrap().push((sent, r.status, backend));
                    }
                })
            })
            .collect();
        Clients { stop, seen, threads }
    }

    fn all(&self) -> Vec<(u16, String)> {
        self.seen.lock().unwrap().iter().map(|(_, s, b)| (*s, b.clone())).collect()
    }

    /// Requests sent after `t`. (Not those that finished after it: a client may hear an answer
    /// after a command returned that the gateway gave before.)
    fn sent_after(&self, t: Instant) -> Vec<(u16, String)> {
        self.seen.lock().unwrap().iter().filter(|(sent, _, _)| *sent >= t).map(|(_, s, b)| (*s, b.clone())).collect()
    }

    /// Waits until requests sent after `t` have come back, then returns them.
    fn settled_after(&self, t: Instant) -> Vec<(u16, String)> {
        settle();
        self.sent_after(t)
    }

    fn finish(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap().into_iter().map(|(_, s, b)| (s, b)).collect()
    }
}

fn on(seen: &[(u16, String)], backend: &str) -> usize {
    seen.iter().filter(|(_, b)| b == backend).count()
}

fn migrate(h: &Hermes, args: &[&str]) -> (bool, String) {
    let url = h.url();
    let mut full: Vec<&str> = vec!["migrate"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--url", &url]);
    let out = hermes_once(BACKENDS, &full);
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn settle() {
    std::thread::sleep(Duration::from_millis(400));
}

#[test]
fn gradual_migration_and_rollback_on_a_live_gateway_lose_no_request() {
    // The plan, for this configuration.
    let plan = hermes_once(BACKENDS, &["migrate", "plan", "--from", "old", "--to", "new", "--strategy", "gradual_migration"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{text}{}", String::from_utf8_lossy(&plan.stderr));
    for action in [
        "enable_parallel_backends",
        "route_10_percent_to_new",
        "monitor_and_validate",
        "increase_traffic_50_percent",
        "complete_cutover",
        "disable_old_backend",
    ] {
        assert!(text.contains(action), "{text}");
    }
    assert!(text.contains("sim") && text.contains("old-model"), "{text}");
    let bad = hermes_once(BACKENDS, &["migrate", "plan", "--from", "old", "--to", "nowhere", "--strategy", "gradual_migration"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("'nowhere' is not an enabled backend"));

    let env: Vec<(&str, String)> = BACKENDS.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let mut h = Hermes::start(&env, &[]);
    let clients = Clients::start(format!("{}/v1/chat/completions", h.url()));
    settle();
    let before = clients.all();
    assert!(!before.is_empty() && on(&before, "old") == before.len(), "before: everything on old");

    // Gradual: 10%, 50%, 100% with checks between, then old drained.
    let (ok, out) = migrate(&h, &["apply", "--from", "old", "--to", "new", "--strategy", "gradual_migration", "--stage-seconds", "1"]);
    assert!(ok, "{out}");
    assert_eq!(out.matches("passed").count(), 2, "{out}");
    // Once the command says done, nothing is under way at old, and nothing new reaches it.
    let state = common::curl(&[&format!("{}/admin/migration", h.url())]);
    assert_eq!(state.json()["in_flight"]["old"], 0, "under way at old when the command said done: {}", state.body);
    let after = clients.settled_after(Instant::now());
    assert!(!after.is_empty() && on(&after, "new") == after.len(), "after: everything on new: {after:?}");

    // Rollback: routing is as configured again.
    let (ok, out) = migrate(&h, &["rollback"]);
    assert!(ok && out.contains("rolled back"), "{out}");
    let back = clients.settled_after(Instant::now());
    assert!(!back.is_empty() && on(&back, "old") == back.len(), "after rollback: back on old: {back:?}");

    // A migration to a backend that fails stops at its first check and rolls back by itself.
    let (ok, out) = migrate(&h, &["apply", "--from", "old", "--to", "flaky", "--strategy", "gradual_migration", "--stage-seconds", "1"]);
    assert!(!ok && out.contains("error rate") && out.contains("rolled back"), "{out}");

    // Cutover: old drained, its in-flight work finished, new primary.
    let (ok, out) = migrate(&h, &["apply", "--from", "old", "--to", "new", "--strategy", "immediate_cutover", "--stage-seconds", "0.5"]);
    assert!(ok && out.contains("wait_for_current_jobs_completion") && out.contains("passed"), "{out}");
    assert_eq!(on(&clients.settled_after(Instant::now()), "old"), 0, "after cutover nothing reaches old");

    // Parallel testing: the shadow gets copies, clients keep getting the configured answers.
    assert!(migrate(&h, &["rollback"]).0);
    let (ok, out) = migrate(&h, &["apply", "--from", "old", "--to", "new", "--strategy", "parallel_testing", "--stage-seconds", "1"]);
    assert!(ok && out.contains("shadowed, 0 errors"), "{out}");

    let seen = clients.finish();
    let failed: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "{} of {} client requests failed: {:?}", failed.len(), seen.len(), &failed[..failed.len().min(5)]);
    assert!(on(&seen, "flaky") == 0, "no client ever got an answer from the failing backend");

    // Every step is in the analytics file.
    h.stop();
    let q = duck(
        &h.db(),
        &[
            "SELECT strategy, to_backend, count(*) FILTER (WHERE action <> 'rollback'), count(*) FILTER (WHERE outcome = 'passed'), count(*) FILTER (WHERE outcome = 'failed') FROM migration_steps WHERE strategy <> '' GROUP BY ALL ORDER BY ALL",
            "SELECT count(*) FROM migration_steps WHERE action = 'rollback'",
            "SELECT steering FROM migration_steps WHERE action = 'route_10_percent_to_new' AND to_backend = 'new'",
        ],
    );
    assert_eq!(
        q[0],
        vec![
            serde_json::json!(["gradual_migration", "flaky", 3, 0, 1]),
            serde_json::json!(["gradual_migration", "new", 8, 2, 0]),
            serde_json::json!(["immediate_cutover", "new", 5, 1, 0]),
            serde_json::json!(["parallel_testing", "new", 3, 0, 0]),
        ]
    );
    assert_eq!(q[1][0][0], 3, "two rollbacks asked for, one after the failed check");
    assert!(q[2][0][0].as_str().unwrap().contains("\"new\":0.1"), "{:?}", q[2]);
}

#[test]
fn a_stage_is_judged_on_what_it_saw_not_on_the_backends_history() {
    let env: Vec<(&str, String)> = BACKENDS.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let h = Hermes::start(&env, &[]);
    let clients = Clients::start(format!("{}/v1/chat/completions", h.url()));
    settle();
    // `new` earns a long, clean history.
    let (ok, out) = migrate(&h, &["apply", "--from", "old", "--to", "new", "--strategy", "gradual_migration", "--stage-seconds", "1"]);
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(migrate(&h, &["rollback"]).0);
    // Then it degrades: most of its answers fail from now on (.env is read on reload).
    std::fs::write(h.dir.join(".env"), "BACKEND_NEW_FAILURE_RATE=0.7\n").unwrap();
    let r = common::curl(&["-X", "POST", &format!("{}/admin/reload", h.url())]);
    assert_eq!(r.status, 200, "{}", r.body);
    let (ok, out) = migrate(&h, &["apply", "--from", "old", "--to", "new", "--strategy", "gradual_migration", "--stage-seconds", "1"]);
    assert!(!ok && out.contains("error rate") && out.contains("rolled back"), "a stage where new failed most answers does not pass on its history: {out}");
    let seen = clients.finish();
    assert!(seen.iter().all(|(s, _)| *s == 200), "failover kept every client answered");
}
