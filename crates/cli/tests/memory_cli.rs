//! `baton memory` against the real binary: runs that write workflow memory through the
//! `memory.workflow.*` tools, then `list`, `get`, `history` and `recall` as docs/memory.md
//! shows them; tenants kept apart; a clear error without the embedding model; a remote embedding
//! model (a loopback server) changed in `baton.toml`, refused until `baton memory reembed`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Db, baton, summary, text};
use serde_json::Value;

const NOTES: &str = "version: 1
name: notes
steps:
  - id: log
    tool: memory.workflow.append
    with: { key: seen, value: \"{{ run.id }}\" }
  - id: plan
    tool: memory.workflow.set
    with: { key: plan, value: { day: tuesday } }
  - id: read
    tool: memory.workflow.get
    with: { key: plan }
";

fn ok(o: &std::process::Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

#[test]
fn runs_share_workflow_memory_and_the_cli_shows_it() {
    let db = Db::new();
    let wf = db.workflow("notes.yaml", NOTES);
    let first = db.run(&["run", &wf, "--json"]);
    assert_eq!(summary(&first)["status"], "succeeded", "{}", text(&first));
    let second = db.run(&["run", &wf, "--json"]);
    assert_eq!(summary(&second)["status"], "succeeded", "{}", text(&second));
    let run2 = summary(&second)["id"].as_str().unwrap().to_string();

    let listed = ok(&db.run(&["memory", "list", "notes", "--json"]));
    let keys: Vec<(&str, u64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap(), e["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(keys, [("plan", 2), ("seen", 2)]);
    let table = db.run(&["memory", "list", "notes"]);
    assert!(text(&table).contains("KEY"), "{}", text(&table));

    let plan = ok(&db.run(&["memory", "get", "notes", "plan"]));
    assert_eq!(plan, serde_json::json!({"day": "tuesday"}));
    let full = ok(&db.run(&["memory", "get", "notes", "seen", "--json"]));
    assert_eq!(full["value"].as_array().unwrap().len(), 2);
    assert_eq!(full["run_id"], run2.as_str());

    let history = ok(&db.run(&["memory", "history", "notes", "seen", "--json"]));
    let steps: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["op"].as_str().unwrap(), e["step"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, [("append", "log"), ("append", "log")]);

    let missing = db.run(&["memory", "get", "notes", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("no memory key 'nope' in workflow notes"),
        "{}",
        text(&missing)
    );
    let bad_k = db.run(&["memory", "recall", "notes", "x", "-k", "0"]);
    assert!(
        text(&bad_k).contains("k must be from 1 to 100"),
        "{}",
        text(&bad_k)
    );

    // Another tenant's workflow of the same name has its own (empty) memory.
    ok(&db.run(&["tenants", "create", "other"]));
    let other = ok(&db.run(&["memory", "list", "notes", "--tenant", "other", "--json"]));
    assert_eq!(other, serde_json::json!([]));
}

#[test]
fn recall_without_the_model_says_how_to_install_it() {
    let db = Db::new();
    let o = baton()
        .args(["memory", "recall", "notes", "anything"])
        .arg("--db")
        .arg(db.path())
        .env("BATON_MODELS_DIR", db.0.path().join("no-models"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("make model-embed"), "{}", text(&o));
}

#[test]
fn the_team_memory_example_recalls_by_meaning() {
    let Some(_) = baton_test_support::found_or_skip(
        "BATON_REQUIRE_EMBED_MODEL",
        "the team-memory example (remember and recall with MiniLM)",
        baton_embed::installed_model_dir().map_err(|e| e.to_string()),
    ) else {
        return;
    };
    let db = Db::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/team-memory.yaml");
    let o = db.run(&["run", example.to_str().unwrap(), "--json"]);
    assert_eq!(summary(&o)["status"], "succeeded", "{}", text(&o));
    let hits = ok(&db.run(&[
        "memory",
        "recall",
        "team-memory",
        "When do we ship to production?",
        "-k",
        "1",
        "--json",
    ]));
    assert_eq!(
        hits[0]["text"], "Production deploys happen on Tuesdays after the standup.",
        "{hits}"
    );
    assert_eq!(hits[0]["metadata"]["source"], "team-memory");
    let shown = db.run(&["memory", "recall", "team-memory", "deploy day"]);
    assert!(text(&shown).contains("Tuesdays"), "{}", text(&shown));
    // The commands docs/memory.md shows, as shown (after the run above).
    for args in documented_commands() {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = db.run(&refs);
        assert_eq!(o.status.code(), Some(0), "baton {args:?}: {}", text(&o));
    }
}

/// The `baton memory ...` lines of docs/memory.md's shell block, split like a shell would
/// (double quotes group words; `#` starts a comment).
fn documented_commands() -> Vec<Vec<String>> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/memory.md");
    let text = std::fs::read_to_string(doc).unwrap();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("baton memory ")) {
        let mut words = Vec::new();
        let (mut word, mut quoted) = (String::new(), false);
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                '#' if !quoted => break,
                ' ' if !quoted => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        out.push(words[1..].to_vec());
    }
    assert_eq!(out.len(), 4, "docs/memory.md shows four memory commands");
    out
}

/// A loopback OpenAI-compatible embeddings server: every vector is made from the words of its
/// text (one dimension for deploys, one for databases, one for lunch, one for everything), so
/// recall by meaning is deterministic. Keeps the model named in each request.
struct FakeEmbeddings {
    base_url: String,
    models: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeEmbeddings {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let models = std::sync::Arc::<std::sync::Mutex<Vec<String>>>::default();
        let seen = models.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { return };
                let mut reader = BufReader::new(sock);
                let mut length = 0usize;
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                let request: Value = serde_json::from_slice(&body).unwrap();
                assert!(first.starts_with("POST /v1/embeddings "), "{first}");
                seen.lock()
                    .unwrap()
                    .push(request["model"].as_str().unwrap().to_string());
                let data: Vec<Value> = request["input"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .map(|(i, t)| serde_json::json!({"index": i, "embedding": words(t.as_str().unwrap())}))
                    .collect();
                let answer = serde_json::json!({"object": "list", "data": data}).to_string();
                let mut sock = reader.into_inner();
                write!(
                    sock,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .unwrap();
            }
        });
        FakeEmbeddings { base_url, models }
    }

    fn models(&self) -> Vec<String> {
        self.models.lock().unwrap().clone()
    }
}

fn words(text: &str) -> Vec<f32> {
    let t = text.to_lowercase();
    let has = |ws: &[&str]| {
        if ws.iter().any(|w| t.contains(w)) {
            1.0
        } else {
            0.0
        }
    };
    vec![
        has(&["deploy", "ship", "release"]),
        has(&["database", "postgres", "sql"]),
        has(&["lunch", "food"]),
        0.1,
    ]
}

const FACTS: &str = "version: 1
name: facts
steps:
  - id: deploys
    tool: memory.remember
    with: { text: \"Production deploys happen on Tuesdays.\" }
  - id: database
    tool: memory.remember
    with: { text: \"The database is PostgreSQL 16.\" }
  - id: lunch
    tool: memory.remember
    with: { text: \"Lunch is at noon.\" }
";

#[test]
fn a_new_embedding_model_needs_reembed_and_then_recalls_with_it() {
    let server = FakeEmbeddings::start();
    let db = Db::new();
    let wf = db.workflow("facts.yaml", FACTS);
    let config = db.0.path().join("baton.toml");
    let with_model = |model: &str, args: &[&str]| {
        std::fs::write(
            &config,
            format!(
                "[providers.emb]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"\"\n\n[memory]\nembeddings = \"emb/{model}\"\n",
                server.base_url
            ),
        )
        .unwrap();
        baton()
            .args(args)
            .arg("--db")
            .arg(db.path())
            .env("BATON_CONFIG", &config)
            .output()
            .unwrap()
    };

    let o = with_model("alpha", &["run", &wf, "--json"]);
    assert_eq!(summary(&o)["status"], "succeeded", "{}", text(&o));
    let hits = ok(&with_model(
        "alpha",
        &[
            "memory",
            "recall",
            "facts",
            "which SQL server?",
            "-k",
            "1",
            "--json",
        ],
    ));
    assert_eq!(hits[0]["text"], "The database is PostgreSQL 16.", "{hits}");

    // Another model: the stored vectors cannot be compared with its query vector.
    let refused = with_model("beta", &["memory", "recall", "facts", "when do we ship?"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = text(&refused);
    for part in ["emb/alpha", "emb/beta", "baton memory reembed facts"] {
        assert!(said.contains(part), "{part} missing in {said}");
    }

    let reembed = with_model("beta", &["memory", "reembed", "facts"]);
    assert_eq!(reembed.status.code(), Some(0), "{}", text(&reembed));
    assert!(
        text(&reembed).contains("embedded 3 memories of workflow facts again with emb/beta"),
        "{}",
        text(&reembed)
    );
    let hits = ok(&with_model(
        "beta",
        &[
            "memory",
            "recall",
            "facts",
            "when do we ship?",
            "-k",
            "1",
            "--json",
        ],
    ));
    assert_eq!(
        hits[0]["text"], "Production deploys happen on Tuesdays.",
        "{hits}"
    );
    // Each memory was sent to the new model once; the first model is no longer asked.
    let models = server.models();
    assert_eq!(
        models.iter().filter(|m| *m == "alpha").count(),
        4,
        "{models:?}"
    );
    assert_eq!(models.last().map(String::as_str), Some("beta"));

    // A workflow without memories, and a bad run id: clear answers, no change.
    let none = with_model("beta", &["memory", "reembed", "nothing-here"]);
    assert_eq!(none.status.code(), Some(0), "{}", text(&none));
    assert!(
        text(&none).contains("embedded 0 memories"),
        "{}",
        text(&none)
    );
    let bad = with_model("beta", &["memory", "reembed", "--run", "no-such-run"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(
        text(&bad).contains("'no-such-run' is not a run id"),
        "{}",
        text(&bad)
    );
}
