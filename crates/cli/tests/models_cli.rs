//! `baton models` and `baton chat`, driving the real binary.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

fn baton() -> Command {
    Command::new(env!("CARGO_BIN_EXE_baton"))
}

fn run_with_stdin(mut cmd: Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn list_shows_a_missing_model_and_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = baton()
        .args(["models", "list"])
        .env("BATON_MODELS_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("local/smollm2") && stdout.contains("not installed"),
        "{stdout}"
    );
    assert!(stdout.contains("baton models pull smollm2"), "{stdout}");
}

#[test]
fn list_reports_a_corrupt_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        b"GGUF garbage",
    )
    .unwrap();
    std::fs::write(dir.path().join("other.gguf"), b"GGUF").unwrap();
    let out = baton()
        .args(["models", "list"])
        .env("BATON_MODELS_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("MISMATCH"), "{stdout}");
    assert!(
        stdout.contains("other.gguf") && stdout.contains("unknown"),
        "{stdout}"
    );
}

#[test]
fn pull_refuses_an_unknown_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = baton()
        .args(["models", "pull", "gpt-17"])
        .env("BATON_MODELS_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown model 'gpt-17'") && stderr.contains("smollm2"),
        "{stderr}"
    );
}

#[test]
fn chat_with_a_missing_model_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = baton();
    cmd.args(["chat", "local/smollm2"])
        .env("BATON_MODELS_DIR", dir.path());
    let out = run_with_stdin(cmd, "hi\n");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("baton models pull smollm2")
            && stderr.contains("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "{stderr}"
    );
}

#[test]
fn chat_reads_stdin_and_streams_the_local_models_reply() {
    let path =
        baton_llm_local::catalog::default_models_dir().join(baton_llm_local::catalog::SMOLLM2.file);
    assert!(
        path.is_file(),
        "the SmolLM2 model is not installed at {}: run `make model`",
        path.display()
    );
    let mut cmd = baton();
    cmd.args([
        "chat",
        "local/smollm2",
        "--max-tokens",
        "40",
        "--temperature",
        "0",
    ]);
    let out = run_with_stdin(cmd, "What is the capital of France?\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Paris"), "{stdout}");
}
