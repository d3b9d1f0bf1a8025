//! Every workflow shown in the README and in `docs/` runs as shown. Each such YAML block names
//! its file under `examples/` on its first line (`# examples/NAME.yaml`); the block must be that
//! file, byte for byte, and the file must validate and run to success (answering `human`
//! approvals from another "shell", and resuming a run its budget stopped with more, as the
//! README shows).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{Db, root, summary, text};

/// (markdown file, first line of the block, the block) for every fenced YAML block that is a
/// whole workflow (`version: 1` at the top level).
fn workflow_blocks() -> Vec<(String, usize, String)> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut block: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match &mut block {
                None if line.trim_start().starts_with("```yaml") => {
                    block = Some((i + 2, String::new()))
                }
                Some((start, body)) if line.trim_start().starts_with("```") => {
                    if body.lines().any(|l| l == "version: 1") {
                        out.push((f.display().to_string(), *start, std::mem::take(body)));
                    }
                    block = None;
                }
                Some((_, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
                None => {}
            }
        }
    }
    out
}

/// Examples that need something of the world to run (a service, a variable of Baton's
/// environment): validated here, run by the test named.
const RUN_ELSEWHERE: &[(&str, &str)] = &[(
    "sandbox-credentials.yaml",
    "tests/sandbox_credentials.rs runs it against its loopback API with EXAMPLE_TOKEN set",
)];

#[test]
fn every_workflow_in_the_docs_is_an_example_that_runs() {
    let blocks = workflow_blocks();
    assert!(
        blocks.len() >= 2,
        "expected the README's and docs/workflow-format.md's workflows, found {}",
        blocks.len()
    );
    for (md, line, body) in blocks {
        let first = body.lines().next().unwrap_or_default();
        let Some(name) = first.strip_prefix("# examples/") else {
            panic!(
                "{md}:{line}: a workflow shown in the docs names its file on its first line (`# examples/NAME.yaml`), found `{first}`"
            );
        };
        let file = root().join("examples").join(name.trim());
        let on_disk = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{md}:{line}: {}: {e}", file.display()));
        assert_eq!(
            on_disk,
            body,
            "{md}:{line}: the block differs from {}",
            file.display()
        );
        let file = file.display().to_string();
        if (body.contains("memory.remember") || body.contains("memory.recall"))
            && baton_test_support::found_or_skip(
                "BATON_REQUIRE_EMBED_MODEL",
                &format!("{md}:{line} ({file} needs the embedding model)"),
                baton_embed::installed_model_dir().map_err(|e| e.to_string()),
            )
            .is_none()
        {
            continue;
        }
        if let Some(why) = RUN_ELSEWHERE
            .iter()
            .find_map(|(n, why)| (*n == name.trim()).then_some(why))
        {
            let o = Db::new().run(&["validate", &file]);
            assert_eq!(o.status.code(), Some(0), "{md}:{line}: {}", text(&o));
            println!("{md}:{line}: {file} validated here; {why}");
            continue;
        }
        let db = Db::new();
        // The registry agents the examples name (examples/agents/).
        for agent in std::fs::read_dir(root().join("examples/agents")).unwrap() {
            let agent = agent.unwrap().path().display().to_string();
            let o = db.run(&["agents", "create", &agent]);
            assert_eq!(o.status.code(), Some(0), "{agent}: {}", text(&o));
        }
        let o = db.run(&["validate", &file]);
        assert_eq!(o.status.code(), Some(0), "{md}:{line}: {}", text(&o));
        let mut o = db.run(&["run", &file, "--json"]);
        // A run waiting for a person stops with exit 3; approve from "another shell". A run its
        // budget stopped (exit 4) is resumed with more, as the README shows.
        for _ in 0..5 {
            let id = summary(&o)["id"].as_str().unwrap().to_string();
            o = match o.status.code() {
                Some(3) => db.run(&["runs", "approve", &id, "--json"]),
                Some(4) => db.run(&["resume", &id, "--budget", "tokens=+100", "--json"]),
                _ => break,
            };
        }
        assert_eq!(
            o.status.code(),
            Some(0),
            "{md}:{line}: {file}: {}",
            text(&o)
        );
        assert_eq!(summary(&o)["status"], "succeeded", "{}", text(&o));
    }
}
