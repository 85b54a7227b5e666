//! Several replicas sharing one Redis (HERMES_REDIS_URL), end to end: three `hermes serve`, each
//! with its own port and analytics file, and a real `redis-server` per test. A key's requests
//! per minute and its budget hold over the three together (no overshoot under 40 concurrent
//! requests, and every replica reports the same spend: the sum of `x-hermes-cost-cents`); a
//! revocation on one replica refuses on the others within two seconds; ratings posted to one
//! replica for answers another gave move routing on the third; Redis killed under traffic in
//! fail-open mode costs no answer and no wait, and once it is back (empty) keys, limits and spend
//! are shared again; in fail-closed mode keyed requests are refused (503
//! `shared_state_unavailable`) while static keys go on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::keys::{admin_reply, ask, cost, create_key, gateway, hermes_cli, spent_cents, STATIC, UPSTREAM};
use common::mock::{MockUpstream, Mode};
use common::mock_ollama::MockOllama;
use common::redis::RedisServer;
use common::{chat_body, curl, duck, env_of, eventually, post_json, scratch_dir, sim_backend, CurlReply, Hermes};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// HERMES_REDIS_TIMEOUT_MS where the tests count: generous, because on a loaded machine a 50 ms
/// call may miss, and a replica that misses counts alone for a moment (right in fail-open mode,
/// but not what these tests measure).
const COUNTING_TIMEOUT_MS: u64 = 1000;
/// Where Redis is taken away: short, since a request may wait this long on it once.
const OUTAGE_TIMEOUT_MS: u64 = 250;

/// The variables that make a gateway one of several replicas sharing `redis`.
fn shared(redis: &RedisServer, fail_mode: &str, timeout_ms: u64) -> Vec<(&'static str, String)> {
    vec![("HERMES_REDIS_URL", redis.url()), ("HERMES_REDIS_FAIL_MODE", fail_mode.to_string()), ("HERMES_REDIS_TIMEOUT_MS", timeout_ms.to_string())]
}

/// Three replicas of the virtual-key tests' gateway (`common::keys::gateway`) sharing `redis`;
/// the harness gives each its own port and folder, so its own analytics file.
fn replicas(redis: &RedisServer, paid: &MockUpstream, home: &MockOllama, fail_mode: &str, timeout_ms: u64) -> Vec<Hermes> {
    let env = shared(redis, fail_mode, timeout_ms);
    (0..3).map(|_| gateway(paid, home, &env)).collect()
}

