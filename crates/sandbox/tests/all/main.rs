//! Integration tests of baton-sandbox: the hostile-payload suite in every tier that works on
//! this host, the process tier's features, and a check that the host is left clean.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod deploy;
mod features;
mod hostile;
mod oci_net;
mod workdir;

use baton_sandbox::Tier;

async fn suite(tier: Tier) {
    let _guard = common::lock().await;
    let before = common::leftovers();
    let t = std::time::Instant::now();
    let Some(rows) = hostile::run_suite(tier).await else {
        return;
    };
    hostile::report(tier, &rows, t.elapsed());
    let after = wait_clean(&before).await;
    assert!(
        after.is_empty(),
        "the {tier} suite left things behind on the host: {after:#?}"
    );
}

/// Leftovers not present before, after giving the kernel a moment to finish teardown.
pub async fn wait_clean(before: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for _ in 0..50 {
        left = common::leftovers()
            .into_iter()
            .filter(|l| !before.contains(l))
            .collect();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_payloads_process_tier() {
    suite(Tier::Process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_payloads_oci_tier() {
    suite(Tier::Oci).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_payloads_gvisor_tier() {
    suite(Tier::Gvisor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_payloads_microvm_tier() {
    suite(Tier::Microvm).await;
}

/// The suite against the host's own Docker daemon, when one answers with the image. Not
/// subject to BATON_REQUIRE_TIERS: tests/docker.rs runs the same suite against a private
/// daemon it starts, and that is where the docker tier is required.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_payloads_docker_tier() {
    if let Err(e) = baton_sandbox::open(baton_sandbox::Policy::new(Tier::Docker)) {
        println!(
            "SKIPPED the hostile payloads against the host's Docker daemon: {e} (tests/docker.rs runs them against a private daemon)"
        );
        return;
    }
    suite(Tier::Docker).await;
}

/// A payload whose task panics is counted as a failure (it used to be dropped silently).
#[tokio::test]
async fn a_panicking_payload_is_a_failed_row() {
    let mut set = tokio::task::JoinSet::new();
    let mut names = std::collections::BTreeMap::new();
    let ok = set.spawn(async { Ok("contained".to_string()) });
    names.insert(ok.id(), (0, "fine".to_string()));
    let bad = set.spawn(async {
        if std::hint::black_box(true) {
            panic!("payload task blew up");
        }
        Ok(String::new())
    });
    names.insert(bad.id(), (1, "panics".to_string()));
    let rows = hostile::collect(set, &names).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0], ("fine".to_string(), Ok("contained".to_string())));
    assert_eq!(rows[1].0, "panics");
    let why = rows[1].1.as_ref().unwrap_err();
    assert!(why.contains("panic"), "{why}");
}

async fn workdir_total(tier: Tier) {
    let _guard = common::lock().await;
    let mut p = baton_sandbox::Policy::new(tier);
    workdir::tweak(&mut p);
    match baton_sandbox::open(p) {
        Ok(sb) => workdir::four_files_over_the_total(sb, tier).await,
        Err(e) => common::skip(tier, "the workdir disk-total test", &e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workdir_disk_total_process_tier() {
    workdir_total(Tier::Process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workdir_disk_total_oci_tier() {
    workdir_total(Tier::Oci).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workdir_disk_total_gvisor_tier() {
    workdir_total(Tier::Gvisor).await;
}
