//! A throwaway `redis-server` for the replica tests: a port and folder of its own, nothing ever
//! saved (so a restart comes back empty), killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// A new server on a free port; panics with its log unless it answers PING within 10 s.
    pub fn start() -> RedisServer {
        let mut r = RedisServer { port: super::free_port(), dir: super::scratch_dir("redis"), child: None };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("redis.log")).unwrap();
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", port.as_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server ({e}): is it installed?"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().unwrap());
            if let Some(status) = exited {
                panic!("redis-server on port {} exited with {status}:\n{}", self.port, self.log());
            }
            if self.ping() {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server on port {} did not answer PING within 10 s:\n{}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        let port = self.port.to_string();
        let out = Command::new("redis-cli").args(["-p", port.as_str(), "ping"]).stderr(Stdio::null()).output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
    }

    /// `redis://127.0.0.1:PORT/0`, for HERMES_REDIS_URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `redis-cli -p PORT ARGS`: what it printed, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let out = Command::new("redis-cli").args(["-p", port.as_str()]).args(args).output().expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// SIGKILL, and wait until it is gone (its port is free again).
    /// Every key and value Redis holds, as text (strings, hashes and streams: what Hermes
    /// writes), for looking for what must never be there.
    pub fn everything(&self) -> String {
        let mut all = String::new();
        for key in self.cli(&["--scan"]).lines().filter(|k| !k.is_empty()) {
            let value = match self.cli(&["TYPE", key]).as_str() {
                "string" => self.cli(&["GET", key]),
                "hash" => self.cli(&["HGETALL", key]),
                "stream" => self.cli(&["XRANGE", key, "-", "+"]),
                other => format!("({other})"),
            };
            all.push_str(&format!("{key}\n{value}\n"));
        }
        all
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Killed if running, then started again on the same port: empty, since nothing is saved.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// What the server logged, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
