//! Loading and validating workflow files: every invalid fixture's report is a snapshot (what
//! `baton validate` prints), every valid fixture has no diagnostic and round-trips through the
//! graph form, and no input, however broken, makes the loader panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_engine::load::{self, Diagnostic, Loaded, ValidationEnv};
use baton_types::graph::Graph;

/// Resolves `scripted/*`, `local/*` and `openai/*` only, like a configured CLI would.
struct TestModels;

impl baton_llm::ModelResolver for TestModels {
    fn resolve(
        &self,
        reference: &str,
        _: &Path,
    ) -> Result<Arc<dyn baton_llm::ChatModel>, baton_llm::Error> {
        Err(baton_llm::Error::Config(format!(
            "tests do not run models ({reference})"
        )))
    }

    fn check(&self, reference: &str) -> Result<(), baton_llm::Error> {
        let (provider, _) = baton_llm::split_ref(reference)?;
        match provider {
            "scripted" | "local" | "openai" => Ok(()),
            other => Err(baton_llm::Error::UnknownModel {
                model: reference.to_string(),
                reason: format!(
                    "no provider `{other}` is configured (configured: local, openai, scripted)"
                ),
            }),
        }
    }
}

fn check(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    // What the CLI registers: the built-ins and the tool `sandbox:` steps run (validation
    // never opens a sandbox).
    let mut tools = baton_tools::Registry::with_builtins();
    tools.register(Arc::new(baton_tools::sandbox_step::SandboxStep::host()));
    let env = ValidationEnv {
        tools: &tools,
        models: Some(&TestModels),
    };
    load::load_and_validate(path, &env)
}

/// What `baton validate` prints for a file.
fn report(path: &Path) -> String {
    match check(path) {
        Ok(_) => "valid".into(),
        Err(diagnostics) => diagnostics.iter().map(|d| format!("{d}\n")).collect(),
    }
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new("tests/fixtures").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "json")
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn stem(p: &Path) -> String {
    let name = p.file_name().unwrap().to_string_lossy();
    name.replace('.', "_")
}

#[test]
fn invalid_fixtures_report_their_problems() {
    for path in fixtures("invalid") {
        let out = report(&path);
        let diagnostics = check(&path).err().unwrap_or_default();
        assert!(!diagnostics.is_empty(), "{} was accepted", path.display());
        // One problem per fixture, except those meant to show that all problems are reported.
        if stem(&path).starts_with("many") {
            assert!(
                diagnostics.len() >= 2,
                "{}: only {} problems reported:\n{out}",
                path.display(),
                diagnostics.len()
            );
        } else {
            assert_eq!(diagnostics.len(), 1, "{}:\n{out}", path.display());
        }
        for d in &diagnostics {
            assert!(d.line >= 1 && d.column >= 1, "{d}");
            assert_eq!(d.file, path.display().to_string());
        }
        insta::assert_snapshot!(format!("invalid_{}", stem(&path)), out);
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let shape = check(Path::new("tests/fixtures/invalid/many-shape-problems.yaml")).unwrap_err();
    assert!(shape.len() >= 8, "{shape:?}");
    let meaning = check(Path::new("tests/fixtures/invalid/many-problems.yaml")).unwrap_err();
    assert!(meaning.len() >= 12, "{meaning:?}");
}

#[test]
fn valid_fixtures_have_no_diagnostics() {
    for path in fixtures("valid") {
        if let Err(d) = check(&path) {
            let text: String = d.iter().map(|d| format!("{d}\n")).collect();
            panic!("{} should be valid:\n{text}", path.display());
        }
    }
}

#[test]
fn valid_fixtures_round_trip_through_the_graph() {
    for path in fixtures("valid") {
        let loaded = check(&path).unwrap();
        let graph = Graph::from_doc(&loaded.doc);
        assert_eq!(graph.to_doc(), loaded.doc, "{}", path.display());
        // The graph itself survives JSON.
        let again: Graph = serde_json::from_str(&serde_json::to_string(&graph).unwrap()).unwrap();
        assert_eq!(again.to_doc(), loaded.doc, "{}", path.display());
    }
}

#[test]
fn sandbox_steps_need_the_step_tool() {
    let tools = baton_tools::Registry::with_builtins();
    let env = ValidationEnv {
        tools: &tools,
        models: Some(&TestModels),
    };
    let e =
        load::load_and_validate(Path::new("tests/fixtures/valid/sandbox.yaml"), &env).unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].message
            .contains("sandbox steps need the `sandbox.step` tool"),
        "{}",
        e[0]
    );
    assert_eq!(e[0].path, "steps[1].sandbox");
}

