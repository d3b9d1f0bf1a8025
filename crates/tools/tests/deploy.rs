//! The `deploy` and `deploy.stop` tools through the registry, over a run's workspace: the
//! files as committed are deployed (a copy: what the app writes never reaches them), the URL
//! answers from the host, a call sent again with its key answers with the same deployment,
//! stop ends it, and failures say why with the app's output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use baton_tools::deploy::Deployer;
use baton_tools::workspace::{Limits, Workspaces};
use baton_tools::{Registry, ToolContext};
use serde_json::{Value, json};

const RUN: &str = "0193aa5e7c2f7d00a1b2c3d4e5f60719";

const APP: &str = r#"import http.server, os
open("written-by-the-app.txt", "w").write("x")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/health" else b"hello"
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// Sandboxes are serialised with baton-sandbox's tests (a lock on that crate's directory):
/// their host-cleanliness checks must see only their own.
fn lock() -> std::fs::File {
    let dir = std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../sandbox")).unwrap();
    dir.lock().unwrap();
    dir
}

struct Fixture {
    _dir: tempfile::TempDir,
    all: Arc<Workspaces>,
    tools: Registry,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let all = Workspaces::new(dir.path().join("workspaces"), Limits::default());
    let mut tools = Registry::empty();
    all.register(&mut tools);
    Deployer::host(all.clone()).register(&mut tools);
    Fixture {
        _dir: dir,
        all,
        tools,
    }
}

fn ctx(key: &str) -> ToolContext {
    ToolContext {
        idempotency_key: key.into(),
        run_id: RUN.into(),
        step: "deploy".into(),
        agent: Some("deployer".into()),
        ..ToolContext::default()
    }
}

impl Fixture {
    async fn call(&self, tool: &str, args: Value, c: &ToolContext) -> Result<Value, String> {
        self.tools
            .get(tool)
            .unwrap()
            .call(args, c)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Whether the process tier works here (it needs root and cgroups); says why not.
fn sandbox_works() -> bool {
    match baton_sandbox::deploy::LocalSandbox::new(baton_sandbox::Policy::new(
        baton_sandbox::Tier::Process,
    )) {
        Ok(_) => true,
        Err(e) => {
            let required = std::env::var("BATON_REQUIRE_TIERS")
                .unwrap_or_default()
                .split(',')
                .any(|t| t.trim() == "process");
            assert!(!required, "the process tier is required here but: {e}");
            println!("SKIPPED the deploy tool tests: {e}");
            eprintln!("SKIPPED the deploy tool tests: {e}");
            false
        }
    }
}

fn get(url: &str, path: &str) -> Result<(u16, String), String> {
    let addr = url.strip_prefix("http://").unwrap().parse().unwrap();
    baton_sandbox::deploy::probe(addr, path, Duration::from_secs(5)).map(|h| (h.status, h.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_is_deployed_answers_and_is_stopped() {
    let _l = lock();
    if !sandbox_works() {
        return;
    }
    let f = fixture();
    f.call(
        "workspace.write",
        json!({"path": "app.py", "content": APP}),
        &ctx("w1"),
    )
    .await
    .unwrap();
    let args = json!({"start": "python3 app.py", "port": 8080, "timeout": "20s"});
    let v = f.call("deploy", args.clone(), &ctx("d1")).await.unwrap();
    let url = v["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{v}");
    assert_eq!(v["target"], "local-sandbox");
    assert_eq!(v["command"], "python3 app.py");
    assert_eq!(v["health"], json!({"status": 200, "body": "ok"}));
    assert_eq!(v["files"], 1);
    let id = v["deployment"].as_str().unwrap().to_string();
    let (status, body) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || get(&url, "/")
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "hello"));
    // The app wrote a file into its copy; the workspace does not have it.
    let ws = f.all.open(RUN).unwrap();
    let listing = ws.files().walk("", 100).unwrap();
    let names: Vec<&str> = listing.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["app.py"]);

    // Sent again with its key: the same deployment, not a second app.
    let again = f.call("deploy", args.clone(), &ctx("d1")).await.unwrap();
    assert_eq!(again["deployment"], id.as_str());
    assert_eq!(again["url"], url.as_str());
    assert_eq!(again["sent_again"], true);

    let stopped = f
        .call("deploy.stop", json!({"deployment": id}), &ctx("s1"))
        .await
        .unwrap();
    assert_eq!(stopped["stopped"], id.as_str());
    let u = url.clone();
    assert!(
        tokio::task::spawn_blocking(move || get(&u, "/"))
            .await
            .unwrap()
            .is_err()
    );
    let e = f
        .call("deploy.stop", json!({"deployment": id}), &ctx("s2"))
        .await
        .unwrap_err();
    assert!(e.contains(&format!("no deployment '{id}'")), "{e}");
    // Once stopped, the same key deploys anew.
    let third = f.call("deploy", args, &ctx("d1")).await.unwrap();
    assert_ne!(third["deployment"], id.as_str());
    f.call(
        "deploy.stop",
        json!({"deployment": third["deployment"]}),
        &ctx("s3"),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_say_why() {
    let _l = lock();
    if !sandbox_works() {
        return;
    }
    let f = fixture();
    // No workspace yet.
    let e = f
        .call(
            "deploy",
            json!({"start": "python3 app.py", "port": 8080}),
            &ctx("d0"),
        )
        .await
        .unwrap_err();
    assert!(e.contains("the run has no workspace yet"), "{e}");
    f.call(
        "workspace.write",
        json!({"path": "app.py", "content": "import sys\nprint('missing dependency: flask', file=sys.stderr)\nsys.exit(1)\n"}),
        &ctx("w1"),
    )
    .await
    .unwrap();
    let e = f
        .call(
            "deploy",
            json!({"start": "python3 app.py", "port": 8080, "timeout": 10}),
            &ctx("d1"),
        )
        .await
        .unwrap_err();
    assert!(e.contains("exited with status 1"), "{e}");
    assert!(e.contains("missing dependency: flask"), "{e}");
    // Bad arguments and targets are named.
    let e = f
        .call(
            "deploy",
            json!({"start": "x", "port": 8080, "target": "heroku"}),
            &ctx("d2"),
        )
        .await
        .unwrap_err();
    assert!(e.contains("unknown target 'heroku'"), "{e}");
    let e = f
        .call("deploy.stop", json!({"deployment": "nope"}), &ctx("s"))
        .await
        .unwrap_err();
    assert!(e.contains("'nope' is not a deployment id"), "{e}");
    // A call that belongs to no run has no workspace to deploy.
    let e = f
        .call(
            "deploy",
            json!({"start": "x", "port": 1}),
            &ToolContext::default(),
        )
        .await
        .unwrap_err();
    assert!(e.contains("belongs to no run"), "{e}");
}
