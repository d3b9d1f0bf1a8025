//! test-support
pub mod cassette_server;
pub mod postgres;

/// For tests that need something installed (a model file, a program): `Some(found)` when it is
/// there; otherwise the test is skipped LOUDLY (`SKIPPED ...` on stdout and stderr, so nextest
/// shows it) and `None` comes back, unless the environment variable `require` is `1` (as
/// `make test` sets it, having installed the thing first), in which case the test fails with
/// `missing` as the reason.
pub fn found_or_skip<T>(require: &str, what: &str, found: Result<T, String>) -> Option<T> {
    match found {
        Ok(v) => Some(v),
        Err(missing) if std::env::var(require).is_ok_and(|v| v == "1") => {
            panic!("{require}=1 but {what} cannot run: {missing}")
        }
        Err(missing) => {
            println!("SKIPPED {what}: {missing} (set {require}=1 to make this a failure)");
            eprintln!("SKIPPED {what}: {missing} (set {require}=1 to make this a failure)");
            None
        }
    }
}
