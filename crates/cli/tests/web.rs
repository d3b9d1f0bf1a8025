//! The web app (`web/`) from `cargo test`: its end-to-end tests in Debian's Chromium against
//! this very `baton` binary (`web/e2e/run.mjs` starts `baton serve` itself), and the check that
//! the app's API types (`web/src/api/schema.d.ts`) match the server's OpenAPI document.
//!
//! Both need Node.js and the app's packages (`make web` installs them); the e2e test also the
//! browser and a binary built after `make web` (the assets are embedded at compile time).
//! Whatever is missing skips loudly; `BATON_REQUIRE_BROWSER=1` (set by `make test`) makes it a
//! failure.

// End-to-end tests run the real binary and node.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

/// What is missing to run the web app's scripts, if anything.
fn missing(need_browser: bool) -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node {
        return Some("node is not installed".into());
    }
    if !web().join("node_modules/playwright-core").is_dir() {
        return Some("the web app's packages are not installed (`make web`)".into());
    }
    if need_browser && !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is not installed (`apt-get install -y chromium`)".into());
    }
    None
}

/// Whether to go on: when something is missing, says so, and fails when it is required.
fn ready(what: &str, need_browser: bool) -> bool {
    let Some(why) = missing(need_browser) else {
        return true;
    };
    let required = std::env::var("BATON_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "BATON_REQUIRE_BROWSER=1 and {why}: {what} not run"
    );
    println!("SKIPPED: {why}: {what} not run");
    eprintln!("SKIPPED: {why}: {what} not run");
    false
}

fn node(script: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(web())
        .env("BATON_BIN", env!("CARGO_BIN_EXE_baton"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_web_apps_api_types_match_the_openapi_document() {
    if !ready("the API types check", false) {
        return;
    }
    let (ok, text) = node("scripts/gen-api.mjs", &["--check"]);
    assert!(ok, "{text}");
}

#[test]
fn the_web_app_in_a_browser() {
    if !ready("the web app's browser tests", true) {
        return;
    }
    let (ok, text) = node("e2e/run.mjs", &[]);
    println!("{text}");
    assert!(ok, "{text}");
    assert!(text.contains("0 failed"), "{text}");
}
