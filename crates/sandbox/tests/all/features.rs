//! The process tier's features, end to end: network modes and the allow-list proxy, the host
//! workspace directory, isolation between concurrent sandboxes, errors, and 100 concurrent runs.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use baton_sandbox::{Error, ExecRequest, NetMode, Policy, Sandbox, StopReason, Tier, open};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;

/// The process sandbox with `f` applied to its policy, or None (printing why) when this host
/// cannot run it.
fn process(f: impl FnOnce(&mut Policy)) -> Option<Arc<dyn Sandbox>> {
    let mut p = Policy::new(Tier::Process);
    f(&mut p);
    match open(p) {
        Ok(s) => Some(s),
        Err(e) => {
            common::skip(Tier::Process, "a feature test", &e);
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_exit_code_output_and_usage() {
    let _g = common::lock().await;
    let Some(sb) = process(|_| {}) else { return };
    let mut req = ExecRequest::new(["/bin/sh", "-c", "cat; echo err >&2; exit 3"]);
    req.stdin = b"from stdin".to_vec();
    let out = sb.exec(req).await.unwrap();
    assert_eq!(out.exit_code, Some(3), "{out:?}");
    assert_eq!(out.stdout, "from stdin");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.stop_reason, StopReason::Exited);
    assert!(!out.stdout_truncated);
    assert!(out.wall_time > Duration::ZERO);
    assert!(out.cpu_time.is_some() && out.peak_memory_bytes.is_some());
    assert!(
        out.enforced.iter().any(|l| l.starts_with("landlock")),
        "{:?}",
        out.enforced
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_dirs_are_read_only_nosuid_and_workspace_files_arrive() {
    let _g = common::lock().await;
    let Some(sb) = process(|_| {}) else { return };
    let mut req = ExecRequest::new(["python3", "main.py"]);
    req.files.insert(
        "main.py".into(),
        "import os\nprint(open('data/in.txt').read(), os.getcwd())\n".into(),
    );
    req.files.insert("data/in.txt".into(), "hello".into());
    let out = sb.exec(req).await.unwrap();
    assert_eq!(out.stdout.trim(), "hello /work", "{}", out.stderr);
    let out = sb
        .exec(ExecRequest::new([
            "/bin/sh",
            "-c",
            "grep ' /usr ' /proc/self/mountinfo",
        ]))
        .await
        .unwrap();
    assert!(
        out.stdout.contains(" ro,") && out.stdout.contains("nosuid"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_is_a_clear_error() {
    let _g = common::lock().await;
    let Some(sb) = process(|_| {}) else { return };
    match sb.exec(ExecRequest::new(["no-such-command-xyz"])).await {
        Err(Error::Spawn { command, reason }) => {
            assert_eq!(command, "no-such-command-xyz");
            assert!(reason.contains("No such file"), "{reason}");
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    assert!(matches!(
        sb.exec(ExecRequest::default()).await,
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_tier_fails_and_never_falls_back() {
    // The tiers that cannot offer `allow:` refuse it (the oci and gvisor tiers offer it:
    // see oci_net.rs).
    for tier in [Tier::Microvm, Tier::Docker] {
        let mut p = Policy::new(tier);
        p.net = NetMode::Allow(vec!["example.org".into()]);
        assert!(
            matches!(open(p), Err(Error::TierUnavailable { .. })),
            "{tier} accepted allow:"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_quota_is_enforced() {
    let _g = common::lock().await;
    let Some(sb) = process(|p| {
        p.limits.cpus = 0.25;
        p.limits.time = Duration::from_secs(2);
    }) else {
        return;
    };
    let out = sb
        .exec(ExecRequest::new(["/bin/sh", "-c", "while :; do :; done"]))
        .await
        .unwrap();
    assert_eq!(out.stop_reason, StopReason::TimeLimit);
    let cpu = out.cpu_time.unwrap_or_default();
    assert!(
        cpu < Duration::from_millis(1000),
        "2 s at a quarter of a CPU used {cpu:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_mode_has_its_own_loopback_and_none_has_none() {
    let _g = common::lock().await;
    let script = "import socket\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nc=socket.create_connection(s.getsockname())\nprint('loopback ok')";
    let Some(lo) = process(|p| p.net = NetMode::Loopback) else {
        return;
    };
    let out = lo
        .exec(ExecRequest::new(["python3", "-c", script]))
        .await
        .unwrap();
    assert_eq!(out.stdout.trim(), "loopback ok", "{}", out.stderr);
    let Some(none) = process(|_| {}) else { return };
    let out = none
        .exec(ExecRequest::new(["python3", "-c", script]))
        .await
        .unwrap();
    assert_ne!(out.exit_code, Some(0));
}

async fn http_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = c.read(&mut buf).await;
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello proxy").await;
            });
        }
    });
    (port, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_proxy_reaches_listed_hosts_only_and_logs_every_attempt() {
    let _g = common::lock().await;
    let (port, server) = http_server().await;
    let (other, server2) = http_server().await;
    let Some(sb) = process(|p| p.net = NetMode::Allow(vec![format!("127.0.0.1:{port}")])) else {
        return;
    };
    let script = format!(
        "import urllib.request, socket\n\
         print(urllib.request.urlopen('http://127.0.0.1:{port}/x', timeout=5).read().decode())\n\
         try:\n    urllib.request.urlopen('http://127.0.0.1:{other}/y', timeout=5)\n    print('other reached')\n\
         except Exception as e:\n    print('other refused', getattr(e, 'code', e))\n\
         try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('direct reached')\n\
         except OSError:\n    print('direct refused')\n"
    );
    let out = sb
        .exec(ExecRequest::new(["python3", "-c", script.as_str()]))
        .await
        .unwrap();
    server.abort();
    server2.abort();
    assert!(
        out.stdout.contains("hello proxy"),
        "stdout {} stderr {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("other refused 403"), "{}", out.stdout);
    assert!(out.stdout.contains("direct refused"), "{}", out.stdout);
    assert!(
        out.network.iter().any(|a| a.allowed && a.port == port),
        "{:?}",
        out.network
    );
    assert!(
        out.network.iter().any(|a| !a.allowed && a.port == other),
        "{:?}",
        out.network
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_workdir_is_the_workspace_and_planted_links_are_not_followed() {
    let _g = common::lock().await;
    let Some(sb) = process(|_| {}) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    // A root-owned workspace is refused: code never runs as host root.
    let mut req = ExecRequest::new(["/bin/true"]);
    req.workdir = Some(ws.clone());
    let err = sb.exec(req.clone()).await.unwrap_err();
    assert!(err.to_string().contains("owned by root"), "{err}");
    nix::unistd::chown(
        &ws,
        Some(nix::unistd::Uid::from_raw(101_000)),
        Some(nix::unistd::Gid::from_raw(101_000)),
    )
    .unwrap();
    let mut req = ExecRequest::new([
        "/bin/sh",
        "-c",
        "cat in.txt > out.txt; ln -s /etc/passwd planted; id -u",
    ]);
    req.workdir = Some(ws.clone());
    req.files.insert("in.txt".into(), "data".into());
    let out = sb.exec(req).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(ws.join("out.txt")).unwrap(), "data");
    assert_eq!(
        std::fs::metadata(ws.join("out.txt")).unwrap().uid(),
        101_000
    );
    // The next run asks Baton to write a file under the planted link's name: refused.
    let passwd_before = std::fs::read_to_string("/etc/passwd").unwrap();
    let mut req = ExecRequest::new(["/bin/true"]);
    req.workdir = Some(ws.clone());
    req.files
        .insert("planted".into(), "evil::0:0::/:/bin/sh\n".into());
    let err = sb.exec(req).await.unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(
        std::fs::read_to_string("/etc/passwd").unwrap(),
        passwd_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sandboxes_cannot_see_each_other() {
    let _g = common::lock().await;
    let Some(sb) = process(|p| p.limits.time = Duration::from_secs(5)) else {
        return;
    };
    let holder = {
        let sb = sb.clone();
        tokio::spawn(async move {
            sb.exec(ExecRequest::new([
                "/bin/sh",
                "-c",
                "echo TOPSECRET > /work/secret; echo TOPSECRET > /tmp/secret; sleep 2",
            ]))
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The secret's text is assembled at run time so the probe's own command line never holds it.
    let probe = "S=TOPS; S=${S}ECRET; grep -rqs \"$S\" /work /tmp && echo ESCAPED; for p in /proc/[0-9]*; do cat $p/root/work/secret $p/root/tmp/secret $p/cwd/secret 2>/dev/null | grep -q \"$S\" && echo ESCAPED; done; echo CONTAINED";
    let out = sb
        .exec(ExecRequest::new(["/bin/sh", "-c", probe]))
        .await
        .unwrap();
    let held = holder.await.unwrap().unwrap();
    assert_eq!(held.exit_code, Some(0), "{held:?}");
    assert!(
        out.stdout.contains("CONTAINED") && !out.stdout.contains("ESCAPED"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_runs_complete() {
    let _g = common::lock().await;
    if process(|_| {}).is_none() {
        return;
    }
    let c = baton_sandbox::bench::concurrent_runs(Tier::Process, 100).await;
    assert_eq!(c.succeeded, 100, "failures: {:?}", c.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_leave_the_host_clean() {
    let _g = common::lock().await;
    let before = common::leftovers();
    let Some(sb) = process(|p| p.limits.time = Duration::from_secs(1)) else {
        return;
    };
    let _ = sb
        .exec(ExecRequest::new([
            "/bin/sh",
            "-c",
            "sleep 100 & (sleep 100 &); sleep 100",
        ]))
        .await
        .unwrap();
    let left = crate::wait_clean(&before).await;
    assert!(left.is_empty(), "{left:#?}");
}

/// Forks children that sleep until fork fails (the pids limit), then exits 0 itself.
pub const FORK_UNTIL_REFUSED: &str = "import os, time\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\nexcept OSError:\n    pass\nprint('fork refused')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_by_the_pids_limit_is_not_a_success() {
    let _g = common::lock().await;
    let Some(sb) = process(|p| {
        p.limits.pids = 16;
        p.limits.time = Duration::from_secs(20);
    }) else {
        return;
    };
    let out = sb
        .exec(ExecRequest::new(["python3", "-c", FORK_UNTIL_REFUSED]))
        .await
        .unwrap();
    assert_eq!(out.stop_reason, StopReason::PidsLimit, "{out:?}");
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert!(!out.success(), "{out:?}");
    assert_eq!(out.exit_status(), 1);
}
