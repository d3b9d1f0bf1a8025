//! `baton serve` started by a test: on a free loopback port, with the admin key it prints on
//! its first start, stopped (killed) when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::{Db, baton};

pub struct Server {
    pub child: Child,
    pub addr: String,
    /// What it printed on stdout (the first-start key, if any).
    pub key: Option<String>,
    /// How many interrupted runs it said it resumed.
    pub resumed: usize,
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failing test must not leave a server behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `baton serve` on a free loopback port, without a rate limit; waits until it says where it
/// listens.
pub fn serve(db: &Db) -> Server {
    serve_with(db, |_| {})
}

/// As [`serve`], with the command changed by `setup` first (another directory, variables,
/// more options).
pub fn serve_with(db: &Db, setup: impl FnOnce(&mut Command)) -> Server {
    serve_on(db.path().as_os_str(), setup)
}

/// As [`serve_with`], on the database `db` (a SQLite path or a `postgres://` URL).
pub fn serve_on(db: &std::ffi::OsStr, setup: impl FnOnce(&mut Command)) -> Server {
    let mut cmd = baton();
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--rate-limit", "off"])
        .arg("--db")
        .arg(db);
    setup(&mut cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut first_start = false;
    let mut resumed = 0;
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(a) = line.trim().strip_prefix("baton serving on http://") {
            addr = Some(a.to_string());
        }
        if line.contains("first start") {
            first_start = true;
        }
        if let Some(rest) = line.trim().strip_prefix("resumed ") {
            resumed = rest.split(' ').next().unwrap().parse().unwrap();
        }
        // The banner's last line.
        if line.contains("metrics:") {
            break;
        }
        line.clear();
    }
    // The rest of stderr is drained so the server never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let mut key = None;
    if first_start {
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut k = String::new();
        out.read_line(&mut k).unwrap();
        key = Some(k.trim().to_string());
    }
    Server {
        child,
        addr: addr.expect("the server did not say where it listens"),
        key,
        resumed,
    }
}
