#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn allow_list_matching() {
    let l = vec![
        "example.org".to_string(),
        "*.pkg.example".to_string(),
        "127.0.0.1:8080".to_string(),
    ];
    assert!(allowed(&l, "example.org", 443));
    assert!(allowed(&l, "EXAMPLE.org.", 80));
    assert!(!allowed(&l, "example.org", 22));
    assert!(!allowed(&l, "evil-example.org", 443));
    assert!(allowed(&l, "a.pkg.example", 443));
    assert!(!allowed(&l, "pkg.example", 443));
    assert!(allowed(&l, "127.0.0.1", 8080));
    assert!(!allowed(&l, "127.0.0.1", 80));
}

#[test]
fn heads_are_parsed_and_rewritten() {
    let (m, h, p, r) =
        parse_head("CONNECT example.org:443 HTTP/1.1\r\nHost: example.org\r\n\r\n").unwrap();
    assert_eq!(
        (m.as_str(), h.as_str(), p, r),
        ("CONNECT", "example.org", 443, None)
    );
    let (_, h, p, r) = parse_head(
        "GET http://a.example:8080/x?y HTTP/1.1\r\nHost: a\r\nProxy-Authorization: z\r\n\r\n",
    )
    .unwrap();
    assert_eq!((h.as_str(), p), ("a.example", 8080));
    assert_eq!(r.unwrap(), "GET /x?y HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(parse_head("GET /relative HTTP/1.1\r\n\r\n").is_err());
}

const SECRET: &str = "s3cret-token-value-1234";

fn cred(host: &str, upstream: Upstream) -> Armed {
    Armed {
        credential: Credential {
            host: host.into(),
            header: "Authorization".into(),
            value_env: "EXAMPLE_TOKEN".into(),
            format: Some("Bearer {}".into()),
            upstream,
        },
        value: Secret(format!("Bearer {SECRET}")),
    }
}

/// An upstream on loopback that answers each connection once and hands over the request
/// head it read.
async fn upstream() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let head = read_until_blank(&mut c).await;
                let _ = tx.send(head);
                let _ = c
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (port, rx)
}

async fn read_until_blank<S: AsyncRead + Unpin>(c: &mut S) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut b).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends `request` to the proxy as the sandbox would and returns the whole reply.
async fn ask(proxy: &Proxy, request: &str) -> String {
    let mut c = UnixStream::connect(proxy.socket_path()).await.unwrap();
    c.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_credential_header_replaces_the_sandboxs() {
    let head = "GET /v1/x HTTP/1.1\r\nHost: api.example.com\r\nauthorization: Bearer mine\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n";
    let out = with_credential(head, "Authorization", "Bearer real");
    assert_eq!(
        out,
        "GET /v1/x HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\nAuthorization: Bearer real\r\nConnection: close\r\n\r\n"
    );
}

#[tokio::test]
async fn plain_requests_to_a_credentialed_host_carry_the_credential() {
    let (port, mut seen) = upstream().await;
    let host = format!("127.0.0.1:{port}");
    let proxy = Proxy::start_armed(vec![host.clone()], vec![cred(&host, Upstream::Http)], None)
        .await
        .unwrap();
    let reply = ask(
        &proxy,
        &format!("GET http://{host}/v1/x HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer forged\r\nProxy-Authorization: x\r\n\r\n"),
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 200 OK") && reply.ends_with("ok"),
        "{reply}"
    );
    let head = seen.recv().await.unwrap();
    assert!(head.starts_with("GET /v1/x HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nAuthorization: Bearer {SECRET}\r\n")),
        "{head}"
    );
    assert!(
        !head.contains("forged") && !head.contains("Proxy-"),
        "{head}"
    );
    assert_eq!(head.matches("Authorization").count(), 1, "{head}");
    let log = proxy.finish().await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].allowed);
    assert_eq!(log[0].credential.as_deref(), Some("EXAMPLE_TOKEN"));
    let json = serde_json::to_string(&log).unwrap();
    assert!(!json.contains(SECRET), "{json}");
}