/// `n` requests at once, one thread each: `f(i)` makes the i-th.
fn at_once(n: usize, f: impl Fn(usize) -> CurlReply + Sync) -> Vec<CurlReply> {
    std::thread::scope(|s| {
        let f = &f;
        let threads: Vec<_> = (0..n).map(|i| s.spawn(move || f(i))).collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// How many replies had each status, for messages.
fn tally<'a>(replies: impl IntoIterator<Item = &'a CurlReply>) -> BTreeMap<u16, usize> {
    let mut t = BTreeMap::new();
    for r in replies {
        *t.entry(r.status).or_default() += 1;
    }
    t
}

#[test]
fn a_keys_requests_and_tokens_per_minute_hold_across_three_replicas() {
    let redis = RedisServer::start();
    let paid = MockUpstream::start("paid", Mode::Ok { gap: Duration::ZERO });
    let home = MockOllama::start();
    let hs = replicas(&redis, &paid, &home, "open", COUNTING_TIMEOUT_MS);
    let key = create_key(&hs[0], &["--name", "rpm30", "--rpm", "30"]);
    let first = Instant::now();

    // Every request with the key counts, the probes that wait for replicas 1 and 2 to know it
    // too (a 401 is refused before anything is counted).
    let mut sent: Vec<(usize, CurlReply)> = Vec::new();
    for (i, h) in hs.iter().enumerate().skip(1) {
        let known = eventually(Duration::from_secs(5), || {
            let r = ask(h, &key, "paid-model", &[]);
            let known = r.status != 401;
            sent.push((i, r));
            known
        });
        let last = &sent.last().unwrap().1;
        assert!(known.is_some(), "replica {i} still refuses a key made on replica 0: {} {}", last.status, last.body);
    }
    // Then 45 at once, round robin over the three.
    let burst = at_once(45, |n| ask(&hs[n % 3], &key, "paid-model", &[]));
    let elapsed = first.elapsed();
    sent.extend(burst.into_iter().enumerate().map(|(n, r)| (n % 3, r)));

    let counted: Vec<&(usize, CurlReply)> = sent.iter().filter(|(_, r)| r.status != 401).collect();
    let per_replica: Vec<BTreeMap<u16, usize>> = (0..3).map(|i| tally(sent.iter().filter(|(j, _)| *j == i).map(|(_, r)| r))).collect();
    let answered = counted.iter().filter(|(_, r)| r.status == 200).count();
    // The whole minute may go at once, then one more every 2 s: exactly 30 unless this took longer.
    let refill = (elapsed.as_secs_f64() / 2.0).floor() as usize;
    assert!(
        (30..=30 + refill).contains(&answered),
        "{answered} of {} counted requests answered in {elapsed:?} under 30 a minute over three replicas (statuses on replicas 0, 1, 2: {per_replica:?})",
        counted.len()
    );
    for (i, r) in counted.iter().filter(|(_, r)| r.status != 200) {
        assert_eq!(r.status, 429, "replica {i}: {}", r.body);
        assert!(r.header("retry-after").is_some(), "replica {i}: a 429 says when to come back: {:?}", r.headers);
        assert!(r.json()["error"]["message"].as_str().unwrap().contains("30 requests per minute"), "replica {i}: {}", r.body);
    }

    // Tokens per minute too (prompt plus completion, 12 + 3 a answer here): one 60-token minute
    // over the three, where each replica counting alone would serve 3 to 5 answers by itself.
    let tpm = create_key(&hs[0], &["--name", "tpm60", "--tpm", "60"]);
    let mut served = 0;
    let refused = loop {
        let r = ask(&hs[served % 3], &tpm, "paid-model", &[]);
        if r.status != 200 {
            break r;
        }
        served += 1;
        assert!(served < 10, "a 60-token minute over three replicas cannot serve ten 15-token answers");
    };
    assert!((3..=5).contains(&served), "{served} answers of 15 tokens in 60 tokens a minute over three replicas");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("60 tokens per minute"), "{}", refused.body);
}

#[test]
fn a_budget_spent_across_replicas_holds() {
    let redis = RedisServer::start();
    let paid = MockUpstream::start("paid", Mode::Delay(Duration::from_millis(300)));
    let home = MockOllama::start();
    let hs = replicas(&redis, &paid, &home, "open", COUNTING_TIMEOUT_MS);
    let burst = create_key(&hs[0], &["--name", "burst", "--budget-usd", "0.10", "--budget-window", "day"]);

    // Forty at once against ten cents, spread over three replicas, each holding its estimate
    // (~2¢) while it runs: together they cannot overshoot.
    let replies = at_once(40, |n| ask(&hs[n % 3], &burst, "paid-model", &[]));
    let answered: Vec<&CurlReply> = replies.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<&CurlReply> = replies.iter().filter(|r| r.status == 402).collect();
    assert_eq!(answered.len() + refused.len(), 40, "{:?}", replies.iter().map(|r| (r.status, r.body.as_str())).collect::<Vec<_>>());
    assert!(!answered.is_empty() && !refused.is_empty(), "{} answered, {} refused", answered.len(), refused.len());
    let total: f64 = answered.iter().map(|r| cost(r)).sum();
    assert!(total <= 10.0 + 1e-9, "40 concurrent requests over three replicas spent {total}¢ of a 10¢ budget");
    for r in &refused {
        assert_eq!(r.json()["error"]["code"], "budget_exceeded", "{}", r.body);
        assert!(r.header("retry-after").is_some(), "a refusal says when the budget resets: {:?}", r.headers);
    }

    // Every replica reports everyone's spend: the sum of what the answers said they cost.
    let mut spends: Vec<f64> = Vec::new();
    let agreed = eventually(Duration::from_secs(2), || {
        spends = hs.iter().map(|h| spent_cents(h, "/admin/keys/burst")).collect();
        spends.iter().all(|s| (s - total).abs() < 1e-6)
    });
    assert!(agreed.is_some(), "spend on replicas 0, 1, 2: {spends:?}¢; the {} answers cost {total}¢ together", answered.len());
    let (ok, shown) = hermes_cli(&hs[2], &["keys", "show", "burst"]);
    assert!(ok && shown.contains("name:      burst") && shown.contains("spent:"), "{shown}");

    // Redis holds the key's digest, its name and its spend, never a key.
    let held = redis.everything();
    assert!(held.contains("burst") && held.contains("hermes:spend:key:burst"), "{held}");
    for secret in [burst.as_str(), STATIC, UPSTREAM] {
        assert!(!held.contains(secret), "a key is in Redis");
    }

    // Each replica's analytics file as Parquet (`hermes export`, written by the running gateway),
    // read together by the official duckdb package: the key's rows of all three are its spend.
    let out = scratch_dir("export");
    let files: Vec<String> = hs
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let dir = out.join(format!("replica-{i}"));
            let (ok, printed) = hermes_cli(h, &["export", "--dir", dir.to_str().unwrap()]);
            assert!(ok && printed.contains("jobs.parquet"), "hermes export on replica {i}: {printed}");
            dir.join("jobs.parquet").display().to_string()
        })
        .collect();
    let list = files.iter().map(|f| format!("'{f}'")).collect::<Vec<_>>().join(", ");
    let rows = duck(
        std::path::Path::new(":memory:"),
        &[&format!(
            "SELECT count(*), sum(cost_cents), count(DISTINCT filename) FROM read_parquet([{list}], filename = true) WHERE key_name = 'burst' AND status = 200"
        )],
    );
    let row = &rows[0][0];
    assert_eq!(row[0].as_f64(), Some(answered.len() as f64), "answered jobs of the key in the three exports: {row:?}");
    assert!((row[1].as_f64().unwrap_or(-1.0) - total).abs() < 1e-6, "their cost: {row:?}, the answers said {total}");
}

