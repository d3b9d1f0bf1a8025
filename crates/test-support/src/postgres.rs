//! A real PostgreSQL server for tests, on loopback, in a temporary folder.
//!
//! [`database`] gives a test a fresh, empty database (a URL `postgres://baton@127.0.0.1:PORT/NAME`)
//! on a server shared by every test of the process: `cargo test` runs a test binary as one
//! process (one server for the binary), nextest runs each test as its own (one server each).
//! The server's files are made by `initdb` once per machine and PostgreSQL version (a template
//! under the system's temporary folder, which takes seconds) and copied for each server (well
//! under a second).
//!
//! The binaries are looked up in `BATON_PG_BIN`, then `/usr/lib/postgresql/<newest>/bin` (Debian's
//! `postgresql` package), then `PATH`. PostgreSQL refuses to run as root: as root, the server
//! runs as the `postgres` user (which Debian's package creates) through `runuser`.
//!
//! The server stops, and its folder is removed, when the test process ends however it ends (a
//! panic, a kill): it runs under a shell that waits for its standard input, a pipe held by the
//! test process, to close.
//!
//! Without PostgreSQL the tests that ask for a database are skipped loudly (see
//! [`crate::found_or_skip`]); `BATON_REQUIRE_POSTGRES=1`, as `make test` sets it after
//! installing the package, makes that a failure.

// A test harness: it runs PostgreSQL's own programs (initdb, postgres, createdb), never a
// workflow's code, so it does not go through the sandbox.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The environment variable that turns a skip for lack of PostgreSQL into a failure.
pub const REQUIRE: &str = "BATON_REQUIRE_POSTGRES";

/// A running server (kept for the process's life).
pub struct Server {
    port: u16,
    bin: PathBuf,
    /// The watchdog shell; its stdin is the pipe whose closing stops the server.
    _child: Mutex<Child>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static SKIPS: AtomicU32 = AtomicU32::new(0);
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A fresh database on this process's server for the test `what`: its URL, or `None` (the test
/// is skipped, loudly) when PostgreSQL cannot run here and [`REQUIRE`] is not `1`.
pub fn database(what: &str) -> Option<String> {
    let server = SERVER.get_or_init(start);
    let url = match server {
        Ok(s) => s.create_database(),
        Err(e) => Err(e.clone()),
    };
    let skipped = url.is_err();
    let r = crate::found_or_skip(REQUIRE, &format!("{what} (PostgreSQL)"), url);
    if skipped {
        let n = SKIPS.fetch_add(1, Ordering::Relaxed) + 1;
        eprintln!("SKIPPED PostgreSQL tests in this process so far: {n}");
    }
    r
}

/// The port of this process's server (starting it), for tests that build URLs of their own.
pub fn server_port() -> Result<u16, String> {
    match SERVER.get_or_init(start) {
        Ok(s) => Ok(s.port),
        Err(e) => Err(e.clone()),
    }
}

impl Server {
    fn create_database(&self) -> Result<String, String> {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "baton",
            ])
            .arg(&name)
            .output()
            .map_err(|e| format!("cannot run createdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "createdb {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(format!("postgres://baton@127.0.0.1:{}/{name}", self.port))
    }
}

/// The folder of PostgreSQL's programs.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("BATON_PG_BIN") {
        let d = PathBuf::from(d);
        return if d.join("postgres").exists() {
            Ok(d)
        } else {
            Err(format!(
                "BATON_PG_BIN={}: no `postgres` program there",
                d.display()
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("postgres").exists() && d.join("initdb").exists())
        .ok_or_else(|| {
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres, none on PATH; \
             Debian package `postgresql`)"
                .to_string()
        })
}

fn is_root() -> bool {
    // The effective uid, from the kernel (no libc here).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The uid and gid of the `postgres` user (from /etc/passwd).
fn postgres_user() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| {
            "running as root, and there is no `postgres` user to run PostgreSQL as \
             (PostgreSQL refuses root)"
                .to_string()
        })
}

/// A command run as the `postgres` user when we are root, as ourselves otherwise.
fn as_server_user(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn chown_tree(dir: &Path, ids: Option<(u32, u32)>) -> Result<(), String> {
    let Some((uid, gid)) = ids else {
        return Ok(());
    };
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let e = e.map_err(|e| e.to_string())?;
            chown_tree(&e.path(), ids)?;
        }
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The initdb'd template for this version (made once per machine).
fn template(bin: &Path, ids: Option<(u32, u32)>) -> Result<PathBuf, String> {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("pg")
        .to_string();
    let uid = ids.map_or(0, |(u, _)| u);
    let dir = std::env::temp_dir().join(format!("baton-pg-template-{version}-{uid}"));
    if dir.join("PG_VERSION").exists() {
        return Ok(dir);
    }
    let tmp = std::env::temp_dir().join(format!(
        "baton-pg-template-{version}-{uid}.{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    chown_tree(&tmp, ids)?;
    let made = run(
        as_server_user(ids.is_some(), &bin.join("initdb"))
            .arg("-D")
            .arg(&tmp)
            .args(["-A", "trust", "-U", "baton", "-E", "UTF8", "--no-sync"])
            .args(["--locale", "C"]),
        "initdb",
    );
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    made?;
    // Another process may have made it meanwhile: theirs is as good.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if dir.join("PG_VERSION").exists() {
        Ok(dir)
    } else {
        Err(format!("the template {} was not made", dir.display()))
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    run(Command::new("cp").arg("-a").arg(from).arg(to), "cp -a")
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

fn start() -> Result<Server, String> {
    let bin = bin_dir()?;
    let root = is_root();
    let ids = if root { Some(postgres_user()?) } else { None };
    let template = template(&bin, ids)?;
    let dir = std::env::temp_dir().join(format!("baton-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let data = dir.join("data");
    copy_tree(&template, &data)?;
    chown_tree(&dir, ids)?;
    let port = free_port()?;
    // The shell starts the server, waits for its stdin (our pipe) to close, then stops the
    // server (fast shutdown) and removes the folder.
    let script = format!(
        "'{pg}' -D '{data}' -p {port} -h 127.0.0.1 -k '{dir}' -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
         -c shared_buffers=16MB \
         >'{dir}/log' 2>&1 & p=$!; cat >/dev/null; kill -INT $p; wait $p; rm -rf '{dir}'",
        pg = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
    );
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", &script]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &script]);
        c
    };
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start PostgreSQL: {e}"))?;
    let child = Mutex::new(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        let exited = child
            .lock()
            .map_err(|e| e.to_string())?
            .try_wait()
            .map_err(|e| e.to_string())?;
        if exited.is_some() || Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            return Err(format!(
                "PostgreSQL did not start on 127.0.0.1:{port}: {}",
                log.trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Server {
        port,
        bin,
        _child: child,
    })
}
