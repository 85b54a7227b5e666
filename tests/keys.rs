//! Virtual keys and teams on one replica, end to end: `hermes keys` and `hermes teams` against
//! the running gateway, budgets that hold under 40 concurrent requests, `--on-budget local`,
//! revocation, model allowlists, requests and tokens per minute, a team budget over two keys,
//! spend equal to the sum of `x-hermes-cost-cents` (and surviving a restart), tenants kept
//! apart (cache, ratings), and no key in any log, metric, admin answer or file byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::keys::*;
use common::mock::{MockUpstream, Mode};
use common::mock_ollama::MockOllama;
use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn budgets_hold_under_concurrency_and_spend_is_what_the_answers_cost() {
    let paid = MockUpstream::start("paid", Mode::Delay(Duration::from_millis(300)));
    let home = MockOllama::start();
    let db = scratch_dir("keys-db").join("hermes.duckdb");
    let on_db = [("HERMES_DB_PATH", db.display().to_string())];
    let mut h = gateway(&paid, &home, &on_db);
    let (ok, out) = hermes_cli(&h, &["teams", "create", "core", "--budget-usd", "0.03", "--budget-window", "week"]);
    assert!(ok, "{out}");
    let burst = create_key(&h, &["--name", "burst", "--budget-usd", "0.10", "--budget-window", "day"]);

    // Forty at once against ten cents, each holding its estimate (~2¢) while it runs: no overshoot.
    let replies: Vec<CurlReply> = std::thread::scope(|s| {
        let hs = &h;
        let burst = &burst;
        let handles: Vec<_> = (0..40).map(|_| s.spawn(move || ask(hs, burst, "paid-model", &[]))).collect();
        handles.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let answered: Vec<&CurlReply> = replies.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<&CurlReply> = replies.iter().filter(|r| r.status == 402).collect();
    assert_eq!(answered.len() + refused.len(), 40, "{:?}", replies.iter().map(|r| (r.status, r.body.clone())).collect::<Vec<_>>());
    assert!(!answered.is_empty() && !refused.is_empty());
    let total: f64 = answered.iter().map(|r| cost(r)).sum();
    assert!(total <= 10.0 + 1e-9, "40 concurrent requests spent {total}¢ of a 10¢ budget");
    for r in &refused {
        assert_eq!(r.json()["error"]["code"], "budget_exceeded", "{}", r.body);
        assert!(r.header("retry-after").is_some(), "a refusal says when the budget resets");
    }
    let spent = spent_cents(&h, "/admin/keys/burst");
    assert!((spent - total).abs() < 1e-6, "the key's spend {spent}¢ is the sum of x-hermes-cost-cents {total}¢");
    let remaining: f64 =
        answered.iter().filter_map(|r| r.header("x-hermes-budget-remaining-cents")).map(|v| v.parse::<f64>().unwrap()).fold(f64::MAX, f64::min);
    assert!((remaining - (10.0 - total)).abs() < 1e-6, "the last answer says what is left: {remaining} vs {}", 10.0 - total);
    // Less left than a paid answer may cost: paid requests are refused, free ones still go.
    while ask(&h, &burst, "paid-model", &[]).status == 200 {}
    assert_eq!(ask(&h, &burst, "llama3.1:8b", &[]).status, 200, "free backends never count against a budget");
    // Spent to the cent: then `refuse` is a hard stop, free requests too, until the window resets.
    let exact = create_key(&h, &["--name", "exact", "--budget-usd", "0.015"]);
    let short = json!({"model": "paid-model", "max_tokens": 3, "messages": [{"role": "user", "content": "Say hello"}]}).to_string();
    let r = post_json(&format!("{}/v1/chat/completions", h.url()), Some(&exact), &short);
    assert_eq!((r.status, cost(&r)), (200, 1.5), "{}", r.body);
    let r = ask(&h, &exact, "llama3.1:8b", &[]);
    assert_eq!(r.status, 402, "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("is spent"), "{}", r.body);

    // A team budget over two keys: together they cannot spend more than the team's 3¢.
    let a = create_key(&h, &["--name", "team-a", "--team", "core"]);
    let b = create_key(&h, &["--name", "team-b", "--team", "core"]);
    let mut team_total = 0.0;
    let mut team_refusal = None;
    for n in 0..6 {
        let r = ask(&h, if n % 2 == 0 { &a } else { &b }, "paid-model", &[]);
        match r.status {
            200 => team_total += cost(&r),
            402 => team_refusal = Some(r.json()["error"]["message"].as_str().unwrap().to_string()),
            s => panic!("{s}: {}", r.body),
        }
    }
    assert!(team_total <= 3.0 + 1e-9 && team_total > 0.0, "{team_total}");
    assert!(team_refusal.unwrap().contains("team 'core'"));
    let teams = admin(&h, "/admin/teams");
    let core = teams["teams"].as_array().unwrap().iter().find(|t| t["name"] == "core").unwrap().clone();
    assert!((core["spend"]["spent_usd"].as_f64().unwrap() * 100.0 - team_total).abs() < 1e-6, "{core}");
    assert_eq!(core["keys"], json!(["team-a", "team-b"]));

    // `hermes keys show` and `list` print the limits and the spend.
    let (ok, shown) = hermes_cli(&h, &["keys", "show", "burst"]);
    assert!(ok && shown.contains("name:      burst") && shown.contains("per day"), "{shown}");
    let (ok, listed) = hermes_cli(&h, &["keys", "list"]);
    assert!(ok && listed.contains("team-a") && listed.contains("core"), "{listed}");

    // The metric, the analytics file, and a restart agree with the answers.
    let metrics = curl(&[&format!("{}/metrics", h.url())]).body;
    let line = metrics.lines().find(|l| l.starts_with("hermes_key_spend_cents_total{key=\"burst\"")).unwrap_or_else(|| panic!("{metrics}"));
    let metric: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let burst_spent = spent_cents(&h, "/admin/keys/burst");
    assert!((metric - burst_spent).abs() < 1e-6, "{line} vs {burst_spent}");
    h.stop();
    let rows = duck(&db, &["SELECT key_name, team, round(sum(cost_cents), 6) FROM jobs WHERE key_name IS NOT NULL GROUP BY ALL ORDER BY key_name"]);
    assert_eq!(rows[0][0], json!(["burst", null, (burst_spent * 1e6).round() / 1e6]), "{rows:?}");
    assert_eq!(rows[0].iter().filter(|r| r[1] == "core").count(), 2, "{rows:?}");
    let again = gateway(&paid, &home, &on_db);
    assert!((spent_cents(&again, "/admin/keys/burst") - burst_spent).abs() < 1e-6, "spend survives a restart");
    assert_eq!(ask(&again, &burst, "paid-model", &[]).status, 402, "and still binds");
    assert_eq!(ask(&again, &a, "paid-model", &[]).status, 402, "the team's too");
}

#[test]
fn keys_limit_models_rates_tokens_and_privacy_and_revocation_is_at_once() {
    let paid = MockUpstream::start("paid", Mode::Ok { gap: Duration::ZERO });
    let home = MockOllama::start();
    let h = gateway(&paid, &home, &[]);

    // --on-budget local: once the next paid answer would not fit, free local backends only, said so.
    let frugal = create_key(&h, &["--name", "frugal", "--budget-usd", "0.05", "--on-budget", "local"]);
    let quality = ["-H", "x-hermes-criteria: quality_first"];
    let first = ask(&h, &frugal, "auto", &quality);
    assert_eq!((first.status, first.header("x-hermes-backend")), (200, Some("paid")), "{}", first.body);
    assert!((first.header("x-hermes-budget-remaining-cents").unwrap().parse::<f64>().unwrap() - 3.5).abs() < 1e-6);
    let second = ask(&h, &frugal, "auto", &quality);
    assert_eq!(second.header("x-hermes-backend"), Some("paid"));
    let third = ask(&h, &frugal, "auto", &quality);
    assert_eq!((third.status, third.header("x-hermes-backend"), third.header("x-hermes-budget")), (200, Some("home"), Some("exhausted")), "{}", third.body);
    let refused = ask(&h, &frugal, "paid-model", &[]);
    assert_eq!(refused.status, 402, "{}", refused.body);
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("no free local backend serves `paid-model`"), "{}", refused.body);
    let paid_calls = paid.calls().len();
    assert_eq!(paid_calls, 2, "never sent to a paid backend once spent");

    // Model allowlist: other models are 403; `auto` chooses only among the allowed.
    let narrow = create_key(&h, &["--name", "narrow", "--models", "llama3.1:8b"]);
    let r = ask(&h, &narrow, "paid-model", &[]);
    assert_eq!((r.status, r.json()["error"]["code"].clone()), (403, json!("model_not_allowed")), "{}", r.body);
    let r = ask(&h, &narrow, "auto", &quality);
    assert_eq!((r.status, r.header("x-hermes-backend")), (200, Some("home")), "{}", r.body);

    // privacy local: a key whose requests never leave local backends.
    let private = create_key(&h, &["--name", "private", "--privacy", "local"]);
    let r = ask(&h, &private, "auto", &quality);
    assert_eq!((r.status, r.header("x-hermes-backend")), (200, Some("home")), "{}", r.body);
    let r = ask(&h, &private, "paid-model", &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("must stay on a local backend"), "refused, not sent: {}", r.body);
    assert_eq!(paid.calls().len(), paid_calls);

    // Requests per minute: the whole minute at once, then 429 with retry-after.
    let rpm = create_key(&h, &["--name", "rpm3", "--rpm", "3"]);
    let statuses: Vec<u16> = (0..4).map(|_| ask(&h, &rpm, "llama3.1:8b", &[]).status).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let r = ask(&h, &rpm, "llama3.1:8b", &[]);
    assert!(r.header("retry-after").is_some() && r.json()["error"]["message"].as_str().unwrap().contains("3 requests per minute"));

    // Tokens per minute count prompt and completion: each answer here is 12 + 3 tokens.
    let tpm = create_key(&h, &["--name", "tpm", "--tpm", "60"]);
    let mut served = 0;
    while ask(&h, &tpm, "paid-model", &[]).status == 200 {
        served += 1;
        assert!(served < 10, "a 60-token minute cannot serve ten 15-token answers");
    }
    assert!((3..=5).contains(&served), "{served} answers of 15 tokens in 60 tokens a minute");

    // Revocation: the next request is refused, and an unknown hk- key is 401 too.
    let brief = create_key(&h, &["--name", "brief"]);
    assert_eq!(ask(&h, &brief, "llama3.1:8b", &[]).status, 200);
    let (ok, out) = hermes_cli(&h, &["keys", "revoke", "brief"]);
    assert!(ok, "{out}");
    let r = ask(&h, &brief, "llama3.1:8b", &[]);
    assert_eq!((r.status, r.json()["error"]["code"].clone()), (401, json!("invalid_api_key")), "{}", r.body);
    assert_eq!(ask(&h, "hk-made-up", "llama3.1:8b", &[]).status, 401);
    assert_eq!(ask(&h, STATIC, "llama3.1:8b", &[]).status, 200, "static keys keep working, without limits");
    let (ok, out) = hermes_cli(&h, &["keys", "create", "--name", "bad name"]);
    assert!(!ok && out.contains("must be 1 to 64"), "{out}");
    let (ok, out) = hermes_cli(&h, &["keys", "create", "--name", "x", "--team", "nobody"]);
    assert!(!ok && out.contains("no team 'nobody'"), "{out}");
}

#[test]
fn tenants_are_kept_apart_and_no_key_is_written_anywhere() {
    let paid = MockUpstream::start("paid", Mode::Ok { gap: Duration::ZERO });
    let home = MockOllama::start();
    let mut h = gateway(&paid, &home, &[]);
    let alice = create_key(&h, &["--name", "alice"]);
    let bob = create_key(&h, &["--name", "bob"]);

    // The answer cache is per client: the same deterministic request from another key is a miss.
    let body = json!({"model": "paid-model", "temperature": 0, "messages": [{"role": "user", "content": "What is 2+2?"}]}).to_string();
    let chat = format!("{}/v1/chat/completions", h.url());
    let first = post_json(&chat, Some(&alice), &body);
    let again = post_json(&chat, Some(&alice), &body);
    let other = post_json(&chat, Some(&bob), &body);
    assert_eq!((first.header("x-hermes-cache"), again.header("x-hermes-cache"), other.header("x-hermes-cache")), (None, Some("hit"), None));

    // A rating is taken only from the key that made the request.
    let id = first.header("x-hermes-request-id").unwrap().to_string();
    let rating = json!({"request_id": id, "rating": 1}).to_string();
    let feedback = format!("{}/feedback", h.url());
    let r = post_json(&feedback, Some(&bob), &rating);
    assert_eq!((r.status, r.json()["error"]["code"].clone()), (404, json!("request_not_found")), "{}", r.body);
    assert_eq!(post_json(&feedback, Some(&alice), &rating).status, 200);

    // Stored responses too.
    let stored = post_json(&format!("{}/v1/responses", h.url()), Some(&alice), r#"{"model":"paid-model","input":"hi"}"#).json();
    let url = format!("{}/v1/responses/{}", h.url(), stored["id"].as_str().unwrap());
    assert_eq!(curl(&["-H", &format!("Authorization: Bearer {bob}"), &url]).status, 404);
    assert_eq!(curl(&["-H", &format!("Authorization: Bearer {alice}"), &url]).status, 200);

    // Nothing secret in the log, the metrics, the admin answers or the analytics file.
    let listing = admin(&h, "/admin/keys").to_string() + &admin(&h, "/admin/keys/alice").to_string() + &admin(&h, "/admin/teams").to_string();
    let metrics = curl(&[&format!("{}/metrics", h.url())]).body;
    h.stop();
    let log = h.log();
    assert!(log.contains("key=alice"), "the log names the key: {log}");
    let file = std::fs::read(h.db()).unwrap();
    for secret in [alice.as_str(), bob.as_str(), ADMIN, UPSTREAM, STATIC] {
        let tail = &secret[secret.len() - 16..];
        for (what, text) in [("log", log.as_str()), ("metrics", metrics.as_str()), ("admin answers", listing.as_str())] {
            assert!(!text.contains(tail), "{what} holds a secret");
        }
        assert!(!file.windows(tail.len()).any(|w| w == tail.as_bytes()), "the analytics file holds a secret");
    }
}
