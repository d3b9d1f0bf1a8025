//! The `local-sandbox` deploy target, end to end: a small Python HTTP app from a temp
//! directory, reached from the host through its published port; failures (the app exits, a
//! wrong health status, a failing build) with the app's output; stop and the lifetime ending
//! every process; no way from the app to the host's network.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use baton_sandbox::deploy::{DeploySpec, DeployTarget, DockerTarget, LocalSandbox, probe};
use baton_sandbox::{Error, Policy, Tier};

use crate::common;

/// Serves `/health` (status from `$HEALTH`, default 200), `/` (a greeting), `/file` (a file
/// the build wrote) and `/reach/HOST/PORT` (whether a TCP connection from inside succeeds).
const APP: &str = r#"
import http.server, os, socket
PORT = int(os.environ["PORT"])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            code, body = int(os.environ.get("HEALTH", "200")), b"ok"
        elif self.path.startswith("/reach/"):
            _, _, host, port = self.path.split("/")
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
                body = b"reached"
            except OSError as e:
                body = ("blocked: %s" % e).encode()
            code = 200
        elif self.path == "/file":
            code, body = 200, open("built.txt", "rb").read()
        else:
            code, body = 200, b"hello from the sandbox"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
print("listening on", PORT, flush=True)
http.server.HTTPServer(("127.0.0.1", PORT), H).serve_forever()
"#;

fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), APP).unwrap();
    dir
}

fn target() -> Option<LocalSandbox> {
    match LocalSandbox::new(Policy::new(Tier::Process)) {
        Ok(t) => Some(t),
        Err(e) => {
            common::skip(Tier::Process, "the local-sandbox deploy tests", &e);
            None
        }
    }
}

fn spec(dir: &Path) -> DeploySpec {
    let mut s = DeploySpec::new(dir, "python3 app.py", 8000);
    s.startup_timeout = Duration::from_secs(20);
    s
}

fn addr_of(url: &str) -> SocketAddr {
    url.strip_prefix("http://").unwrap().parse().unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || probe(addr, &path, Duration::from_secs(5)))
        .await
        .unwrap()
        .map(|h| (h.status, h.body))
}

