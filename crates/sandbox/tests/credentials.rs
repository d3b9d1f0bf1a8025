//! A credential for an allowed host, end to end through real sandboxes (the process and oci
//! tiers, each skipped loudly where this host cannot run it): code
//! inside calls a loopback API through Baton's proxy, the API receives the header with the
//! secret, and the secret is nowhere the code can look (environment, files) nor in the record.
//!
//! Its own test binary with one test: the secret is put in this process's environment (where
//! Baton reads credentials from) before any other thread exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "all/common.rs"]
#[allow(dead_code)]
mod common;

use baton_sandbox::{Credential, ExecRequest, NetMode, Policy, Tier, Upstream, open};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VAR: &str = "BATON_TEST_EGRESS_TOKEN";
const SECRET: &str = "egress-secret-7f3a9c2e";

/// An API on loopback: answers `api ok` and hands over each request head it read.
async fn api() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
                let _ = c
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\napi ok",
                    )
                    .await;
            });
        }
    });
    (port, rx)
}

/// Code inside: calls the API with a header of its own, tries a tunnel to it, then prints its
/// whole environment and every file it can read under the writable and generated places.
const SCRIPT: &str = r#"
import os, sys, urllib.request
port = sys.argv[1]
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/items", headers={"Authorization": "Bearer forged-inside"})
print("API:", urllib.request.urlopen(req, timeout=5).read().decode())
try:
    urllib.request.urlopen(f"https://127.0.0.1:{port}/v1/items", timeout=5)
    print("TUNNEL: open")
except Exception as e:
    print("TUNNEL: refused", e)
print("ENV:", dict(os.environ))
n = 0
paths = ["/proc/self/environ", "/proc/self/cmdline", "/proc/1/environ"]
for top in ["/work", "/tmp", "/run", "/etc", "/dev/shm"]:
    for d, _, files in os.walk(top):
        paths += [os.path.join(d, f) for f in files]
for p in paths:
    try:
        with open(p, "rb") as fh:
            data = fh.read(1 << 16)
    except OSError:
        continue
    n += 1
    text = data.decode("latin-1")
    sys.stdout.write("FILE %s %s\n" % (p, " ".join(text.split())))
print("READ", n, "files")
"#;

#[test]
fn the_sandbox_reaches_an_api_with_a_credential_it_never_sees() {
    // SAFETY: no other thread exists yet (the runtime below is built afterwards) and this
    // binary has this one test.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var(VAR, SECRET);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The tiers that offer `allow:` (gVisor's is the oci tier's proxy and namespace).
    for tier in [Tier::Process, Tier::Oci] {
        rt.block_on(run(tier));
    }
}

async fn run(tier: Tier) {
    let _g = common::lock().await;
    let (port, mut seen) = api().await;
    let host = format!("127.0.0.1:{port}");
    let mut p = Policy::new(tier);
    p.net = NetMode::Allow(vec![host.clone()]);
    p.runtimes = vec!["python3".into()];
    p.limits.output_bytes = 64 << 20;
    p.limits.memory_bytes = 1 << 30;
    p.credentials = vec![Credential {
        host: host.clone(),
        header: "Authorization".into(),
        value_env: VAR.into(),
        format: Some("Bearer {}".into()),
        upstream: Upstream::Http,
    }];
    p.validate().unwrap();
    let sb = match open(p.clone()) {
        Ok(s) => s,
        Err(e) => {
            common::skip(tier, "the credential test", &e);
            return;
        }
    };
    let mut req = ExecRequest::new(["python3", "/work/probe.py", &port.to_string()]);
    req.files.insert("probe.py".into(), SCRIPT.into());
    let out = sb.exec(req).await.unwrap();
    assert!(
        out.stdout.contains("API: api ok"),
        "{tier}: stdout {}\nstderr {}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("TUNNEL: refused") && out.stdout.contains("403"),
        "{}",
        out.stdout
    );
    let read = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("READ "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        read > 3,
        "the probe read too few files to tell: {}",
        out.stdout
    );

    // The API got the credential, not the header the code made up.
    let head = seen.recv().await.unwrap();
    assert!(
        head.contains(&format!("\r\nAuthorization: Bearer {SECRET}\r\n")),
        "{head}"
    );
    assert!(!head.contains("forged-inside"), "{head}");

    // Inside, the secret was nowhere: not in the environment, not in a file.
    assert!(!out.stdout.contains(SECRET), "the sandbox saw the secret");
    assert!(!out.stderr.contains(SECRET), "the sandbox saw the secret");

    // The record names the variable; the whole record never holds the value.
    let used: Vec<_> = out
        .network
        .iter()
        .filter(|a| a.port == port && a.allowed)
        .collect();
    assert_eq!(used.len(), 1, "{:?}", out.network);
    assert_eq!(used[0].credential.as_deref(), Some(VAR));
    assert!(
        out.network
            .iter()
            .any(|a| !a.allowed && a.method == "CONNECT" && a.credential.as_deref() == Some(VAR)),
        "{:?}",
        out.network
    );
    let record = serde_json::to_string(&out).unwrap();
    assert!(!record.contains(SECRET), "{record}");
    let policy = serde_json::to_string(&p).unwrap();
    assert!(policy.contains(VAR) && !policy.contains(SECRET), "{policy}");
}
