//! Standard output for every command. A reader that goes away (`baton runs show X | head -1`)
//! closes the pipe: Rust's `println!` then panics (exit 101). Here the first failed write marks
//! stdout closed and every later write is dropped, so the command ends quietly with its own exit
//! code (a run keeps going to its end and is recorded as usual), as other CLIs do.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a newline to stdout, unless stdout was found closed.
pub fn line(text: impl std::fmt::Display) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        // A closed pipe (or a full disk behind a redirect): nothing more can be shown there.
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!` for command output: never panics on a closed pipe.
macro_rules! outln {
    () => { $crate::out::line("") };
    ($($arg:tt)*) => { $crate::out::line(format_args!($($arg)*)) };
}

static ERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a newline to stderr, unless stderr was found closed (`2>&1 | head`).
pub fn err_line(text: impl std::fmt::Display) {
    if ERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if writeln!(std::io::stderr().lock(), "{text}").is_err() {
        ERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `eprintln!` for diagnostics: never panics on a closed pipe.
macro_rules! errln {
    () => { $crate::out::err_line("") };
    ($($arg:tt)*) => { $crate::out::err_line(format_args!($($arg)*)) };
}
