//! The official `openai` Python client against `baton serve`'s OpenAI-compatible `/v1` routes:
//! a chat completion and a streamed one, from a scripted model. The client lives in the same
//! virtualenv as llama-cpp-python's server (`make llama-server-deps`); without it the test is
//! skipped loudly, and `BATON_REQUIRE_LLAMA_SERVER=1` (set by `make test`) makes that a failure.
// The official Python client runs as a process of its own.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The virtualenv's Python: `BATON_LLAMA_SERVER_PYTHON`, else where `make` installs it.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("BATON_LLAMA_SERVER_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/baton/llama-server-venv/bin/python")
}

const CLIENT: &str = r#"
import json, sys
import openai
client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0, timeout=30)
messages = [{"role": "user", "content": "say hello"}]
chat = client.chat.completions.create(model="scripted/hello", messages=messages)
stream = client.chat.completions.create(model="scripted/hello", messages=messages, stream=True)
pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
models = [m.id for m in client.models.list()]
print(json.dumps({
    "chat": chat.choices[0].message.content,
    "finish": chat.choices[0].finish_reason,
    "stream": pieces,
    "models": models,
}))
"#;

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_official_openai_python_client_talks_to_baton_serve() {
    let py = python();
    let usable = Command::new(&py)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        let required = std::env::var("BATON_REQUIRE_LLAMA_SERVER").is_ok_and(|v| v == "1");
        eprintln!(
            "SKIPPED 1 test (the openai Python client against baton serve): {} cannot import openai (make llama-server-deps installs it)",
            py.display()
        );
        assert!(
            !required,
            "BATON_REQUIRE_LLAMA_SERVER=1 and the openai Python client is missing"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripted")).unwrap();
    std::fs::write(
        dir.path().join("scripted/hello.yaml"),
        "replies:\n  - text: \"Hello from Baton\"\n    repeat: true\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    // A key of any role opens `/v1` (a served model is not an open relay).
    let db = dir.path().join("baton.db");
    let made = common::baton()
        .args(["keys", "create", "--role", "viewer", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let key = String::from_utf8(made.stdout).unwrap().trim().to_string();
    let _serve = Serve(
        common::baton()
            .args(["serve", "--addr", &addr, "--db"])
            .arg(&db)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "baton serve did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(&py)
        .args(["-c", CLIENT, &format!("http://{addr}/v1"), &key])
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["chat"], "Hello from Baton", "{got}");
    assert_eq!(got["finish"], "stop", "{got}");
    let streamed: String = got["stream"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(streamed, "Hello from Baton", "{got}");
    assert!(got["models"].is_array(), "{got}");
}