/// Waits until nothing of the sandbox is left (`before`: what was there already).
async fn assert_clean(before: &[String]) {
    let left = crate::wait_clean(before).await;
    assert!(left.is_empty(), "left behind: {left:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_is_deployed_reached_from_the_host_and_stopped() {
    let _g = common::lock().await;
    let Some(t) = target() else { return };
    let before = common::leftovers();
    let dir = app_dir();
    let d = t.deploy(spec(dir.path())).await.unwrap();
    assert_eq!(d.target, "local-sandbox");
    assert!(d.url.starts_with("http://127.0.0.1:"), "{}", d.url);
    assert_eq!(d.command, "python3 app.py");
    assert_eq!((d.health.status, d.health.body.as_str()), (200, "ok"));
    assert!(d.running && d.id.starts_with("ls-"), "{d:?}");
    assert!(d.log_tail.contains("listening on 8000"), "{}", d.log_tail);
    let addr = addr_of(&d.url);
    assert_eq!(
        get(addr, "/").await.unwrap(),
        (200, "hello from the sandbox".to_string())
    );
    // Many connections at once, each carried.
    let all: Vec<_> = (0..8).map(|_| tokio::spawn(get(addr, "/"))).collect();
    for h in all {
        assert_eq!(h.await.unwrap().unwrap().0, 200);
    }
    let s = t.status(&d.id).await.unwrap();
    assert!(s.running);
    assert_eq!(s.health.status, 200);
    assert!(s.log_tail.contains("GET / HTTP"), "{}", s.log_tail);
    assert_eq!(t.ids(), vec![d.id.clone()]);
    // The app cannot change the files it was deployed from.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    t.stop(&d.id).await.unwrap();
    assert!(get(addr, "/").await.is_err(), "the port is still published");
    let e = t.status(&d.id).await.unwrap_err().to_string();
    assert!(e.contains("no deployment") && e.contains(&d.id), "{e}");
    assert!(t.ids().is_empty());
    assert_clean(&before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_ends_the_whole_process_tree() {
    let _g = common::lock().await;
    let Some(t) = target() else { return };
    let before = common::leftovers();
    let dir = app_dir();
    let mut s = spec(dir.path());
    // Children the app leaves running in the background, one detached from its session.
    s.start = "sleep 1000 & setsid sleep 1001 & exec python3 app.py".into();
    let d = t.deploy(s).await.unwrap();
    let running = common::leftovers();
    let sleeps = running.iter().filter(|l| l.contains("sleep 100")).count();
    assert_eq!(sleeps, 2, "{running:#?}");
    t.stop(&d.id).await.unwrap();
    assert_clean(&before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_that_exits_fails_the_deploy_with_its_output() {
    let _g = common::lock().await;
    let Some(t) = target() else { return };
    let before = common::leftovers();
    let dir = app_dir();
    let mut s = spec(dir.path());
    s.start = "echo 'cannot open config.toml' >&2; exit 3".into();
    let e = t.deploy(s).await.unwrap_err();
    let Error::Deploy { reason, log_tail } = &e else {
        panic!("{e}")
    };
    assert!(reason.contains("exited with status 3"), "{reason}");
    assert!(reason.contains("GET /health with 200"), "{reason}");
    assert!(log_tail.contains("cannot open config.toml"), "{log_tail}");
    assert!(e.to_string().contains("cannot open config.toml"), "{e}");
    assert!(t.ids().is_empty());
    assert_clean(&before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_health_status_fails_after_the_startup_timeout() {
    let _g = common::lock().await;
    let Some(t) = target() else { return };
    let before = common::leftovers();
    let dir = app_dir();
    let mut s = spec(dir.path());
    s.env.insert("HEALTH".into(), "503".into());
    s.startup_timeout = Duration::from_secs(2);
    let e = t.deploy(s).await.unwrap_err();
    let Error::Deploy { reason, log_tail } = &e else {
        panic!("{e}")
    };
    assert!(
        reason.contains("did not answer GET /health with 200 within 2s")
            && reason.contains("it answered 503"),
        "{reason}"
    );
    // http.server logs each request: the probes are in the tail.
    assert!(
        log_tail.contains("\"GET /health HTTP/1.0\" 503"),
        "{log_tail}"
    );
    // The expected status can be another.
    let mut s = spec(dir.path());
    s.env.insert("HEALTH".into(), "204".into());
    s.expected_status = 204;
    let d = t.deploy(s).await.unwrap();
    assert_eq!(d.health.status, 204);
    t.stop(&d.id).await.unwrap();
    assert_clean(&before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_build_runs_first_and_a_failing_build_stops_the_deploy() {
    let _g = common::lock().await;
    let Some(t) = target() else { return };
    let before = common::leftovers();
    let dir = app_dir();
    let mut s = spec(dir.path());
    s.build = Some("echo built-by-the-build > built.txt".into());
    let d = t.deploy(s).await.unwrap();
    assert_eq!(
        get(addr_of(&d.url), "/file").await.unwrap(),
        (200, "built-by-the-build\n".to_string())
    );
    assert!(
        !dir.path().join("built.txt").exists(),
        "the build changed the source"
    );
    t.stop(&d.id).await.unwrap();

    let mut s = spec(dir.path());
    s.build = Some("echo compiling; echo 'syntax error' >&2; exit 2".into());
    let e = t.deploy(s).await.unwrap_err();
    let Error::Deploy { reason, log_tail } = &e else {
        panic!("{e}")
    };
    assert!(reason.contains("the build `echo compiling;"), "{reason}");
    assert!(reason.contains("exited with status 2"), "{reason}");
    assert!(
        log_tail.contains("compiling") && log_tail.contains("syntax error"),
        "{log_tail}"
    );
    assert_clean(&before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_app_cannot_reach_the_host_network() {
    let _g = common::lock().await;
    let Some(t) = target() else { return };
    let before = common::leftovers();
    let host = TcpListener::bind("0.0.0.0:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port();
    // The host's own address on its default route, when it has one.
    let outward = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|u| u.connect("192.0.2.1:9").map(|_| u))
        .and_then(|u| u.local_addr())
        .ok()
        .map(|a| a.ip().to_string());
    let dir = app_dir();
    let d = t.deploy(spec(dir.path())).await.unwrap();
    let addr = addr_of(&d.url);
    let mut targets = vec!["127.0.0.1".to_string()];
    targets.extend(outward);
    for ip in targets {
        let (status, body) = get(addr, &format!("/reach/{ip}/{port}")).await.unwrap();
        assert_eq!(status, 200);
        assert!(
            body.starts_with("blocked:"),
            "{ip}:{port} from inside: {body}"
        );
    }
    assert!(
        host.accept().is_err(),
        "the host's listener got a connection"
    );
    t.stop(&d.id).await.unwrap();
    assert_clean(&before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_ends_at_its_lifetime() {
    let _g = common::lock().await;
    let Some(t) = target() else { return };
    let before = common::leftovers();
    let dir = app_dir();
    let mut s = spec(dir.path());
    s.limits.time = Duration::from_secs(3);
    s.startup_timeout = Duration::from_secs(3);
    let d = t.deploy(s).await.unwrap();
    let addr = addr_of(&d.url);
    assert_eq!(get(addr, "/").await.unwrap().0, 200);
    let mut ended = false;
    for _ in 0..100 {
        if !t.status(&d.id).await.unwrap().running {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended, "the app outlived its 3 s lifetime");
    assert!(get(addr, "/").await.is_err(), "the port is still published");
    assert_clean(&before).await;
    // Still listed (ended) until stopped.
    t.stop(&d.id).await.unwrap();
    assert!(t.ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_specs_are_refused_before_anything_runs() {
    let Some(t) = target() else { return };
    let dir = app_dir();
    let mut s = spec(dir.path());
    s.port = 0;
    let e = t.deploy(s).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e}");
    let e = t.stop("ls-0000").await.unwrap_err().to_string();
    assert!(e.contains("no deployment 'ls-0000'"), "{e}");
}

/// The `docker` target against the host's daemon (`DOCKER_HOST`), with the image
/// `BATON_DEPLOY_DOCKER_IMAGE` names (else the default), which must be there already. Skipped
/// loudly when no daemon answers or the image is missing; `BATON_REQUIRE_DOCKER=1` makes that
/// a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_target_deploys_reaches_and_stops() {
    let _g = common::lock().await;
    let image = std::env::var("BATON_DEPLOY_DOCKER_IMAGE").ok();
    let Some(t) = baton_test_support::found_or_skip(
        "BATON_REQUIRE_DOCKER",
        "the docker deploy target test",
        DockerTarget::new(None, image).map_err(|e| e.to_string()),
    ) else {
        return;
    };
    let dir = app_dir();
    let mut s = spec(dir.path());
    s.build = Some("echo built-in-a-container > built.txt".into());
    let d = t.deploy(s).await.unwrap();
    assert_eq!(d.target, "docker");
    assert!(
        d.command.starts_with("docker run -d --network none"),
        "{}",
        d.command
    );
    assert_eq!(d.health.status, 200);
    let addr = addr_of(&d.url);
    assert_eq!(
        get(addr, "/file").await.unwrap(),
        (200, "built-in-a-container\n".to_string())
    );
    let (_, body) = get(addr, "/reach/127.0.0.1/22").await.unwrap();
    assert!(body.starts_with("blocked:"), "{body}");
    assert!(t.status(&d.id).await.unwrap().running);
    t.stop(&d.id).await.unwrap();
    assert!(get(addr, "/").await.is_err(), "the port is still published");

    let mut s = spec(dir.path());
    s.start = "echo no such module >&2; exit 5".into();
    let e = t.deploy(s).await.unwrap_err().to_string();
    assert!(
        e.contains("exited with status 5") && e.contains("no such module"),
        "{e}"
    );
}
