//! Integration tests of baton-sandbox: the hostile-payload suite in every tier that works on
//! this host, the process tier's features, and a check that the host is left clean.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod features;
mod hostile;
mod oci_net;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_payloads_docker_tier() {
    suite(Tier::Docker).await;
}
