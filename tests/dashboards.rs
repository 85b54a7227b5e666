//! The Grafana dashboards against a real Prometheus (Debian's package) scraping the real
//! gateway: every panel's query must run, and most must find data after mixed traffic.
//! Metric names and labels are checked against the contract.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::{MockUpstream, Mode};
use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

fn prometheus_binary() -> String {
    if Command::new("prometheus").arg("--version").output().is_err() {
        // Installed by scripts/setup.sh in CI; as root, the test can do it itself.
        let _ = Command::new("apt-get").args(["install", "-y", "-qq", "prometheus"]).env("DEBIAN_FRONTEND", "noninteractive").status();
    }
    assert!(Command::new("prometheus").arg("--version").output().is_ok(), "Prometheus is missing: apt-get install prometheus (scripts/setup.sh does)");
    "prometheus".into()
}

struct Prometheus {
    child: std::process::Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn query(&self, expr: &str) -> Value {
        self.answer(expr).unwrap_or_else(|text| panic!("{expr}: {text}"))
    }

    /// The API's JSON, or the text it sent instead (while starting, a plain "Service Unavailable").
    fn answer(&self, expr: &str) -> Result<Value, String> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", &format!("http://127.0.0.1:{}/api/v1/query", self.port), "--data-urlencode"])
            .arg(format!("query={expr}"))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).map_err(|_| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[test]
fn every_dashboard_query_runs_against_real_prometheus() {
    let binary = prometheus_binary();
    let good = MockUpstream::start("good", Mode::Ok { gap: Duration::from_millis(2) });
    let broken = MockUpstream::start("broken", Mode::Status(500));
    let policies = scratch_dir("dash-policies");
    let routing = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/routing.toml"))
        .unwrap()
        .replace("# [shadow]\n# backend = \"candidate_backend\"\n# share = 0.1", "[shadow]\nbackend = \"broken\"\nshare = 0.5");
    std::fs::write(policies.join("routing.toml"), routing).unwrap();
    let hermes = Hermes::start(
        &[
            ("HERMES_BACKENDS_ENABLED", "broken,good".into()),
            ("HERMES_CLIENT_RATE_LIMIT", "40".into()),
            ("HERMES_UNHEALTHY_THRESHOLD", "1000".into()),
            ("BACKEND_BROKEN_TYPE", "custom".into()),
            ("BACKEND_BROKEN_BASE_URL", broken.base_url()),
            ("BACKEND_BROKEN_MODELS", "m".into()),
            ("BACKEND_GOOD_TYPE", "custom".into()),
            ("BACKEND_GOOD_BASE_URL", good.base_url()),
            ("BACKEND_GOOD_MODELS", "m,gpt-4o".into()),
            ("BACKEND_GOOD_PRICE_INPUT_PER_MTOK", "2.5".into()),
            ("BACKEND_GOOD_PRICE_OUTPUT_PER_MTOK", "10".into()),
        ],
        &["--policies", policies.to_str().unwrap()],
    );
    let dir = scratch_dir("prometheus");
    let port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hermes\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n", hermes.port),
    )
    .unwrap();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let prom = Prometheus { child, port };
    // Prometheus accepts connections before its API answers: not JSON yet means not up yet.
    let up = || prom.answer("up{job=\"hermes\"}").is_ok_and(|v| v["data"]["result"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && up()).is_some());

    // Traffic in two waves, so rates see change between scrapes: plain and streamed answers,
    // failovers from `broken`, budget refusals, client rate limiting and shadow requests.
    let chat = format!("{}/v1/chat/completions", hermes.url());
    // All of it on a virtual key of a team, for the spend-by-key panels.
    let admin = |path: &str, body: Value| post_json(&format!("{}{path}", hermes.url()), None, &body.to_string());
    assert_eq!(admin("/admin/teams", serde_json::json!({"name": "dash-team"})).status, 200);
    let made = admin("/admin/keys", serde_json::json!({"name": "dash-key", "team": "dash-team"}));
    assert_eq!(made.status, 200, "{}", made.body);
    let key = made.json()["key"].as_str().unwrap().to_string();
    let auth = format!("Authorization: Bearer {key}");
    for wave in 0..2 {
        for i in 0..25 {
            let body = if i % 3 == 0 {
                serde_json::json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Write a Python function that sorts a list"}]}).to_string()
            } else {
                chat_body("m", "hello there")
            };
            post_json(&chat, Some(&key), &body);
        }
        let refused = curl(&[
            &chat,
            "-H",
            &auth,
            "-H",
            "x-hermes-budget-cents: 0.0000001",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &chat_body("gpt-4o", "hi"),
        ]);
        assert!(refused.status == 402 || refused.status == 429, "{}", refused.body);
        std::thread::sleep(Duration::from_secs(if wave == 0 { 3 } else { 4 }));
    }

    let mut ran = 0;
    let mut with_data = Vec::new();
    let mut empty = Vec::new();
    for file in ["overview", "backends", "cost"] {
        let text = std::fs::read_to_string(format!("{}/dashboards/{file}.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let dash: Value = serde_json::from_str(&text).unwrap();
        let vars: Vec<&str> = dash["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(vars[0], "datasource", "{file}: the data source is a variable");
        for p in dash["panels"].as_array().unwrap() {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}/{}", p["title"]);
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                let concrete = expr.replace("$__rate_interval", "30s").replace("$__range", "1m").replace("$backend", ".*").replace("$job_type", ".*");
                let v = prom.query(&concrete);
                assert_eq!(v["status"], "success", "{file}/{}: {concrete}: {v}", p["title"]);
                ran += 1;
                let has_data = v["data"]["result"].as_array().is_some_and(|r| !r.is_empty());
                let name = format!("{file}/{}", p["title"].as_str().unwrap());
                if has_data {
                    with_data.push(name)
                } else {
                    empty.push(name)
                }
            }
        }
    }
    println!("{ran} queries; with data: {}; empty: {empty:?}", with_data.len());
    assert!(ran >= 20, "{ran} queries");
    assert!(with_data.len() * 10 >= ran * 8, "most queries must find data; empty: {empty:?}");

    // Names and labels users rely on (the contract).
    let metrics = curl(&[&format!("{}/metrics", hermes.url())]).body;
    for (name, labels) in [
        ("hermes_requests_total", &["backend", "model", "job_type", "status"][..]),
        ("hermes_failovers_total", &["from", "to", "reason"]),
        ("hermes_tokens_total", &["backend", "model", "direction"]),
        ("hermes_cost_cents_total", &["backend", "model"]),
        ("hermes_key_spend_cents_total", &["key", "team"]),
        ("hermes_backend_healthy", &["backend"]),
        ("hermes_backend_in_flight", &["backend"]),
        ("hermes_request_duration_seconds_bucket", &["backend", "le"]),
        ("hermes_time_to_first_token_seconds_bucket", &["backend", "le"]),
        ("hermes_overhead_seconds_bucket", &["le"]),
        ("hermes_rate_limited_total", &[]),
        ("hermes_budget_rejections_total", &[]),
        // Beyond the contract: what the learner believes, and the analytics writer's health.
        ("hermes_learned_score", &["backend", "job_type", "kind"]),
        ("hermes_analytics_queue_depth", &[]),
        ("hermes_analytics_dropped_total", &["reason"]),
        ("hermes_analytics_rows_written_total", &[]),
    ] {
        let line =
            metrics.lines().find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} missing"));
        for label in labels {
            assert!(line.contains(&format!("{label}=\"")), "{name} lacks label {label}: {line}");
        }
    }
    for help in ["hermes_requests_total", "hermes_overhead_seconds", "hermes_cost_cents_total"] {
        assert!(metrics.contains(&format!("# HELP {help} ")), "{help} has no help text");
    }
}