#[test]
fn a_revocation_on_one_replica_refuses_on_the_others_within_two_seconds() {
    let redis = RedisServer::start();
    let paid = MockUpstream::start("paid", Mode::Ok { gap: Duration::ZERO });
    let home = MockOllama::start();
    let hs = replicas(&redis, &paid, &home, "open", COUNTING_TIMEOUT_MS);
    let key = create_key(&hs[0], &["--name", "brief"]);
    for (i, h) in hs.iter().enumerate().skip(1) {
        let r = ask(h, &key, "llama3.1:8b", &[]);
        assert_eq!(r.status, 200, "replica {i} serves a key made on replica 0: {}", r.body);
    }

    let (ok, out) = hermes_cli(&hs[0], &["keys", "revoke", "brief"]);
    assert!(ok, "{out}");
    let revoked = Instant::now();
    let r = ask(&hs[0], &key, "llama3.1:8b", &[]);
    assert_eq!(r.status, 401, "the replica that revoked it refuses at once: {}", r.body);
    let mut last: Vec<CurlReply> = Vec::new();
    let refused = eventually(Duration::from_secs(5), || {
        last = hs[1..].iter().map(|h| ask(h, &key, "llama3.1:8b", &[])).collect();
        last.iter().all(|r| r.status == 401)
    });
    let took = revoked.elapsed();
    let seen: Vec<(u16, &str)> = last.iter().map(|r| (r.status, r.body.as_str())).collect();
    assert!(refused.is_some() && took < Duration::from_secs(2), "replicas 1 and 2, {took:?} after the revocation: {seen:?}");
    for r in &last {
        assert_eq!(r.json()["error"]["code"], "invalid_api_key", "{}", r.body);
    }
}

/// A coding prompt: one job type and complexity band for every request of the learning test.
const CODING: &str = "Write a Python function that returns the n-th Fibonacci number iteratively.";

