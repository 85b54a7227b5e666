//! Test harness: the real `hermes` binary on a loopback port, and mock upstreams that speak
//! OpenAI's wire format byte for byte.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod keys;
pub mod mock;
pub mod mock_anthropic;
pub mod mock_ollama;
pub mod redis;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `hermes serve`, killed when dropped. It runs in an empty folder of its own so no
/// stray `.env` or `policies/` is picked up.
pub struct Hermes {
    pub port: u16,
    pub child: Child,
    pub dir: PathBuf,
}

impl Hermes {
    pub fn start(env: &[(&str, String)], args: &[&str]) -> Hermes {
        Self::try_start(env, args).unwrap_or_else(|log| panic!("hermes did not come up:\n{log}"))
    }

    pub fn try_start(env: &[(&str, String)], args: &[&str]) -> Result<Hermes, String> {
        // The port is the test's when it sets HERMES_LISTEN itself (`[::]:PORT`, say).
        let listen = env.iter().find(|(k, _)| *k == "HERMES_LISTEN").map(|(_, v)| v.clone());
        let port = listen.as_deref().and_then(|l| l.rsplit(':').next()).and_then(|p| p.parse().ok()).unwrap_or_else(free_port);
        let dir = scratch_dir("hermes");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hermes"));
        cmd.arg("serve").args(args).current_dir(&dir);
        clean_env(&mut cmd);
        cmd.env("HERMES_LISTEN", format!("127.0.0.1:{port}"));
        cmd.env("HERMES_DB_PATH", dir.join("hermes.duckdb"));
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
        let child = cmd.spawn().unwrap();
        let mut h = Hermes { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = h.child.try_wait().unwrap() {
                return Err(format!("exited with {status}: {}", h.log()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(h);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(h.log())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything logged so far: Hermes's log lines leave on a writer thread (`log_batch`).
    pub fn log(&self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(120));
        let mut s = String::new();
        let _ = std::fs::File::open(self.dir.join("stderr.log")).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    pub fn sigterm(&self) {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
    }

    /// SIGTERM and wait for a clean exit (analytics flushed); panics if it does not come.
    pub fn stop(&mut self) {
        self.sigterm();
        let status = self.wait_exit(Duration::from_secs(20)).unwrap_or_else(|| panic!("hermes did not stop: {}", self.log()));
        assert!(status.success(), "hermes exited with {status}: {}", self.log());
    }

    pub fn db(&self) -> PathBuf {
        self.dir.join("hermes.duckdb")
    }

    /// Wait for exit; None when it is still running after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Hermes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `hermes` with arguments to completion (for check-config and start-up errors).
pub fn hermes_once(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = scratch_dir("hermes-once");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hermes"));
    cmd.args(args).current_dir(&dir);
    clean_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        // OTEL_*: a developer's own collector settings must not turn traces on in every test.
        if k.starts_with("HERMES_") || k.starts_with("BACKEND_") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
}

pub fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{prefix}-{}-{:x}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What curl saw: status, headers (lower-cased names) and body.
pub struct CurlReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl CurlReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `curl -sS -i` with extra arguments; the body may come from a file with `-d @file`.
pub fn curl(args: &[&str]) -> CurlReply {
    let out = Command::new("curl").args(["-sS", "-i", "--max-time", "30"]).args(args).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Skip any interim 100 Continue head.
    let mut rest = text.as_str();
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text} {}", String::from_utf8_lossy(&out.stderr)));
        let mut lines = head.lines();
        let status: u16 = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        if status == 100 {
            rest = body;
            continue;
        }
        let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
        return CurlReply { status, headers, body: body.to_string() };
    }
}

pub fn post_json(url: &str, key: Option<&str>, body: &str) -> CurlReply {
    let auth = key.map(|k| format!("Authorization: Bearer {k}"));
    let mut args = vec![url, "-H", "content-type: application/json", "--data-binary", body];
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    curl(&args)
}

/// The test venv's python with `package` importable as `module`, made once per target folder.
/// One lock per test binary: tests in parallel must not pip into the same venv at once.
fn python_with(module: &str, package: &str) -> PathBuf {
    static VENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = VENV.lock().unwrap_or_else(|p| p.into_inner());
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("venv-openai");
    let python = venv.join("bin/python");
    if !python.exists() {
        let st = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().unwrap();
        assert!(st.success(), "python3 -m venv failed");
    }
    let has = Command::new(&python).args(["-c", &format!("import {module}")]).status().map(|s| s.success()).unwrap_or(false);
    if !has {
        let st = Command::new(venv.join("bin/pip")).args(["install", "-q", package]).status().unwrap();
        assert!(st.success(), "pip install {package} failed");
    }
    python
}

/// A Python venv with `jsonschema` (for tests/py/validate_openai.py).
pub fn python_with_jsonschema() -> PathBuf {
    python_with("jsonschema", "jsonschema>=4.20")
}

/// A Python venv with the official `openai` package.
pub fn python_with_openai() -> PathBuf {
    python_with("openai", "openai>=1.40")
}

/// A Python venv with the official OTLP protobuf definitions (for tests/py/otlp_sink.py).
pub fn python_with_otlp() -> PathBuf {
    python_with("opentelemetry.proto", "opentelemetry-proto>=1.20")
}

/// A loopback OTLP/HTTP trace collector (tests/py/otlp_sink.py), stopped when dropped. Point
/// Hermes at it with `OTEL_EXPORTER_OTLP_ENDPOINT` = [`OtlpSink::endpoint`]; what it received
/// is in `dir`: spans.jsonl (one decoded span a line), raw.bin (the bodies as sent) and
/// requests.jsonl (path, content type and size of each export).
pub struct OtlpSink {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl OtlpSink {
    pub fn start() -> OtlpSink {
        let python = python_with_otlp();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/otlp_sink.py");
        let (port, dir) = (free_port(), scratch_dir("otlp"));
        let mut child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let gone = child.try_wait().unwrap();
            if gone.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                panic!("otlp_sink.py did not come up ({gone:?}): {}", std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        OtlpSink { port, dir, child }
    }

    /// The value for OTEL_EXPORTER_OTLP_ENDPOINT (Hermes adds `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<serde_json::Value> {
        jsonl(&self.dir.join("spans.jsonl"))
    }

    /// The spans, once `check` holds of them or about 10 s have passed (the caller asserts).
    pub fn spans_when(&self, mut check: impl FnMut(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.spans();
            if check(&spans[..]) || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One line per export request: path, content_type, content_encoding, bytes, spans.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        jsonl(&self.dir.join("requests.jsonl"))
    }

    /// The export bodies exactly as they arrived (protobuf), one after another.
    pub fn raw(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("raw.bin")).unwrap_or_default()
    }
}

/// The complete lines of a JSON-lines file a writer may still be appending to.
fn jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Python venv with the official `anthropic` package.
pub fn python_with_anthropic() -> PathBuf {
    python_with("anthropic", "anthropic>=0.40")
}

/// Run SQL on an analytics file with the official `duckdb` Python package (read-only): one
/// list of rows (each a JSON array) per statement. See tests/py/duck.py.
pub fn duck(db: &std::path::Path, statements: &[&str]) -> Vec<Vec<serde_json::Value>> {
    let python = python_with("duckdb", "duckdb==2.0.1");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/duck.py");
    let out = Command::new(python).arg(script).arg(db).args(statements).output().unwrap();
    assert!(out.status.success(), "duck.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The single number a `SELECT count(*)`-like statement returns.
pub fn duck_number(db: &std::path::Path, sql: &str) -> f64 {
    duck(db, &[sql])[0][0][0].as_f64().unwrap_or_else(|| panic!("not a number: {sql}"))
}

pub fn chat_body(model: &str, text: &str) -> String {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]}).to_string()
}

/// The `talos` binary, a member of this workspace built beside `hermes`.
pub fn talos_binary() -> PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_hermes")).with_file_name("talos")
}

/// A running `talos` agent, killed when dropped.
pub struct TalosAgent {
    pub port: u16,
    pub child: Child,
    pub dir: PathBuf,
}

impl TalosAgent {
    pub fn start(ollama_url: &str, port: u16, token: Option<&str>) -> TalosAgent {
        let dir = scratch_dir("talos");
        let mut cmd = Command::new(talos_binary());
        cmd.current_dir(&dir).env("OLLAMA_HOST", ollama_url).env("TALOS_PORT", port.to_string()).env("TALOS_BIND", "127.0.0.1");
        cmd.env_remove("TALOS_TOKEN");
        if let Some(t) = token {
            cmd.env("TALOS_TOKEN", t);
        }
        cmd.stdout(std::fs::File::create(dir.join("stdout.log")).unwrap()).stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "talos did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TalosAgent { port, child, dir }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }
}

impl Drop for TalosAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` every 50 ms until it holds; how long it took, or None after `within`.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Serve an axum app on 127.0.0.1 from a runtime of its own (kept alive by the caller).
pub fn serve_mock(app: axum::Router) -> (u16, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, runtime)
}

/// A `sim` backend's variables: one quality and speed prior for all (0.8), answers at once.
pub fn sim_backend(name: &str, model: &str, price_in: &str, price_out: &str) -> Vec<(String, String)> {
    let p = format!("BACKEND_{}_", name.to_ascii_uppercase());
    vec![
        (format!("{p}TYPE"), "sim".into()),
        (format!("{p}MODELS"), model.into()),
        (format!("{p}PRICE_INPUT_PER_MTOK"), price_in.into()),
        (format!("{p}PRICE_OUTPUT_PER_MTOK"), price_out.into()),
        (format!("{p}QUALITY_SCORE"), "0.8".into()),
        (format!("{p}SPEED_SCORE"), "0.8".into()),
        (format!("{p}OUTPUT_TOKENS"), "40".into()),
        // Answers at once: these tests are about what is recorded and learned, not timing.
        (format!("{p}LATENCY_MS"), "0".into()),
        (format!("{p}TOKENS_PER_SECOND"), "0".into()),
    ]
}

/// The harness takes &str names: leak these few test strings.
pub fn env_of(pairs: Vec<(String, String)>) -> Vec<(&'static str, String)> {
    pairs.into_iter().map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v)).collect()
}
