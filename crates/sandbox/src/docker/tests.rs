//! Unit tests of `docker`.

use super::client::{call_within, demux};
use super::*;
use serde_json::json;

#[test]
fn chunked_responses_are_decoded() {
    let raw = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"Id\"\r\n7\r\n:\"abc\"}\r\n0\r\n\r\n";
    let r = parse_response(raw).unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.body, b"{\"Id\":\"abc\"}");
    assert!(parse_response(b"garbage").is_err());
}

#[test]
fn log_frames_are_split() {
    let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 3];
    raw.extend_from_slice(b"out");
    raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 3]);
    raw.extend_from_slice(b"err");
    let (mut o, mut e) = (Capped::new(100), Capped::new(100));
    demux(&raw, &mut o, &mut e);
    assert_eq!(
        (o.buf.as_slice(), e.buf.as_slice()),
        (&b"out"[..], &b"err"[..])
    );
    // The same stream fed one byte at a time.
    let (mut o, mut e) = (Capped::new(100), Capped::new(2));
    let mut d = Demux::default();
    for b in &raw {
        d.feed(std::slice::from_ref(b), &mut o, &mut e);
    }
    assert_eq!(
        (o.buf.as_slice(), e.buf.as_slice()),
        (&b"out"[..], &b"er"[..])
    );
    assert!(e.truncated && !o.truncated);
}

#[test]
fn create_body_carries_limits() {
    let p = Policy::new(Tier::Docker);
    let b = create_body(&p, &ExecRequest::new(["id"]), "img", (1000, 1000), None);
    let h = &b["HostConfig"];
    assert_eq!(h["ReadonlyRootfs"], true);
    assert_eq!(h["Privileged"], false);
    assert_eq!(h["CapDrop"], json!(["ALL"]));
    assert_eq!(h["PidsLimit"], 64);
    assert_eq!(h["NetworkMode"], "none");
    assert_eq!(h["LogConfig"]["Type"], "none");
    assert_eq!(b["User"], "1000:1000");
    assert_eq!(b["Labels"][LABEL], "1");
    assert!(
        h["Tmpfs"]["/work"]
            .as_str()
            .unwrap()
            .contains("size=104857600")
    );
    let sec: Vec<&str> = h["SecurityOpt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(sec[0], "no-new-privileges");
    let prof: Value = serde_json::from_str(sec[1].strip_prefix("seccomp=").unwrap()).unwrap();
    assert!(
        prof["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .contains(&json!("ptrace"))
    );
    assert!(
        h["MaskedPaths"]
            .as_array()
            .unwrap()
            .contains(&json!("/sys"))
    );
}

#[test]
fn files_go_in_through_a_readonly_bind() {
    let p = Policy::new(Tier::Docker);
    let b = create_body(
        &p,
        &ExecRequest::new(["python3", "main.py"]),
        "img",
        (1000, 1000),
        Some(Path::new("/tmp/in")),
    );
    assert_eq!(b["Cmd"][0], "/bin/sh");
    assert_eq!(b["Cmd"][4], "python3");
    assert!(
        b["HostConfig"]["Binds"]
            .as_array()
            .unwrap()
            .contains(&json!("/tmp/in:/.baton-input:ro"))
    );
}

#[test]
fn loopback_allows_inet_sockets_and_none_does_not() {
    let mut p = Policy::new(Tier::Docker);
    let none = seccomp_profile(&p).to_string();
    p.net = NetMode::Loopback;
    let lo = seccomp_profile(&p).to_string();
    assert!(none.len() > lo.len());
    assert!(none.contains(&format!("\"value\":{}", libc::AF_INET6)));
}

#[test]
fn the_socket_comes_from_the_policy_first() {
    let mut p = Policy::new(Tier::Docker);
    p.docker_host = Some("unix:///run/x.sock".into());
    assert_eq!(socket_path(&p).unwrap(), PathBuf::from("/run/x.sock"));
    p.docker_host = Some("/run/y.sock".into());
    assert_eq!(socket_path(&p).unwrap(), PathBuf::from("/run/y.sock"));
    p.docker_host = Some("tcp://10.0.0.1:2375".into());
    assert!(socket_path(&p).unwrap_err().contains("not a unix socket"));
    p.docker_image = Some("mine:1".into());
    assert_eq!(image_for(&p), "mine:1");
    let p = Policy::from_value(
        &json!({"tier": "docker", "docker_image": "img:2", "docker_host": "unix:///d.sock"}),
    )
    .unwrap();
    assert_eq!(
        (p.docker_image.as_deref(), p.docker_host.as_deref()),
        (Some("img:2"), Some("unix:///d.sock"))
    );
}

#[test]
fn exit_statuses_are_decoded() {
    let e = ended(&json!({"ExitCode": 137, "OOMKilled": true}), false);
    assert_eq!((e.exit_code, e.signal, e.oom), (None, Some(9), true));
    let e = ended(&json!({"ExitCode": 3}), false);
    assert_eq!((e.exit_code, e.signal), (Some(3), None));
    let e = ended(&json!({"ExitCode": 0}), true);
    assert_eq!(e.signal, Some(libc::SIGKILL));
}

#[tokio::test]
async fn talks_to_a_daemon_over_its_socket() {
    // A one-shot fake daemon: answers one request and records it.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let server = tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.unwrap();
        c.write_all(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n{\"Id\":\"x1\"}",
        )
        .await
        .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let body = json!({"Image": "img"});
    let r = request(&sock, "POST", "/containers/create", Some(&body))
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let seen = server.await.unwrap();
    assert!(seen.starts_with("POST /containers/create HTTP/1.1\r\n"));
    assert!(seen.ends_with("{\"Image\":\"img\"}"));
}

#[tokio::test]
async fn a_daemon_that_never_answers_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let _listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let e = call_within(Duration::from_millis(200), &sock, "GET", "/x", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("did not answer GET /x"), "{e}");
}

#[test]
fn no_daemon_is_a_plain_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let err = ping(&dir.path().join("none.sock")).unwrap_err();
    assert!(err.contains("does not exist"));
}
