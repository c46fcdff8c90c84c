//! What the machine kb runs on offers, for sizing PostgreSQL's memory.

/// The memory kb may count on, in kB: the machine's (`MemTotal` of /proc/meminfo), or the
/// container's limit when lower (cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`).
/// `None` where neither can be read.
pub fn memory_kb() -> Option<i64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| mem_total_kb(&text));
    let limit = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .find_map(|path| cgroup_limit_kb(&std::fs::read_to_string(path).ok()?));
    match (total, limit) {
        (Some(total), Some(limit)) => Some(total.min(limit)),
        (total, limit) => total.or(limit),
    }
}

fn mem_total_kb(meminfo: &str) -> Option<i64> {
    meminfo.lines().find_map(|line| line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// A cgroup memory limit in bytes as kB; "max" (v2) and v1's near-`i64::MAX` mean none.
fn cgroup_limit_kb(text: &str) -> Option<i64> {
    let bytes: i64 = text.trim().parse().ok()?;
    (bytes < 1 << 60).then_some(bytes / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meminfo_and_cgroup_limits() {
        assert_eq!(mem_total_kb("MemTotal:       24576000 kB\nMemFree:  1 kB\n"), Some(24_576_000));
        assert_eq!(mem_total_kb("MemFree:  1 kB\n"), None);
        assert_eq!(cgroup_limit_kb("max\n"), None);
        assert_eq!(cgroup_limit_kb("9223372036854771712\n"), None);
        assert_eq!(cgroup_limit_kb("2147483648\n"), Some(2 * 1024 * 1024));
        if std::path::Path::new("/proc/meminfo").exists() {
            assert!(memory_kb().is_some_and(|kb| kb > 0));
        }
    }
}