/// Three replicas over two sim twins `a` and `b` (one model, price and prior), open (no keys),
/// implicit feedback off: the ratings the test posts are the only ones.
fn twins(redis: &RedisServer) -> Vec<Hermes> {
    let mut pairs = vec![("HERMES_BACKENDS_ENABLED".to_string(), "a,b".to_string()), ("HERMES_IMPLICIT_FEEDBACK".to_string(), "false".to_string())];
    pairs.extend(sim_backend("a", "twin-model", "0", "0"));
    pairs.extend(sim_backend("b", "twin-model", "0", "0"));
    let mut env = env_of(pairs);
    env.extend(shared(redis, "open", COUNTING_TIMEOUT_MS));
    (0..3).map(|_| Hermes::start(&env, &[])).collect()
}

/// One coding request with `model: auto` (pinned to a backend when asked); it must be answered.
fn code_request(h: &Hermes, pin: Option<&str>) -> CurlReply {
    let url = format!("{}/v1/chat/completions", h.url());
    let body = chat_body("auto", CODING);
    let r = match pin {
        None => post_json(&url, None, &body),
        Some(b) => curl(&[url.as_str(), "-H", "content-type: application/json", "-H", &format!("x-hermes-backend: {b}"), "--data-binary", body.as_str()]),
    };
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

/// Of `n` coding requests to `h`, the share `b` answered; and the job types they were given.
fn share_of_b(h: &Hermes, n: usize) -> (f64, BTreeSet<String>) {
    let mut on_b = 0;
    let mut types = BTreeSet::new();
    for _ in 0..n {
        let r = code_request(h, None);
        on_b += usize::from(r.header("x-hermes-backend") == Some("b"));
        types.insert(r.header("x-hermes-job-type").unwrap_or("?").to_string());
    }
    (on_b as f64 / n as f64, types)
}

/// How many ratings a replica's learned table holds (`GET /admin/stats`).
fn ratings(h: &Hermes) -> u64 {
    let r = curl(&[&format!("{}/admin/stats", h.url())]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["rows"].as_array().unwrap().iter().map(|row| row["ratings"].as_u64().unwrap()).sum()
}

#[test]
fn ratings_on_one_replica_move_routing_on_another() {
    const N: usize = 30;
    const RATED: usize = 40;
    let redis = RedisServer::start();
    let hs = twins(&redis);

    // Before any rating anywhere, replica 2 routes by its priors alone.
    let (before, types_before) = share_of_b(&hs[2], N);

    // Answers on replica 0, pinned in turn to a and b so that both are rated 20 times; each
    // rated on replica 1, which never saw it: 1 for a, 5 for b.
    let feedback = format!("{}/feedback", hs[1].url());
    for n in 0..RATED {
        let pin = if n % 2 == 0 { "a" } else { "b" };
        let r = code_request(&hs[0], Some(pin));
        assert_eq!(r.header("x-hermes-backend"), Some(pin), "the pin held: {:?}", r.headers);
        let id = r.header("x-hermes-request-id").unwrap().to_string();
        let stars = if pin == "a" { 1 } else { 5 };
        let rating = json!({"request_id": id, "rating": stars}).to_string();
        // Replica 0 tells Redis where it answered just after the answer's last byte.
        let mut reply = None;
        let taken = eventually(Duration::from_secs(2), || {
            let fb = post_json(&feedback, None, &rating);
            let ok = fb.status == 200;
            reply = Some(fb);
            ok
        });
        let fb = reply.unwrap();
        assert!(taken.is_some(), "replica 1 does not take a rating of replica 0's answer {id}: {} {}", fb.status, fb.body);
        assert_eq!(fb.json()["backend"], pin, "replica 1 found where it ran: {}", fb.body);
    }

    // Every replica learned all of them: the one that answered, the one told, and the third.
    let mut counts: Vec<u64> = Vec::new();
    let learned = eventually(Duration::from_secs(5), || {
        counts = hs.iter().map(ratings).collect();
        counts.iter().all(|c| *c == RATED as u64)
    });
    assert!(learned.is_some(), "ratings known on replicas 0, 1, 2: {counts:?} of {RATED}");

    let (after, types_after) = share_of_b(&hs[2], N);
    assert!(types_before.len() == 1 && types_before == types_after, "one job type throughout: {types_before:?}, then {types_after:?}");
    assert!(after >= 0.8 && after > before + 0.2, "b's share of replica 2's answers: {before:.2} before the ratings, {after:.2} after");
}

/// One request of the steady traffic while Redis goes away and comes back.
struct Sample {
    replica: usize,
    started: Instant,
    took: Duration,
    status: u16,
    cost: f64,
    /// Only when it was not a 200.
    body: String,
}

/// Sets the flag when dropped: the traffic stops even if the test fails half-way.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn redis_killed_and_restarted_under_traffic_fail_open() {
    let mut redis = RedisServer::start();
    let paid = MockUpstream::start("paid", Mode::Ok { gap: Duration::ZERO });
    let home = MockOllama::start();
    let hs = replicas(&redis, &paid, &home, "open", OUTAGE_TIMEOUT_MS);
    let secret = create_key(&hs[0], &["--name", "steady", "--rpm", "600", "--budget-usd", "50", "--budget-window", "day"]);
    let key = secret.as_str();
    let samples: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let began = Instant::now();
    // Per replica, how many requests started at or after `at`.
    let since = |at: Instant| -> [usize; 3] {
        let mut n = [0; 3];
        for s in samples.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|s| s.started >= at) {
            n[s.replica] += 1;
        }
        n
    };

    // About eight requests a second on each replica (far under 600 a minute, and 1.5¢ each
    // far under $50); Redis killed for 3 s in the middle, then started again, empty.
    let (flowing, killed, restarted, recovered) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for (i, h) in hs.iter().enumerate() {
            let (samples, stop) = (&samples, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let r = ask(h, key, "paid-model", &[]);
                    let took = started.elapsed();
                    let body = if r.status == 200 { String::new() } else { r.body.clone() };
                    let sample = Sample { replica: i, started, took, status: r.status, cost: cost(&r), body };
                    samples.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        let flowing = eventually(Duration::from_secs(10), || since(began).iter().all(|n| *n >= 3));
        redis.kill();
        let killed = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        redis.restart();
        let restarted = Instant::now();
        let recovered = eventually(Duration::from_secs(10), || since(restarted).iter().all(|n| *n >= 5));
        (flowing, killed, restarted, recovered)
    });
    assert!(flowing.is_some() && recovered.is_some(), "traffic on replicas 0, 1, 2 before the outage: {:?}, after it: {:?}", since(began), since(restarted));
    let samples = samples.into_inner().unwrap_or_else(|p| p.into_inner());

    let mut during = [0; 3];
    for s in samples.iter().filter(|s| s.started >= killed && s.started < restarted) {
        during[s.replica] += 1;
    }
    assert!(during.iter().all(|n| *n >= 5), "requests sent to replicas 0, 1, 2 while Redis was down: {during:?}");
    let failed: Vec<(usize, u16, &str)> = samples.iter().filter(|s| s.status != 200).map(|s| (s.replica, s.status, s.body.as_str())).collect();
    assert!(failed.is_empty(), "fail open: every request is answered while Redis is away; {} of {} were not: {failed:?}", failed.len(), samples.len());
    let slowest = samples.iter().map(|s| s.took).max().unwrap();
    assert!(slowest < Duration::from_secs(2), "no request waits on a dead Redis: the slowest of {} took {slowest:?}", samples.len());

    // Spend is whole again: each replica puts its own share back into the empty Redis.
    let total: f64 = samples.iter().map(|s| s.cost).sum();
    let mut spends: Vec<f64> = Vec::new();
    let agreed = eventually(Duration::from_secs(5), || {
        spends = hs.iter().map(|h| spent_cents(h, "/admin/keys/steady")).collect();
        spends.iter().all(|s| (s - total).abs() < 1e-6)
    });
    assert!(agreed.is_some(), "after the restart, spend on replicas 0, 1, 2: {spends:?}¢; the {} answers cost {total}¢ together", samples.len());

    // A key made after the restart reaches the others, and its limit is shared again.
    let five = create_key(&hs[0], &["--name", "five", "--rpm", "5"]);
    let known = eventually(Duration::from_secs(5), || hs[1..].iter().all(|h| admin_reply(h, "/admin/keys/five").status == 200));
    assert!(known.is_some(), "a key made on replica 0 after the restart is still unknown on replicas 1 and 2 after 5 s");
    let seen: Vec<u16> = (0..9).map(|n| ask(&hs[n % 3], &five, "paid-model", &[]).status).collect();
    assert_eq!(seen, [200, 200, 200, 200, 200, 429, 429, 429, 429], "5 a minute over three replicas, round robin");
}

