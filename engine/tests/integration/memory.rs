//! The default memory pool is half the memory the engine may use: its container's limit as
//! the chart passes it (`--memory-limit-bytes`, or `PORTCULLIS_MEMORY_LIMIT_BYTES` from the
//! downward API) when that is below what the process's cgroup or host allows.

use std::process::Command;

use crate::common::ENGINE;

/// The pool `engine --check` logs with `args` and `env`.
fn pool(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(ENGINE)
        .args(["--dangerous-dev-principal", "alice", "--check"])
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let logged = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{logged}");
    let at = logged.find("memory_pool_bytes=").unwrap_or_else(|| panic!("no pool logged: {logged}"));
    logged[at..].split_whitespace().next().unwrap_or_default().to_string()
}

#[test]
fn the_pool_is_half_the_containers_memory_limit() {
    assert_eq!(pool(&["--memory-limit-bytes", "1073741824"], &[]), "memory_pool_bytes=536870912");
    assert_eq!(pool(&[], &[("PORTCULLIS_MEMORY_LIMIT_BYTES", "268435456")]), "memory_pool_bytes=134217728");
    // Without it, half of the cgroup's or the host's limit (test hosts have more than 1 GiB).
    let default = pool(&[], &[]);
    let bytes: u64 = default.trim_start_matches("memory_pool_bytes=").parse().unwrap();
    assert!(bytes > 536_870_912, "{default}");
    // A limit is never raised past what the kernel enforces: an absurd one is capped.
    let capped = pool(&["--memory-limit-bytes", "18446744073709551615"], &[]);
    assert_eq!(capped, default);
}