#[test]
fn sandbox_steps_compile_to_a_call_of_the_step_tool() {
    let loaded = check(Path::new("tests/fixtures/valid/sandbox.yaml")).unwrap();
    let p = baton_engine::Program::compile(loaded.doc, PathBuf::from("/flows")).unwrap();
    let node = p.node_by_id("run").unwrap();
    match &node.kind {
        baton_engine::program::NodeKind::Sandbox => {}
        other => panic!("{other:?}"),
    }
    let with = node.tool_args();
    assert_eq!(with["command"][2], "{{ inputs.n }}");
    assert_eq!(with["files"]["lib/util.py"], "X = 1");
    assert_eq!(with["policy_file"], "/flows/policies/small.yaml");
    assert_eq!(with["policy"]["cpu"], 0.5);
    assert_eq!(with["policy"]["pids"], 16);
    assert_eq!(
        with["policy"]["net"],
        "allow:example.org,*.example.com:8443"
    );
    assert_eq!(with["allow_failure"], true);
    // The document the program keeps is the one written.
    assert!(matches!(
        p.doc.steps[1].kind,
        baton_types::StepKind::Sandbox(_)
    ));
}

#[test]
fn layout_is_kept_and_ignored_by_the_engine() {
    let loaded = check(Path::new("tests/fixtures/valid/layout.yaml")).unwrap();
    let layout = &loaded.doc.layout;
    assert_eq!(layout.len(), 5);
    assert_eq!(layout["checks"], [0.0, 120.5]);
    assert_eq!(layout["lint"], [-110.0, 240.0]);
    // The graph form keeps it with the document; the program the engine runs is the same
    // with or without it.
    assert_eq!(Graph::from_doc(&loaded.doc).to_doc().layout, *layout);
    let mut bare = loaded.doc.clone();
    bare.layout.clear();
    let with = baton_engine::Program::compile(loaded.doc.clone(), PathBuf::new()).unwrap();
    let without = baton_engine::Program::compile(bare, PathBuf::new()).unwrap();
    assert_eq!(with.nodes.len(), without.nodes.len());
}

#[test]
fn json_input_equals_yaml_input() {
    let yaml = check(Path::new("tests/fixtures/valid/hello.yaml")).unwrap();
    let json = check(Path::new("tests/fixtures/valid/hello.json")).unwrap();
    assert_eq!(yaml.doc, json.doc);
    // Every valid YAML fixture, written as JSON, reads back as the same document.
    for path in fixtures("valid") {
        let loaded = check(&path).unwrap();
        let text = serde_json::to_string_pretty(&loaded.doc).unwrap();
        let from_json = load::load_bytes("same.json", text.as_bytes()).unwrap();
        assert_eq!(from_json.doc, loaded.doc, "{}", path.display());
    }
}

#[test]
fn positions_point_at_the_field() {
    let loaded = check(Path::new("tests/fixtures/valid/branching.yaml")).unwrap();
    assert_eq!(loaded.location("steps[2].prompt"), (20, 5));
    // A flow mapping in a list is found at its first key.
    assert_eq!(loaded.location("steps[1].switch.cases[1]"), (16, 13));
    // Unknown paths fall back to the nearest ancestor.
    assert_eq!(loaded.location("steps[2].prompt.nothing[3]"), (20, 5));
    let json = check(Path::new("tests/fixtures/valid/hello.json")).unwrap();
    assert_eq!(json.location("steps[0].prompt"), (10, 42));
}

#[test]
fn files_over_10_mb_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let f = std::fs::File::create(&path).unwrap();
    // A sparse file: refused from its size, without reading 11 MB.
    f.set_len(11 * 1024 * 1024).unwrap();
    let e = load::load_file(&path).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("too large (11.0 MB)"), "{}", e[0]);
    assert!(e[0].message.contains("limited to 10 MB"), "{}", e[0]);
    let bytes = vec![b'#'; 10 * 1024 * 1024 + 1];
    let e = load::load_bytes("big.yaml", &bytes).unwrap_err();
    assert!(e[0].message.contains("too large"), "{}", e[0]);
}

