//! One query cannot exhaust the engine: the queries that reached a 4 GiB limit in 7–8 s
//! (a 60M-group aggregation, a 600M-element `range`, a window sort over 300M rows) run
//! against a real engine process in a 1 GiB memory cgroup the test makes, while another
//! caller's `SELECT 1` goes every half second. Each ends in an answer or a clear error, the
//! probe never fails, and the kernel kills nothing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::cli::free_port;
use crate::common::cgroup::Cgroup;

const LIMIT: u64 = 1 << 30;

/// `(status, body)` of `POST /v1/sql` on the engine, by curl.
fn post(addr: &str, sql: &str, max_secs: u32) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", &max_secs.to_string(), "-w", "\n%{http_code}", "--data-binary", sql])
        .arg(format!("http://{addr}/v1/sql"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_string(), body.to_string())
}

#[test]
fn exhausting_queries_end_with_an_error_and_the_engine_keeps_serving() {
    let cgroup = Cgroup::new("exhaustion", LIMIT);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engine.yaml");
    let yaml = format!("{}\nlimits:\n  statement_timeout_secs: 30\n", engine::config::EMBEDDED_DEFAULT);
    std::fs::write(&config, yaml).unwrap();
    let engine_bin = Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("engine");
    let (http, flight) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let log = dir.path().join("engine.log");
    // Into the cgroup before exec, so the engine sizes its pool from the limit.
    let mut engine = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec {} --config {} --dangerous-dev-principal probe --http-listen {http} --flight-listen {flight}",
            cgroup.0.display(),
            engine_bin.display(),
            config.display()
        ))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpStream::connect(&http).is_ok()
    });
    assert!(up, "the engine did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains(&format!("memory_pool_bytes={}", LIMIT / 2)), "pool not sized from the cgroup: {logged}");

    let stop = Arc::new(AtomicBool::new(false));
    let (probes, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let prober = {
        let (stop, probes, failures, http) = (stop.clone(), probes.clone(), failures.clone(), http.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = post(&http, "SELECT 1 AS one", 20);
                probes.fetch_add(1, Ordering::Relaxed);
                if status != "200" || !body.contains("\"one\":1") {
                    eprintln!("probe failed: {status} {body}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    for (sql, allowed) in [
        (
            "SELECT value % 60000000 AS k, count(*) FROM range(1, 120000000) GROUP BY k ORDER BY 2 DESC LIMIT 1",
            &["200", "503"][..],
        ),
        ("SELECT cardinality(range(1, 600000000))", &["503"][..]),
        (
            "SELECT max(rn) FROM (SELECT row_number() OVER (ORDER BY random()) AS rn FROM range(1, 300000000))",
            &["200", "503"][..],
        ),
    ] {
        let (status, body) = post(&http, sql, 120);
        assert!(allowed.contains(&status.as_str()), "{sql}: {status} {body}");
        if status == "503" {
            assert!(body.contains("\"code\":\"resource_exhausted\""), "{sql}: {body}");
            assert!(
                ["statement_timeout_secs", "over the engine's limit", "Resources exhausted"]
                    .iter()
                    .any(|n| body.contains(n)),
                "{sql}: {body}"
            );
        }
        assert!(
            engine.try_wait().unwrap().is_none(),
            "{sql}: the engine died: {}",
            std::fs::read_to_string(&log).unwrap()
        );
    }
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    assert!(probes.load(Ordering::Relaxed) > 5, "too few probes ran");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "another caller's SELECT 1 failed");
    assert_eq!(cgroup.oom_kills(), 0, "the kernel killed in the engine's cgroup");
    let _ = engine.kill();
    let _ = engine.wait();
}
