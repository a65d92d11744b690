//! Memory cgroups the tests make, to run a process under a memory limit.

use std::path::{Path, PathBuf};

/// A memory cgroup (v2, else v1) with a limit, removed when dropped.
pub struct Cgroup(pub PathBuf);

impl Cgroup {
    pub fn new(purpose: &str, limit: u64) -> Self {
        let name = format!("portcullis-{purpose}-{}", std::process::id());
        let (dir, file) = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            (PathBuf::from("/sys/fs/cgroup").join(&name), "memory.max")
        } else {
            (PathBuf::from("/sys/fs/cgroup/memory").join(&name), "memory.limit_in_bytes")
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e} (the test needs root)", dir.display()));
        std::fs::write(dir.join(file), limit.to_string()).unwrap();
        Self(dir)
    }

    pub fn oom_kills(&self) -> u64 {
        for (file, key) in [("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")] {
            if let Ok(text) = std::fs::read_to_string(self.0.join(file)) {
                return text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok()).unwrap_or(0);
            }
        }
        0
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
