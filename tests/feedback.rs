//! What the learner takes from people and conversations, through the real binary: a rating that
//! arrives with an answer's first byte, complaints in the next turn (implicit feedback), and
//! learner keys bounded to the models Hermes knows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{curl, post_json, Hermes};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

fn sim(name: &str, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let p = format!("BACKEND_{}_", name.to_ascii_uppercase());
    let mut v: Vec<(String, String)> = vec![
        (format!("{p}TYPE"), "sim".into()),
        (format!("{p}MODELS"), format!("{name}-model")),
        (format!("{p}LATENCY_MS"), "0".into()),
        (format!("{p}TOKENS_PER_SECOND"), "0".into()),
    ];
    v.extend(extra.iter().map(|(k, val)| (format!("{p}{k}"), val.to_string())));
    v.into_iter().map(|(k, val)| (&*Box::leak(k.into_boxed_str()), val)).collect()
}

fn stats(h: &Hermes) -> Vec<Value> {
    let r = curl(&[&format!("{}/admin/stats", h.url())]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["rows"].as_array().unwrap().clone()
}

fn ratings(h: &Hermes) -> u64 {
    stats(h).iter().map(|r| r["ratings"].as_u64().unwrap()).sum()
}

/// The learned table's rows that hold ratings.
fn rated(h: &Hermes) -> Vec<Value> {
    stats(h).into_iter().filter(|r| r["ratings"].as_u64() > Some(0)).collect()
}

#[test]
fn a_rating_posted_with_the_first_byte_is_found() {
    let mut env = vec![("HERMES_BACKENDS_ENABLED", "slow".to_string())];
    // 60 tokens at 30 a second: the answer takes two seconds after its first byte.
    env.extend(sim("slow", &[("OUTPUT_TOKENS", "60"), ("TOKENS_PER_SECOND", "30")]));
    let h = Hermes::start(&env, &[]);
    let body = json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": "write a haiku about fog"}]}).to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the first event");
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen).to_string();
    let id = head.lines().find_map(|l| l.strip_prefix("x-hermes-request-id: ")).unwrap().trim().to_string();
    let fb = post_json(&format!("{}/feedback", h.url()), None, &json!({"request_id": id, "rating": 4}).to_string());
    assert_eq!(fb.status, 200, "{}", fb.body);
    assert_eq!(fb.json()["backend"], "slow");
    // The stream is still going, and its end keeps the rating.
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(!rest.is_empty(), "the stream had ended before the rating");
    std::thread::sleep(Duration::from_millis(200));
    let rows = stats(&h);
    assert_eq!(rows.iter().map(|r| r["ratings"].as_u64().unwrap()).sum::<u64>(), 1, "{rows:?}");
}

fn conversation(h: &Hermes, turns: &[(&str, &str)]) -> common::CurlReply {
    let messages: Vec<Value> = turns.iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    let r = post_json(&format!("{}/v1/chat/completions", h.url()), None, &json!({"model": "auto", "messages": messages}).to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

#[test]
fn a_complaint_in_the_next_turn_rates_the_answer_before_it() {
    let mut env = vec![("HERMES_BACKENDS_ENABLED", "home".to_string())];
    env.extend(sim("home", &[]));
    let mut h = Hermes::start(&env, &[]);
    let ask = "my regex ^a+ matches 'ba', why?";
    let first = conversation(&h, &[("user", ask)]);
    let answer = first.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert_eq!(ratings(&h), 0);
    // A thank-you is no verdict.
    conversation(&h, &[("user", ask), ("assistant", &answer), ("user", "thanks, and what about lookbehind?")]);
    assert_eq!(ratings(&h), 0);
    // "still failing" is.
    conversation(&h, &[("user", ask), ("assistant", &answer), ("user", "That is still failing on my input")]);
    let rows = rated(&h);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["ratings"].as_u64(), rows[0]["rating"].as_f64()), (Some(1), Some(2.0)), "{rows:?}");
    // The same answer is not blamed twice; a person's own rating replaces the implicit one.
    conversation(&h, &[("user", ask), ("assistant", &answer), ("user", "doesn't work")]);
    assert_eq!(ratings(&h), 1);
    let id = first.header("x-hermes-request-id").unwrap();
    post_json(&format!("{}/feedback", h.url()), None, &json!({"request_id": id, "rating": 5}).to_string());
    let rows = rated(&h);
    assert_eq!((rows.len(), rows[0]["ratings"].as_u64(), rows[0]["rating"].as_f64()), (1, Some(1), Some(5.0)), "{rows:?}");
    // Asking the same question again counts too.
    let other = conversation(&h, &[("user", "capital of Australia?")]);
    let said = other.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    conversation(&h, &[("user", "capital of Australia?"), ("assistant", &said), ("user", "Capital of  Australia?")]);
    assert_eq!(ratings(&h), 2);
    h.stop();
    let rows = &common::duck(&h.db(), &["SELECT comment FROM feedback ORDER BY created_date"])[0];
    let comments: Vec<String> = rows.iter().map(|r| r[0].as_str().unwrap_or("").to_string()).collect();
    assert!(comments.iter().any(|c| c.starts_with("implicit: the next turn")), "{comments:?}");
    assert!(comments.iter().any(|c| c.starts_with("implicit: the same question")), "{comments:?}");

    // Turned off, the same complaint rates nothing.
    env.push(("HERMES_IMPLICIT_FEEDBACK", "false".into()));
    let h = Hermes::start(&env, &[]);
    let first = conversation(&h, &[("user", ask)]);
    let answer = first.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    conversation(&h, &[("user", ask), ("assistant", &answer), ("user", "That is still failing on my input")]);
    assert_eq!(ratings(&h), 0);
}

#[test]
fn model_names_a_client_makes_up_do_not_become_learner_keys() {
    let upstream = common::mock::MockUpstream::start("open", common::mock::Mode::Ok { gap: Duration::ZERO });
    let env = vec![
        ("HERMES_BACKENDS_ENABLED", "open".to_string()),
        ("BACKEND_OPEN_TYPE", "custom".into()),
        ("BACKEND_OPEN_BASE_URL", upstream.base_url()),
        ("HERMES_HEALTH_CHECK_ENABLED", "false".into()),
    ];
    let h = Hermes::start(&env, &[]);
    for i in 0..12 {
        let r = post_json(&format!("{}/v1/chat/completions", h.url()), None, &common::chat_body(&format!("made-up-{i}"), "hello"));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let rows = stats(&h);
    let models: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert!(models.iter().all(|m| !m.starts_with("made-up")), "{models:?}");
    assert_eq!(rows.iter().map(|r| r["jobs"].as_u64().unwrap()).sum::<u64>(), 12, "{rows:?}");
}