#[test]
fn redis_down_in_fail_closed_refuses_keyed_requests_only() {
    let mut redis = RedisServer::start();
    let paid = MockUpstream::start("paid", Mode::Ok { gap: Duration::ZERO });
    let home = MockOllama::start();
    let hs = replicas(&redis, &paid, &home, "closed", OUTAGE_TIMEOUT_MS);
    let key = create_key(&hs[0], &["--name", "strict", "--rpm", "600", "--budget-usd", "5"]);
    for (i, h) in hs.iter().enumerate() {
        let r = ask(h, &key, "paid-model", &[]);
        assert_eq!(r.status, 200, "replica {i} with Redis up: {}", r.body);
    }

    redis.kill();
    let killed = Instant::now();
    for (i, h) in hs.iter().enumerate() {
        let mut last = None;
        let refused = eventually(Duration::from_secs(1), || {
            let started = Instant::now();
            let r = ask(h, &key, "paid-model", &[]);
            let done = r.status == 503;
            last = Some((r, started.elapsed()));
            done
        });
        let (r, took) = last.unwrap();
        assert!(refused.is_some(), "replica {i}, {:?} after Redis was killed, answers a virtual key {}: {}", killed.elapsed(), r.status, r.body);
        assert!(took < Duration::from_secs(1), "replica {i} took {took:?} to refuse");
        let e = r.json();
        assert_eq!(e["error"]["code"], "shared_state_unavailable", "{}", r.body);
        assert!(e["error"]["type"].is_string(), "{}", r.body);
        assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("Redis")), "the message says what is missing: {}", r.body);
        assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
        let s = ask(h, STATIC, "paid-model", &[]);
        assert_eq!(s.status, 200, "replica {i}: a static key does not depend on Redis: {}", s.body);
    }

    redis.restart();
    let mut last: Vec<u16> = Vec::new();
    let back = eventually(Duration::from_secs(5), || {
        last = hs.iter().map(|h| ask(h, &key, "paid-model", &[]).status).collect();
        last.iter().all(|s| *s == 200)
    });
    assert!(back.is_some(), "5 s after Redis came back, the key on replicas 0, 1, 2 gets {last:?}");
}

