//! The server's CPU time and memory, read from /proc for its process id.

use std::time::Duration;

/// Kernel clock ticks per second for /proc/PID/stat times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub cpu: Duration,
    pub rss_bytes: u64,
}

pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat: index 11 and 12 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(ProcSample {
        cpu: Duration::from_secs_f64(ticks as f64 / TICKS_PER_SEC),
        rss_bytes: rss_kb * 1024,
    })
}

/// UDP datagrams the kernel dropped because a socket's receive buffer was full,
/// machine-wide (RcvbufErrors in /proc/net/snmp). On loopback these are losses of
/// the server's socket or the generator's, so a run should see none.
pub fn udp_receive_buffer_drops() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let s = super::sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_bytes > 0);
    }

    #[test]
    fn reads_udp_drops() {
        assert!(super::udp_receive_buffer_drops().is_some());
    }
}
