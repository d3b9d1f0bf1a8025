//! How many inference threads a generation gets.
//!
//! llama.cpp's CPU threads meet at a barrier after every operation of the graph (hundreds per
//! token). When they outnumber the cores that are free, one of them is descheduled while the
//! others wait for it at the barrier, and throughput collapses (measured here: see
//! docs/local-model.md). So each generation takes the configured count only when that many
//! cores are free at its start, and fewer otherwise; one thread never waits for another.

use std::time::Duration;

/// Threads for a generation that starts now: `max`, lowered to the cores that are free. The
/// cores are those this process may use (`available_parallelism`: CPU affinity and cgroup
/// quota); a core is taken when another thread of the machine is running or waiting to run.
pub fn for_now(max: u32) -> u32 {
    if max <= 1 {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = u32::try_from(cores).unwrap_or(u32::MAX);
    match others_runnable() {
        Some(busy) => pick(max, cores, busy),
        // No /proc (not Linux): trust the configuration.
        None => max.min(cores).max(1),
    }
}

/// `max` threads, at most the cores left free by `busy` other runnable threads, at least one.
pub fn pick(max: u32, cores: u32, busy: u32) -> u32 {
    max.min(cores.saturating_sub(busy)).max(1)
}

/// Threads of the whole machine, other than the caller, that are running or waiting for a CPU.
/// The fourth field of /proc/loadavg ("running/total") counts them, the reader included. It is a
/// snapshot; the least of three taken a millisecond apart ignores short blips (a thread that
/// was just handing the request over) and keeps the steady ones (a build, another model).
fn others_runnable() -> Option<u32> {
    let mut least: Option<u32> = None;
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let n = runnable(&std::fs::read_to_string("/proc/loadavg").ok()?)?;
        least = Some(least.map_or(n, |l| l.min(n)));
    }
    least.map(|n| n.saturating_sub(1))
}

/// The running count of a /proc/loadavg line ("0.52 0.58 0.59 3/467 12345" gives 3).
fn runnable(loadavg: &str) -> Option<u32> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_count() {
        assert_eq!(runnable("0.52 0.58 0.59 3/467 12345\n"), Some(3));
        assert_eq!(runnable("0.52 0.58 0.59"), None);
        assert_eq!(runnable("a b c x/1 2"), None);
    }

    #[test]
    fn takes_only_free_cores() {
        assert_eq!(pick(2, 2, 0), 2, "quiet machine");
        assert_eq!(pick(2, 2, 1), 1, "one core taken");
        assert_eq!(pick(2, 2, 7), 1, "never fewer than one");
        assert_eq!(pick(4, 2, 0), 2, "never more than the cores");
        assert_eq!(pick(2, 8, 3), 2);
    }

    #[test]
    fn one_stays_one() {
        assert_eq!(for_now(1), 1);
        let n = for_now(2);
        assert!((1..=2).contains(&n));
    }
}