#[test]
fn client_and_backend_rate_limits_hold_across_three_replicas() {
    let redis = RedisServer::start();
    let paid = MockUpstream::start("paid", Mode::Ok { gap: Duration::ZERO });
    let home = MockOllama::start();
    let mut env = shared(&redis, "open", COUNTING_TIMEOUT_MS);

    // HERMES_CLIENT_RATE_LIMIT: 5 a minute for the static key, over the three together.
    env.push(("HERMES_CLIENT_RATE_LIMIT", "5".into()));
    let hs: Vec<Hermes> = (0..3).map(|_| gateway(&paid, &home, &env)).collect();
    let statuses: Vec<u16> = (0..9).map(|n| ask(&hs[n % 3], STATIC, "paid-model", &[]).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429, 429], "5 a minute for one client over three replicas, round robin");
    drop(hs);

    // BACKEND_PAID_RATE_LIMIT: the paid backend takes 4 a minute from all three together; past
    // that no replica sends it more (the model has no other backend).
    env.pop();
    env.push(("BACKEND_PAID_RATE_LIMIT", "4".into()));
    let hs: Vec<Hermes> = (0..3).map(|_| gateway(&paid, &home, &env)).collect();
    let chats = || paid.calls().iter().filter(|c| c.path.ends_with("/chat/completions")).count();
    let before = chats();
    let replies: Vec<CurlReply> = (0..9).map(|n| ask(&hs[n % 3], STATIC, "paid-model", &[])).collect();
    let answered = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!((answered, chats() - before), (4, 4), "statuses {:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(replies.iter().skip(4).all(|r| r.status == 429), "{:?}", replies.iter().map(|r| (r.status, r.body.as_str())).collect::<Vec<_>>());
}
