//! The standard `process_*` metrics, read from `/proc/self` when scraped,
//! so that CPU and memory per node can be compared with the work it did
//! (`otelraft bench` divides CPU seconds by acknowledged records).

use std::fmt::Write;

/// `process_cpu_seconds_total`, `process_resident_memory_bytes` and
/// `process_open_fds` in the text exposition format; empty where `/proc`
/// is not available.
pub fn render() -> String {
    let mut out = String::new();
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return out;
    };
    // Fields after the parenthesised command name, which may hold spaces.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return out;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `fields[0]` is
    // field 3 (the state), so they sit at indexes 11 and 12. RSS, in pages,
    // is field 24.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf only reads a constant of the running system.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK) as f64,
            libc::sysconf(libc::_SC_PAGESIZE) as f64,
        )
    };
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        if ticks > 0.0 {
            let _ = writeln!(
                out,
                "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
                 # TYPE process_cpu_seconds_total counter\n\
                 process_cpu_seconds_total {}",
                (utime + stime) / ticks
            );
        }
    }
    if let Some(rss) = field(24) {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes {}",
            rss * page
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            out,
            "# HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\n\
             process_open_fds {}",
            fds.count()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_cpu_and_memory_of_this_process() {
        let text = super::render();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0)
        };
        assert!(value("process_cpu_seconds_total") >= 0.0, "{text}");
        assert!(value("process_resident_memory_bytes") > 1e6, "{text}");
        assert!(value("process_open_fds") > 0.0, "{text}");
    }
}
