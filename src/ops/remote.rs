//! The client for a running gateway's admin API, for the `hermes` subcommands (stats, compare,
//! migrate, keys, teams) that ask the gateway when one answers.

use std::path::PathBuf;
use std::time::Duration;

/// How to reach the running gateway: its address, admin key and, with HTTPS, the certificate to
/// trust (HERMES_TLS_CERT, often self-signed).
pub struct Remote {
    pub url: String,
    pub admin_key: Option<String>,
    pub ca: Option<PathBuf>,
}

pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
}

/// What a gateway call came to: its JSON, or whether there was no gateway at all to ask.
pub enum Asked {
    Answer(serde_json::Value),
    NoGateway(String),
}

/// The admin API's verbs.
#[derive(Debug, Clone, Copy)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Remote {
    /// GET, or POST when there is a body.
    pub fn ask(&self, path: &str, body: Option<serde_json::Value>) -> Result<Asked, String> {
        let method = if body.is_some() { Method::Post } else { Method::Get };
        self.request(method, path, body)
    }

    pub fn request(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> Result<Asked, String> {
        let (url, key) = (self.url.as_str(), self.admin_key.as_deref());
        runtime()?.block_on(async {
            let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(600));
            if let Some(ca) = &self.ca {
                let pem = std::fs::read(ca).map_err(|e| format!("HERMES_TLS_CERT {}: {e}", ca.display()))?;
                builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).map_err(|e| format!("HERMES_TLS_CERT: {e}"))?);
            }
            let client = builder.build().map_err(|e| e.to_string())?;
            let target = format!("{}{path}", url.trim_end_matches('/'));
            let mut req = match (method, &body) {
                (Method::Post, Some(b)) => client.post(&target).json(b),
                (Method::Post, None) => client.post(&target),
                (Method::Get, _) => client.get(&target),
                (Method::Delete, _) => client.delete(&target),
            };
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() => return Ok(Asked::NoGateway(format!("no gateway answers at {url}"))),
                Err(e) => return Err(format!("{target}: {e}")),
            };
            let status = resp.status();
            let value: serde_json::Value = resp.json().await.map_err(|e| format!("{target}: {e}"))?;
            if !status.is_success() {
                let msg = value["error"]["message"].as_str().unwrap_or("no message").to_string();
                return Err(format!("{target}: HTTP {status}: {msg}"));
            }
            Ok(Asked::Answer(value))
        })
    }
}
