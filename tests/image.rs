//! The Docker image's runtime stage, checked without a Docker engine: what the Dockerfile
//! promises (non-root user, ports, volume, paths, health check, entrypoint) is read from it and
//! then tried against the real binaries in a scratch root laid out like the image, run as the
//! image's user. (`scripts/docker-build-stage.sh` runs the build stage's commands in CI.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{curl, free_port};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The runtime stage's instructions, continuation lines joined.
fn runtime_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let stages: Vec<&str> = joined.split("\nFROM ").skip(1).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    stages[1]
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(' ').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect()
}

fn all<'a>(stage: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    stage.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
}

fn one<'a>(stage: &'a [(String, String)], key: &str) -> &'a str {
    let v = all(stage, key);
    assert_eq!(v.len(), 1, "one {key} in the runtime stage");
    v[0]
}

/// `["a", "b"]` or `a b` as words.
fn words(v: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(v) {
        Ok(list) => list,
        Err(_) => v.split_whitespace().map(str::to_string).collect(),
    }
}

fn port_of(listen: &str) -> u16 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// `ENV A=1 B=2` lines as a map.
fn env_of(stage: &[(String, String)]) -> HashMap<String, String> {
    all(stage, "ENV").iter().flat_map(|l| l.split_whitespace()).filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Where the image puts something, inside the scratch root.
fn inside(root: &Path, image_path: &str) -> PathBuf {
    root.join(image_path.trim_start_matches('/'))
}

#[test]
fn the_runtime_stage_promises_what_the_binaries_do() {
    let stage = runtime_stage();
    let env = env_of(&stage);

    // Non-root: the user the image runs as is created with uid 10001.
    assert_eq!(one(&stage, "USER"), "hermes");
    let setup = all(&stage, "RUN").join(" ");
    assert!(setup.contains("useradd --system --uid 10001") && setup.contains(" hermes"), "{setup}");

    // The binaries copied from the build stage are the package's binaries.
    let copies = all(&stage, "COPY");
    let from_build = copies.iter().find(|c| c.starts_with("--from=build")).unwrap();
    // hermes is this package's binary, talos the workspace member's (talos/Cargo.toml).
    for (bin, manifest) in [("hermes", "Cargo.toml"), ("talos", "talos/Cargo.toml")] {
        let cargo = std::fs::read_to_string(format!("{}/{manifest}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(from_build.contains(&format!("/src/target/release/{bin}")), "{from_build}");
        assert!(cargo.contains(&format!("name = \"{bin}\"")), "{manifest} builds {bin}");
    }
    let bin_dir = words(from_build).last().unwrap().clone();
    assert_eq!(words(one(&stage, "ENTRYPOINT")), vec!["hermes"]);

    // Ports: what the binaries listen on is exposed, and the health check asks that port.
    let exposed: Vec<u16> = one(&stage, "EXPOSE").split_whitespace().map(|p| p.parse().unwrap()).collect();
    let hermes_port = port_of(&env["HERMES_LISTEN"]);
    let talos_port: u16 = env["TALOS_PORT"].parse().unwrap();
    assert!(exposed.contains(&hermes_port) && exposed.contains(&talos_port), "{exposed:?}");
    assert!(env["HERMES_LISTEN"].starts_with("0.0.0.0:"), "reachable from outside the container");
    let health = one(&stage, "HEALTHCHECK");
    let health_url = format!("http://127.0.0.1:{hermes_port}/health");
    assert!(health.contains(&health_url), "{health}");

    // Paths: the analytics file lives in the volume, policies where CMD looks for them.
    let volume = words(one(&stage, "VOLUME"))[0].clone();
    assert!(env["HERMES_DB_PATH"].starts_with(&format!("{volume}/")), "the DuckDB file is in the volume");
    assert!(setup.contains(&format!("chown hermes:hermes {volume}")), "the volume belongs to the user");
    assert_eq!(one(&stage, "WORKDIR"), volume);
    let cmd = words(one(&stage, "CMD"));
    let policies_at = copies.iter().find(|c| c.starts_with("policies ")).map(|c| words(c)[1].clone()).unwrap();
    assert_eq!(cmd, vec!["serve".to_string(), "--policies".into(), policies_at.clone()]);

    // Now the binaries, laid out as in the image, run as uid 10001.
    let root = std::env::temp_dir().join(format!("hermes-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let bins = inside(&root, &bin_dir);
    std::fs::create_dir_all(&bins).unwrap();
    for bin in ["hermes", "talos"] {
        // talos is the workspace's other binary, built beside hermes.
        let from = std::path::Path::new(env!("CARGO_BIN_EXE_hermes")).with_file_name(bin);
        std::fs::copy(from, bins.join(bin)).unwrap();
    }
    let policies = inside(&root, &policies_at);
    std::fs::create_dir_all(&policies).unwrap();
    for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, policies.join(f.file_name().unwrap())).unwrap();
    }
    let data = inside(&root, &volume);
    std::fs::create_dir_all(&data).unwrap();
    // Everything readable, only the volume writable by the image's user.
    Command::new("chmod").args(["-R", "a+rX"]).arg(&root).status().unwrap();
    let as_root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if as_root {
        Command::new("chown").args(["-R", "10001:10001"]).arg(&data).status().unwrap();
    }
    let run_as = |program: &Path| {
        let mut c = if as_root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=10001", "--regid=10001", "--clear-groups"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.current_dir(&data).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("HERMES_") || k.starts_with("BACKEND_") {
                c.env_remove(k);
            }
        }
        c
    };

    // hermes: the image's CMD with its paths, a port of our own, one simulated backend.
    let port = free_port();
    let mut hermes = run_as(&bins.join("hermes"))
        .args(["serve", "--policies"])
        .arg(&policies)
        .env("HERMES_LISTEN", format!("0.0.0.0:{port}"))
        .env("HERMES_DB_PATH", inside(&root, &env["HERMES_DB_PATH"]))
        .env("HERMES_BACKENDS_ENABLED", "sim")
        .env("BACKEND_SIM_TYPE", "sim")
        .spawn()
        .unwrap();
    let up = |p: u16| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
            assert!(Instant::now() < deadline, "nothing listens on {p}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    up(port);
    // The HEALTHCHECK's own command, on our port.
    let check = health.trim_start_matches(|c: char| c != 'C').trim_start_matches("CMD").trim().replace(&health_url, &format!("http://127.0.0.1:{port}/health"));
    let status = Command::new("sh").args(["-c", &check]).stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "the health check passes: {check}");
    Command::new("kill").args(["-TERM", &hermes.id().to_string()]).status().unwrap();
    assert!(hermes.wait().unwrap().success(), "a clean stop as uid 10001");
    assert!(inside(&root, &env["HERMES_DB_PATH"]).exists(), "the analytics file was written into the volume");

    // talos: TALOS_PORT as the image sets it (our own port here).
    let talos_port = free_port();
    let mut talos = run_as(&bins.join("talos"))
        .env("TALOS_PORT", talos_port.to_string())
        .env("TALOS_BIND", "127.0.0.1")
        .env("OLLAMA_HOST", "http://127.0.0.1:9")
        .spawn()
        .unwrap();
    up(talos_port);
    let r = curl(&[&format!("http://127.0.0.1:{talos_port}/health")]);
    assert!(r.json()["status"].is_string(), "{}", r.body);
    let _ = talos.kill();
    let _ = talos.wait();
    let _ = std::fs::remove_dir_all(&root);
}
