//! The gateway the virtual-key tests run (tests/keys.rs on one replica, tests/replicas.rs on
//! three), and how they drive it: `hermes keys ...` as an operator runs it, the admin API, and a
//! chat request with a key.

use super::mock::MockUpstream;
use super::mock_ollama::MockOllama;
use super::{curl, hermes_once, scratch_dir, CurlReply, Hermes};
use serde_json::{json, Value};

pub const ADMIN: &str = "admin-key-for-keys-test";
pub const STATIC: &str = "static-client-key";
pub const UPSTREAM: &str = "sk-upstream-keys-SECRET";

/// A paid backend (1000 $/Mtok in and out: the mock's 12 + 3 tokens cost 1.5¢) and a free
/// local one, the answer cache on, HERMES_ADMIN_KEY and one static key in HERMES_API_KEYS;
/// `extra` adds variables (or overrides these: HERMES_DB_PATH, say).
pub fn gateway(paid: &MockUpstream, home: &MockOllama, extra: &[(&str, String)]) -> Hermes {
    let policies = scratch_dir("policies");
    let routing = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/routing.toml")).unwrap();
    let cache_on = routing.replacen("[cache]\n# Answer identical requests from memory: only non-streamed chat with `temperature: 0`,\n# whose answers are meant to be the same every time. Hits carry `x-hermes-cache: hit`.\nenabled = false", "[cache]\nenabled = true", 1);
    assert!(cache_on.contains("[cache]\nenabled = true"), "policies/routing.toml changed: update this test");
    std::fs::write(policies.join("routing.toml"), cache_on).unwrap();
    let mut env = vec![
        ("HERMES_ADMIN_KEY", ADMIN.to_string()),
        ("HERMES_API_KEYS", STATIC.into()),
        ("HERMES_BACKENDS_ENABLED", "paid,home".into()),
        ("HERMES_HEALTH_CHECK_ENABLED", "false".into()),
        ("BACKEND_PAID_TYPE", "custom".into()),
        ("BACKEND_PAID_BASE_URL", paid.base_url()),
        ("BACKEND_PAID_API_KEY", UPSTREAM.into()),
        ("BACKEND_PAID_MODELS", "paid-model".into()),
        ("BACKEND_PAID_PRICE_INPUT_PER_MTOK", "1000".into()),
        ("BACKEND_PAID_PRICE_OUTPUT_PER_MTOK", "1000".into()),
        ("BACKEND_HOME_TYPE", "ollama".into()),
        ("BACKEND_HOME_BASE_URL", home.url()),
        ("BACKEND_HOME_MODELS", "llama3.1:8b".into()),
        ("HERMES_MAX_COST_PER_JOB_CENTS", "1000".into()),
    ];
    env.extend(extra.iter().cloned());
    Hermes::start(&env, &["--policies", policies.to_str().unwrap()])
}

/// `hermes ARGS --url <gateway>` with the admin key, as an operator runs it.
pub fn hermes_cli(h: &Hermes, args: &[&str]) -> (bool, String) {
    let url = h.url();
    let mut all = args.to_vec();
    all.extend(["--url", url.as_str()]);
    let out = hermes_once(&[("HERMES_ADMIN_KEY", ADMIN)], &all);
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Makes a key with `hermes keys create`; returns the secret it printed.
pub fn create_key(h: &Hermes, args: &[&str]) -> String {
    let (ok, out) = hermes_cli(h, &[&["keys", "create"][..], args].concat());
    assert!(ok, "keys create {args:?}: {out}");
    let secret = out.lines().next().unwrap().trim().to_string();
    assert!(secret.starts_with("hk-"), "{out}");
    secret
}

/// GET an admin path with the admin key, whatever it answers.
pub fn admin_reply(h: &Hermes, path: &str) -> CurlReply {
    curl(&["-H", &format!("Authorization: Bearer {ADMIN}"), &format!("{}{path}", h.url())])
}

/// GET an admin path, which must answer 200; its JSON.
pub fn admin(h: &Hermes, path: &str) -> Value {
    let r = admin_reply(h, path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

/// A short chat request with a client key (`extra`: more curl arguments, headers say).
pub fn ask(h: &Hermes, key: &str, model: &str, extra: &[&str]) -> CurlReply {
    let body = json!({"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "Say hello to the team"}]}).to_string();
    let url = format!("{}/v1/chat/completions", h.url());
    let auth = format!("Authorization: Bearer {key}");
    let mut args = vec![url.as_str(), "-H", auth.as_str(), "-H", "content-type: application/json", "--data-binary", body.as_str()];
    args.extend(extra);
    curl(&args)
}

/// What an answer says it cost (`x-hermes-cost-cents`; 0 without it).
pub fn cost(r: &CurlReply) -> f64 {
    r.header("x-hermes-cost-cents").map_or(0.0, |c| c.parse().unwrap())
}

/// A key's or team's spend in its window, in cents, as the admin API reports it.
pub fn spent_cents(h: &Hermes, path: &str) -> f64 {
    admin(h, path)["spend"]["spent_usd"].as_f64().unwrap() * 100.0
}
