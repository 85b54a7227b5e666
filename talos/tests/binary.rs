//! The `talos` binary is built and answers `--help` (its behaviour beside Ollama is tested from
//! the gateway's side, in the hermes package's tests/backends.rs, which runs this binary).
#![allow(clippy::expect_used)]

#[test]
fn the_binary_describes_itself() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_talos")).arg("--help").output().expect("talos runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("OLLAMA_HOST"));
}