#[tokio::test]
async fn a_tunnel_to_a_credentialed_host_is_refused_and_explained() {
    let (port, mut seen) = upstream().await;
    let host = format!("127.0.0.1:{port}");
    let proxy = Proxy::start_armed(vec![host.clone()], vec![cred(&host, Upstream::Https)], None)
        .await
        .unwrap();
    let reply = ask(
        &proxy,
        &format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 403 Forbidden"), "{reply}");
    assert!(
        reply.contains(&format!("call http://127.0.0.1:{port}/")),
        "{reply}"
    );
    assert!(!reply.contains(SECRET), "{reply}");
    let log = proxy.finish().await;
    assert_eq!(log.len(), 1);
    assert!(!log[0].allowed);
    assert_eq!(log[0].credential.as_deref(), Some("EXAMPLE_TOKEN"));
    assert!(
        seen.try_recv().is_err(),
        "the upstream must not be contacted"
    );
}

#[tokio::test]
async fn hosts_without_a_credential_are_left_as_they_are() {
    let (port, mut seen) = upstream().await;
    let host = format!("127.0.0.1:{port}");
    let proxy = Proxy::start_armed(
        vec![host.clone(), "api.example.com".into()],
        vec![cred("api.example.com", Upstream::Https)],
        None,
    )
    .await
    .unwrap();
    let reply = ask(
        &proxy,
        &format!("GET http://{host}/x HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer mine\r\nConnection: keep-alive\r\n\r\n"),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    let head = seen.recv().await.unwrap();
    assert_eq!(
        head,
        format!(
            "GET /x HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer mine\r\nConnection: keep-alive\r\n\r\n"
        )
    );
    // A tunnel to it is still served.
    let (port2, _seen2) = upstream().await;
    drop(proxy);
    let host2 = format!("127.0.0.1:{port2}");
    let proxy = Proxy::start_armed(vec![host2.clone()], Vec::new(), None)
        .await
        .unwrap();
    let mut c = UnixStream::connect(proxy.socket_path()).await.unwrap();
    c.write_all(format!("CONNECT {host2} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_until_blank(&mut c).await;
    assert!(
        head.starts_with("HTTP/1.1 200 Connection established"),
        "{head}"
    );
    let log = proxy.finish().await;
    assert_eq!(log[0].credential, None);
}

fn test_cert() -> tokio_rustls::rustls::pki_types::CertificateDer<'static> {
    include_bytes!("../../tests/data/localhost-cert.der")
        .to_vec()
        .into()
}

/// A TLS upstream on loopback with the test's self-signed certificate for `localhost`.
async fn tls_upstream() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        include_bytes!("../../tests/data/localhost-key.der").to_vec(),
    ));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![test_cert()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let Ok(mut tls) = acceptor.accept(c).await else {
                continue;
            };
            let head = read_until_blank(&mut tls).await;
            let _ = tx.send(head);
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntls")
                .await;
            let _ = tls.shutdown().await;
        }
    });
    (port, rx)
}

#[tokio::test]
async fn an_https_upstream_gets_the_credential_over_tls() {
    let (port, mut seen) = tls_upstream().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(test_cert()).unwrap();
    let host = format!("localhost:{port}");
    let proxy = Proxy::start_armed(
        vec![host.clone()],
        vec![cred(&host, Upstream::Https)],
        Some(roots),
    )
    .await
    .unwrap();
    let reply = ask(
        &proxy,
        &format!("GET http://{host}/v1/me HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 200 OK") && reply.ends_with("tls"),
        "{reply}"
    );
    let head = seen.recv().await.unwrap();
    assert!(
        head.contains(&format!("Authorization: Bearer {SECRET}\r\n")),
        "{head}"
    );
    let log = proxy.finish().await;
    assert!(log[0].allowed && log[0].detail.is_none(), "{log:?}");
}

#[tokio::test]
async fn an_https_upstream_that_fails_the_certificate_check_gets_nothing() {
    let (port, mut seen) = tls_upstream().await;
    let host = format!("localhost:{port}");
    // Baton's own roots: the self-signed host is refused (502), nothing is sent to it.
    let proxy = Proxy::start_armed(vec![host.clone()], vec![cred(&host, Upstream::Https)], None)
        .await
        .unwrap();
    let reply = ask(&proxy, &format!("GET http://{host}/ HTTP/1.1\r\n\r\n")).await;
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    let log = proxy.finish().await;
    let detail = log[0].detail.clone().unwrap_or_default();
    assert!(
        detail.contains(&format!("TLS to localhost:{port} failed")),
        "{detail}"
    );
    assert!(!serde_json::to_string(&log).unwrap().contains(SECRET));
    assert!(
        seen.try_recv().is_err(),
        "no request reaches an unverified host"
    );
}

#[tokio::test]
async fn a_missing_variable_stops_the_proxy_from_starting() {
    let c = Credential {
        host: "api.example.com".into(),
        header: "Authorization".into(),
        value_env: "BATON_TEST_PROXY_UNSET_TOKEN".into(),
        format: None,
        upstream: Upstream::Https,
    };
    let e = Proxy::start(vec!["api.example.com".into()], &[c])
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("BATON_TEST_PROXY_UNSET_TOKEN is not set") && e.contains("api.example.com"),
        "{e}"
    );
}
