//! The server process's own resource accounting, read from `/proc` (Linux).
//! Elsewhere every figure is `None`.

use serde::Serialize;

/// CPU time and memory of this process.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProcessStats {
    /// User plus system CPU time of all threads, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub rss_bytes: Option<u64>,
}

/// `/proc` reports CPU time in clock ticks of `USER_HZ`, which the kernel
/// fixes at 100 for user space on every architecture Linux supports.
const USER_HZ: f64 = 100.0;

fn cpu_seconds(stat: &str) -> Option<f64> {
    // Fields after the parenthesised command name (which may hold spaces):
    // state is field 3, utime field 14, stime field 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

fn rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Reads the current figures.
#[must_use]
pub fn read() -> ProcessStats {
    ProcessStats {
        cpu_seconds: std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| cpu_seconds(&s)),
        rss_bytes: std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| rss_bytes(&s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let stat = "4242 (my server) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(cpu_seconds(stat), Some(3.25));
        assert_eq!(
            rss_bytes("Name:\tserver\nVmRSS:\t  2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let now = read();
        assert!(now.rss_bytes.is_some_and(|b| b > 0));
        assert!(now.cpu_seconds.is_some());
    }
}
