//! What /proc says about a process or the machine: resident memory and CPU time.

/// The value of a `Name:   123 kB` line of a /proc file, in MiB (0 when absent).
pub fn proc_field_mib(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// (current RSS, peak RSS) of a process, in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    (
        proc_field_mib(&status, "VmRSS:"),
        proc_field_mib(&status, "VmHWM:"),
    )
}

/// Resident memory of a process split into anonymous pages (heap, stacks) and file pages (the
/// mapped binary and libraries), in MiB.
pub fn rss_split_mib(pid: u32) -> (f64, f64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let anonymous = proc_field_mib(&rollup, "Anonymous:");
    (anonymous, proc_field_mib(&rollup, "Rss:") - anonymous)
}

/// User plus system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/pid/stat, i.e. 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}
