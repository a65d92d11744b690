//! The memory this process may use, for limits derived from it: the engine's query pool, the
//! gateway's default connection cap.

use std::path::Path;

/// The memory this process may use: the smallest of its cgroup's limit (v2 or v1) and the
/// host's memory.
pub fn memory_limit() -> u64 {
    let host = meminfo_total(&read("/proc/meminfo")).unwrap_or(u64::MAX);
    let cgroup = cgroup_limit(&read("/proc/self/cgroup"), |path| read(path)).unwrap_or(u64::MAX);
    host.min(cgroup)
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `MemTotal:  24576000 kB` in bytes.
fn meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The limit of the cgroup `/proc/self/cgroup` names: v2 (`0::/path`, `memory.max`) or v1
/// (`N:memory:/path`, `memory.limit_in_bytes`), read through `read_file`. Where the cgroup
/// file system is mounted from inside the hierarchy (a container without a cgroup
/// namespace), the path's trailing components are tried, longest first. `max`, a missing
/// file and v1's "unlimited" (close to `i64::MAX`) are no limit.
fn cgroup_limit(proc_cgroup: &str, read_file: impl Fn(&str) -> String) -> Option<u64> {
    let mut limits = Vec::new();
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let (root, file) = if controllers.is_empty() {
            ("/sys/fs/cgroup", "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
        } else {
            continue;
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let found = (0..=parts.len()).find_map(|skip| {
            let tail: String = parts.iter().skip(skip).map(|p| format!("/{p}")).collect();
            let text = read_file(&format!("{root}{tail}/{file}"));
            (!text.is_empty()).then_some(text)
        });
        if let Some(bytes) = found.and_then(|text| text.trim().parse::<u64>().ok())
            && bytes < (1 << 62)
        {
            limits.push(bytes);
        }
    }
    limits.into_iter().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup_limit_is_read_from_v2_and_v1() {
        let v2 = cgroup_limit("0::/kubepods/pod1/c1\n", |path| {
            assert_eq!(path, "/sys/fs/cgroup/kubepods/pod1/c1/memory.max");
            "4294967296\n".into()
        });
        assert_eq!(v2, Some(4 << 30));
        assert_eq!(cgroup_limit("0::/\n", |_| "max\n".into()), None);
        let v1 = cgroup_limit("9:pids:/\n4:memory:/test\n0::/\n", |path| match path {
            "/sys/fs/cgroup/memory/test/memory.limit_in_bytes" => "536870912\n".into(),
            _ => String::new(),
        });
        assert_eq!(v1, Some(512 << 20));
        // Mounted from inside the hierarchy: /sys/fs/cgroup/memory is the container's own.
        let nested = cgroup_limit("4:memory:/outer/box/test\n", |path| match path {
            "/sys/fs/cgroup/memory/test/memory.limit_in_bytes" => "1073741824".into(),
            _ => String::new(),
        });
        assert_eq!(nested, Some(1 << 30));
        assert_eq!(cgroup_limit("4:memory:/\n", |_| "9223372036854771712\n".into()), None);
        assert_eq!(meminfo_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"), Some(24_576_000 * 1024));
    }
}
