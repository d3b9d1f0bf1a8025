//! `net: allow:` in the oci and gvisor tiers: the container reaches the listed hosts only
//! through Baton's proxy, every other host is refused, every attempt is logged, and nothing
//! (proxy directory, forwarder, namespace) is left behind. The "allowed host" is an HTTP
//! server on the host's loopback.

use std::time::Duration;

use baton_sandbox::{ExecRequest, NetMode, Policy, Tier, open};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;

async fn http_server(body: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = c.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, h)
}

async fn allow_list(tier: Tier) {
    let _g = common::lock().await;
    let before = common::leftovers();
    let (port, server) = http_server("hello from the allowed host").await;
    let (other, server2) = http_server("must not be seen").await;
    let mut p = Policy::new(tier);
    p.net = NetMode::Allow(vec![format!("127.0.0.1:{port}")]);
    let sb = match open(p) {
        Ok(s) => s,
        Err(e) => {
            common::skip(tier, "the allow-list test", &e);
            return;
        }
    };
    let script = format!(
        "import os, urllib.request, socket\n\
         print('proxy', os.environ.get('HTTPS_PROXY'))\n\
         print(urllib.request.urlopen('http://127.0.0.1:{port}/x', timeout=10).read().decode())\n\
         try:\n    urllib.request.urlopen('http://127.0.0.1:{other}/y', timeout=10)\n    print('other reached')\n\
         except Exception as e:\n    print('other refused', getattr(e, 'code', e))\n\
         for host, p in [('127.0.0.1', {port}), ('10.1.2.3', 80)]:\n\
         \x20   try:\n\
         \x20       socket.create_connection((host, p), timeout=2)\n\
         \x20       print('direct reached', host)\n\
         \x20   except OSError:\n\
         \x20       print('direct refused', host)\n"
    );
    let out = sb
        .exec(ExecRequest::new(["python3", "-c", script.as_str()]))
        .await
        .unwrap();
    server.abort();
    server2.abort();
    let shown = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert_eq!(out.exit_code, Some(0), "{shown}");
    assert!(
        out.stdout.contains("proxy http://127.0.0.1:3128"),
        "{shown}"
    );
    assert!(
        out.stdout.contains("hello from the allowed host"),
        "{shown}"
    );
    assert!(out.stdout.contains("other refused 403"), "{shown}");
    assert!(!out.stdout.contains("must not be seen"), "{shown}");
    assert!(out.stdout.contains("direct refused 127.0.0.1"), "{shown}");
    assert!(out.stdout.contains("direct refused 10.1.2.3"), "{shown}");
    assert!(
        out.network.iter().any(|a| a.allowed && a.port == port),
        "{:?}",
        out.network
    );
    assert!(
        out.network
            .iter()
            .any(|a| !a.allowed && a.port == other && a.detail.is_some()),
        "{:?}",
        out.network
    );
    assert!(
        out.enforced
            .iter()
            .any(|l| l.contains("allow-list proxy") && l.contains("127.0.0.1:3128")),
        "{:?}",
        out.enforced
    );
    let after = crate::wait_clean(&before).await;
    assert!(after.is_empty(), "left behind: {after:#?}");
    // The forwarder's thread is gone: no thread of this process is in another network
    // namespace any more.
    let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
    let mut others = Vec::new();
    for _ in 0..20 {
        others = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_link(t.path().join("ns/net")).ok())
            .filter(|n| *n != mine)
            .collect::<Vec<_>>();
        if others.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(others.is_empty(), "threads left in {others:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_in_the_oci_tier() {
    allow_list(Tier::Oci).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_in_the_gvisor_tier() {
    allow_list(Tier::Gvisor).await;
}