#[test]
fn read_errors_have_positions() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "utf8.yaml",
            b"version: 1\nname: caf\xe9\nsteps: []\n".to_vec(),
        ),
        (
            "deep.yaml",
            format!(
                "version: 1\nname: deep\nsteps: {}{}\n",
                "[".repeat(80),
                "]".repeat(80)
            )
            .into_bytes(),
        ),
        (
            "deep.json",
            format!(
                "{{\"version\": 1, \"name\": \"deep\", \"steps\": {}1{}}}",
                "[".repeat(200),
                "]".repeat(200)
            )
            .into_bytes(),
        ),
        ("bomb.yaml", bomb().into_bytes()),
        ("empty.yaml", b"\n# nothing here\n".to_vec()),
        ("two-docs.yaml", b"version: 1\n---\nname: x\n".to_vec()),
        ("dir", Vec::new()),
    ];
    let mut out = String::new();
    for (name, bytes) in cases {
        let result = if name == "dir" {
            load::load_file(Path::new("tests/fixtures"))
        } else {
            load::load_bytes(name, &bytes)
        };
        let diagnostics = result
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"));
        for d in diagnostics {
            out.push_str(&format!(
                "{}\n",
                d.to_string().replace("tests/fixtures", "DIR")
            ));
        }
    }
    insta::assert_snapshot!("read_errors", out);
}

fn bomb() -> String {
    let mut s = String::from("version: 1\nname: bomb\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = format!("*a{}", i - 1);
        s.push_str(&format!("a{i}: &a{i} [{}]\n", vec![p; 10].join(", ")));
    }
    s.push_str("steps: []\n");
    s
}

#[test]
fn json_escapes_yaml_lacks_still_load() {
    let text = "{\"version\": 1, \"name\": \"smile \\ud83d\\ude00\", \"steps\": [{\"id\": \"a\", \"tool\": \"echo\", \"agnt\": 1}]}";
    let e = load::load_bytes("w.json", text.as_bytes()).unwrap_err();
    // Read by the JSON fallback, which still knows where each field is.
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].line, e[0].column), (1, 84), "{}", e[0]);
    assert_eq!(e[0].path, "steps[0].agnt");
}

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Loads and validates without panicking; a refusal always says something, somewhere.
fn must_not_panic(name: &str, bytes: &[u8]) {
    let tools = baton_tools::Registry::with_builtins();
    let env = ValidationEnv {
        tools: &tools,
        models: Some(&TestModels),
    };
    match load::load_bytes(name, bytes) {
        Ok(loaded) => {
            for d in load::validate(&loaded, &env) {
                assert!(!d.message.is_empty() && d.line >= 1 && d.column >= 1, "{d}");
            }
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty());
            for d in diagnostics {
                assert!(!d.message.is_empty() && d.line >= 1 && d.column >= 1, "{d}");
                assert!(
                    !d.message.contains("parser failed"),
                    "the YAML parser panicked on {bytes:?}"
                );
            }
        }
    }
}

#[test]
fn broken_input_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut sources: Vec<Vec<u8>> = fixtures("valid")
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    sources.extend(
        fixtures("invalid")
            .iter()
            .map(|p| std::fs::read(p).unwrap()),
    );
    for src in &sources {
        // Every truncation of every fixture.
        for cut in 0..src.len() {
            must_not_panic("cut.yaml", &src[..cut]);
        }
        // Random byte changes, some into YAML/JSON punctuation.
        for _ in 0..200 {
            let mut b = src.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                let punct = b"{}[]:,-&*!|>'\"#%@`\t\n ";
                b[i] = if rng.below(2) == 0 {
                    punct[rng.below(punct.len())]
                } else {
                    rng.next() as u8
                };
            }
            must_not_panic("mutated.yaml", &b);
        }
    }
    // Pure noise.
    for _ in 0..500 {
        let len = rng.below(300);
        let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        must_not_panic("noise.yaml", &b);
    }
}

#[test]
fn schema_json_is_the_format_schema() {
    let text = load::schema_json();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["title"], "Baton workflow");
    assert!(v["$defs"]["Step"]["properties"]["max_visits"].is_object());
    // Integers carry the bound loading enforces.
    assert_eq!(
        v["$defs"]["Step"]["properties"]["max_visits"]["maximum"],
        u32::MAX
    );
    assert!(text.contains('\n'), "pretty-printed");
    // Merge contracts, the judge join and unchanging-loop detection are in it.
    assert!(v["properties"]["contracts"].is_object());
    let reducers = v["$defs"]["Reducer"].to_string();
    assert!(reducers.contains("last_writer_by_priority"), "{reducers}");
    assert!(v["$defs"]["StateType"].to_string().contains("boolean"));
    assert!(v["$defs"]["JoinSpec"]["properties"]["judge"].is_object());
    assert!(v["$defs"]["JoinStrategy"].to_string().contains("\"judge\""));
    assert_eq!(
        v["$defs"]["Runaway"]["properties"]["unchanged_loop"]["default"],
        3
    );
}
