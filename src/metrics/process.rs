//! The standard `process_*` metrics of the Prometheus client libraries,
//! read from `/proc/self` at scrape time (Linux only, as sluice is).

pub const CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const RESIDENT_BYTES: &str = "process_resident_memory_bytes";
pub const VIRTUAL_BYTES: &str = "process_virtual_memory_bytes";
pub const OPEN_FDS: &str = "process_open_fds";
pub const MAX_FDS: &str = "process_max_fds";
pub const THREADS: &str = "process_threads";
pub const START_TIME: &str = "process_start_time_seconds";

/// One reading of the daemon process.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Process {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    /// Start time, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    pub threads: u64,
}

impl Process {
    /// Reads `/proc/self`; a part that cannot be read stays 0.
    pub fn read() -> Process {
        let mut p = Process::default();
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        let (ticks, page) = (ticks.max(1) as f64, page.max(1) as u64);
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(f) = stat_fields(&stat)
        {
            // Fields after the command, counted from `state` (field 3) = index 0.
            let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            p.cpu_seconds = (num(11) + num(12)) as f64 / ticks;
            p.threads = num(17);
            p.virtual_bytes = num(20);
            p.resident_bytes = num(21) * page;
            if let Some(boot) = boot_time() {
                p.start_time_seconds = boot + num(19) as f64 / ticks;
            }
        }
        p.open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            p.max_fds = limit.rlim_cur;
        }
        p
    }
}

/// The fields of `/proc/PID/stat` after `(comm)`, which may hold spaces.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().collect())
}

/// Boot time, in seconds since the epoch (`btime` in `/proc/stat`).
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let p = Process::read();
        assert!(p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.open_fds >= 3 && p.max_fds >= p.open_fds, "{p:?}");
        assert!(p.threads >= 1);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds > now - 3600.0 && p.start_time_seconds <= now + 1.0, "{p:?}");
    }

    #[test]
    fn a_command_with_spaces_and_parens_does_not_shift_fields() {
        let f = stat_fields("12 (a b) c) S 1 2 3").unwrap();
        assert_eq!(f, vec!["S", "1", "2", "3"]);
    }
}
