//! The `gateway` binary end to end: `tls init/add`, `check`, `run` streaming a large result
//! with bounded memory, and `up` with its printed commands.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");

fn gateway(args: &[&str]) -> std::process::Output {
    Command::new(GATEWAY).args(args).output().unwrap()
}

#[test]
fn tls_init_and_add_write_a_usable_pki() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(gateway(&["tls", "init", "--dir", d]).status.success());
    let out = gateway(&["tls", "add", "api", "--dir", d, "--host", "localhost", "--ip", "127.0.0.1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = gateway(&["tls", "add", "etl", "--dir", d, "--client", "--spiffe-id", "spiffe://x.example/etl"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    #[cfg(unix)]
    for key in ["ca-key.pem", "api-key.pem", "etl-key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    // The client certificate names its SPIFFE ID.
    let pem = std::fs::read(dir.path().join("etl.pem")).unwrap();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem).unwrap();
    let principal = gateway::internal::principal_from_certificate(&der).unwrap();
    assert_eq!(principal.id, "spiffe://x.example/etl");
    // A second init keeps the CA.
    let before = std::fs::read(dir.path().join("ca.pem")).unwrap();
    assert!(gateway(&["tls", "init", "--dir", d]).status.success());
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), before);
    // add without a CA fails with a hint.
    let empty = tempfile::tempdir().unwrap();
    let out = gateway(&["tls", "add", "x", "--dir", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls init"));
}

/// A config file in the PKI folder, signing stamps with the key at `stamp-key.pem` there.
fn write_config(pki: &common::Pki, extra: &str, api_upstream: &str) -> std::path::PathBuf {
    let stamp_key = pki.path().join("stamp-key.pem");
    if !stamp_key.exists() {
        common::stamp_keys(pki.path());
    }
    let (cert, key) = pki.leaf("server");
    let yaml = format!(
        "api: {{listen: '127.0.0.1:0', upstream: '{api_upstream}'}}\nflight: {{listen: '127.0.0.1:0', upstream: 'http://127.0.0.1:1'}}\nhealth: {{listen: '127.0.0.1:0'}}\ntls:\n  certificate_file: {}\n  key_file: {}\n  client_auth: required\n  client_ca_file: {}\nstamp:\n  key_file: {}\nauthorization:\n  policies: {}\n{extra}",
        cert.display(),
        key.display(),
        pki.ca().display(),
        stamp_key.display(),
        common::allow_all_policies(pki.path()).display()
    );
    let path = pki.path().join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn check_accepts_good_config_and_names_the_field_of_bad_ones() {
    let pki = common::Pki::new();
    let path = write_config(&pki, "", "http://127.0.0.1:8091");
    let out = gateway(&["check", "-c", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("unknown field", vec![], "timeouts:\n  idle: 3\n"),
        ("key of another certificate", vec!["--tls-key-file".into(), pki.leaf("workload").1.display().to_string()], ""),
        (
            "expired certificate",
            vec![
                "--tls-certificate-file".into(),
                pki.leaf("expired").0.display().to_string(),
                "--tls-key-file".into(),
                pki.leaf("expired").1.display().to_string(),
            ],
            "",
        ),
        ("unset env reference", vec!["--tls-key".into(), "${env:PORTCULLIS_SURELY_UNSET}".into()], ""),
        ("zero limit", vec![], "limits:\n  max_connections_per_ip: 0\n"),
        ("zero deadline", vec![], "timeouts:\n  client_body_secs: 0\n"),
        ("zero threads", vec![], "runtime:\n  worker_threads: 0\n"),
        // Continues the `authorization:` section the config ends with.
        ("missing engine config", vec![], "  engine_config: /nonexistent/engine.yaml\n"),
    ];
    for (name, flags, extra) in cases {
        let path = write_config(&pki, extra, "http://127.0.0.1:8091");
        let mut args = vec!["check".to_string(), "-c".into(), path.display().to_string()];
        args.extend(flags);
        let out = Command::new(GATEWAY).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        let expected = match name {
            "unknown field" => "timeouts",
            "key of another certificate" => "tls.key",
            "expired certificate" => "expired",
            "zero limit" => "at `limits.max_connections_per_ip`: must be at least 1",
            "zero deadline" => "at `timeouts.client_body_secs`: must be at least 1",
            "zero threads" => "at `runtime.worker_threads`: must be at least 1",
            "missing engine config" => "at `authorization.engine_config`: /nonexistent/engine.yaml: no such file",
            _ => "PORTCULLIS_SURELY_UNSET",
        };
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    // An encrypted key gets a message that says so.
    let encrypted = pki.path().join("enc.pem");
    std::fs::write(&encrypted, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
        .unwrap();
    let path = write_config(&pki, "", "http://127.0.0.1:8091");
    let out = gateway(&["check", "-c", path.to_str().unwrap(), "--tls-key-file", encrypted.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("encrypted"), "{}", String::from_utf8_lossy(&out.stderr));
    // Inline PEM through a ${file:} reference works like the _file form.
    let (cert, key) = pki.leaf("server");
    let out = gateway(&[
        "check",
        "-c",
        path.to_str().unwrap(),
        "--tls-certificate",
        &format!("${{file:{}}}", cert.display()),
        "--tls-key",
        &format!("${{file:{}}}", key.display()),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A memory figure of a process (KiB), from /proc: `VmHWM` (peak resident), `VmRSS` (now).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn peak_rss_kib(pid: u32) -> u64 {
    memory_kib(pid, "VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_result_streams_through_with_bounded_gateway_memory() {
    let stack = common::Stack::start(gateway::config::ClientAuth::Required).await;
    // A second gateway, as its own process (so its memory can be measured), in front of the
    // stack's engine, signing with the stack's stamp key (which the engine trusts).
    let pki = &stack.pki;
    let path = write_config(pki, "", &format!("http://{}", stack.engine.http_addr));
    let (mut child, addr, _log) = spawn_run(Command::new(GATEWAY).args(["run", "-c", path.to_str().unwrap()]));
    let client = stack.client(Some("workload"));
    let baseline = peak_rss_kib(child.id());

    // About 300 MB of CSV, counted as it streams, never held by this test either.
    let sql = "SELECT value, repeat('x', 100) AS pad FROM generate_series(1, 2800000)";
    let tls = client.connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::post("/v1/sql")
        .header("host", "localhost")
        .header("accept", "text/csv")
        .body(http_body_util::Full::new(bytes::Bytes::from(sql)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut total = 0u64;
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            total += data.len() as u64;
        }
    }
    let peak = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(total > 300_000_000, "only {total} bytes streamed");
    // The gateway's peak memory grew by far less than what passed through it.
    let growth_mib = (peak.saturating_sub(baseline)) / 1024;
    assert!(growth_mib < 64, "gateway peak RSS grew by {growth_mib} MiB while streaming {} MiB", total / 1024 / 1024);
    println!("streamed {} MiB; gateway peak RSS {} MiB (grew {growth_mib} MiB)", total / 1024 / 1024, peak / 1024);
}

/// Starts a `gateway run` command with info logs on stderr: the child, its API address (from
/// the startup log line, with a deadline) and every log line as it comes.
fn spawn_run(command: &mut Command) -> (std::process::Child, std::net::SocketAddr, std::sync::mpsc::Receiver<String>) {
    let mut child = command.env("RUST_LOG", "info").stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (log_tx, log_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("api_addr=").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
            let _ = log_tx.send(line);
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("gateway did not log its address").parse().unwrap();
    (child, addr, log_rx)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `gateway up` on these five ports (api, flight, health, engine http, engine flight); the
/// child and what it printed up to its usage line.
pub fn spawn_up(state: &std::path::Path, ports: &[String]) -> (std::process::Child, String) {
    spawn_up_with(state, ports, &[])
}

/// [`spawn_up`] with more flags.
pub fn spawn_up_with(state: &std::path::Path, ports: &[String], extra: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(GATEWAY)
        .args(["up", "--state-dir", state.to_str().unwrap()])
        .args(extra)
        .args(["--api-listen", &ports[0], "--flight-listen", &ports[1], "--health-listen", &ports[2]])
        .args(["--engine-http-listen", &ports[3], "--engine-flight-listen", &ports[4]])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line.contains("Ctrl-C stops") {
                let _ = tx.send(text.clone());
            }
        }
    });
    let printed = rx.recv_timeout(Duration::from_secs(60)).expect("gateway up did not print its usage");
    (child, printed)
}

/// A gateway killed hard (SIGKILL) takes its engine with it, so the next `gateway up` starts;
/// and `gateway up` refuses, without printing "up", when something else holds the engine's port.
#[test]
fn a_killed_gateway_up_takes_its_engine_and_a_busy_engine_port_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let ports: Vec<String> = (0..5).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let (mut child, _) = spawn_up(state.path(), &ports);
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpStream::connect(&ports[3]).is_err()
    });
    assert!(gone, "the engine outlived its killed gateway");
    let (mut again, printed) = spawn_up(state.path(), &ports);
    assert!(printed.contains("Ctrl-C stops"));
    Command::new("kill").arg("-TERM").arg(again.id().to_string()).status().unwrap();
    assert!(again.wait().unwrap().success());

    // A busy address is named with the flag that sets it, before anything starts.
    for (busy, expected) in [
        (3, format!("the engine's address {} is in use", ports[3])),
        (2, format!("the gateway's address {} (--health-listen) is in use", ports[2])),
        (0, format!("the gateway's address {} (--api-listen) is in use", ports[0])),
    ] {
        let squatter = std::net::TcpListener::bind(&ports[busy]).unwrap();
        let out = Command::new(GATEWAY)
            .args(["up", "--state-dir", state.path().to_str().unwrap()])
            .args(["--api-listen", &ports[0], "--flight-listen", &ports[1], "--health-listen", &ports[2]])
            .args(["--engine-http-listen", &ports[3], "--engine-flight-listen", &ports[4]])
            .output()
            .unwrap();
        drop(squatter);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(!stdout.contains("Ctrl-C stops"), "{stdout}");
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(!stderr.contains("health.listen"), "{stderr}");
    }
}

#[test]
fn up_starts_the_stack_and_its_printed_commands_work() {
    let engine_bin = std::path::Path::new(GATEWAY).with_file_name("engine");
    assert!(
        engine_bin.exists(),
        "{} missing: `cargo test --workspace` (or `cargo build -p engine`) builds it",
        engine_bin.display()
    );
    let state = tempfile::tempdir().unwrap();
    let ports: Vec<String> = (0..5).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let (mut child, printed) = spawn_up(state.path(), &ports);

    // Every curl command exactly as printed (lines joined by the shell's `\` continuation).
    let curls: Vec<&str> = printed
        .match_indices("curl --cacert")
        .map(|(start, _)| {
            let data = printed[start..].find("-d '").unwrap() + start + 4;
            let end = printed[data..].find('\'').unwrap() + data + 1;
            &printed[start..end]
        })
        .collect();
    assert_eq!(curls.len(), 6, "{printed}");
    let run = |curl: &str| {
        let out = Command::new("sh").arg("-c").arg(format!("{curl} -sS -w '\\n%{{http_code}}'")).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.to_string(), body.to_string())
    };
    // mTLS: the workload's SPIFFE ID is the principal.
    let (status, body) = run(curls[0]);
    assert_eq!(status, "200", "{}\n{body}", curls[0]);
    assert!(body.contains("spiffe://portcullis.dev/workload/dev-client"), "{body}");
    // Two tenants' API keys, the same query, different rows.
    assert!(curls[1].contains("X-API-Key: pcl_") && curls[2].contains("X-API-Key: pcl_"), "{printed}");
    let (status, acme) = run(curls[1]);
    assert_eq!(status, "200", "{acme}");
    assert!(acme.contains("\"tenant\":\"acme\"") && !acme.contains("globex"), "{acme}");
    let (status, globex) = run(curls[2]);
    assert_eq!(status, "200", "{globex}");
    assert!(globex.contains("\"tenant\":\"globex\"") && !globex.contains("acme"), "{globex}");
    // The other tenant's dataset: refused by Cedar, naming the action and dataset.
    let (status, body) = run(curls[3]);
    assert_eq!(status, "403", "{body}");
    assert!(body.contains("select on dataset datafusion.globex.orders is not allowed"), "{body}");
    // One shared table: each tenant's own customers, emails and phones masked.
    let (status, acme) = run(curls[4]);
    assert_eq!(status, "200", "{acme}");
    assert!(
        acme.contains("Ada Lovelace") && acme.contains("***@lovelace.example") && acme.contains("***0101"),
        "{acme}"
    );
    assert!(!acme.contains("Hank") && !acme.contains("ada@lovelace.example") && !acme.contains("7946 0101"), "{acme}");
    let (status, globex) = run(curls[5]);
    assert_eq!(status, "200", "{globex}");
    assert!(
        globex.contains("Hank Scorpio") && globex.contains("***@globex.example") && !globex.contains("Ada"),
        "{globex}"
    );

    // The Python (ADBC over pyarrow) snippet exactly as printed.
    let py_start = printed.find("python3 -c \"").unwrap();
    let py_end = printed[py_start..].find("print(cur.fetch_arrow_table())\"").unwrap()
        + py_start
        + "print(cur.fetch_arrow_table())\"".len();
    let out = Command::new("sh").arg("-c").arg(&printed[py_start..py_end]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{text}{}", &printed[py_start..py_end], String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("spiffe://portcullis.dev/workload/dev-client"), "{text}");

    // The exec probe of the scratch image: 0 on a 2xx answer, 1 on anything else.
    let ready = format!("http://{}/readyz", ports[2]);
    let out = gateway(&["health", "--url", &ready]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = gateway(&["health", "--url", &format!("http://{}/health", ports[3])]);
    assert!(out.status.success(), "engine /health: {}", String::from_utf8_lossy(&out.stderr));
    let out = gateway(&["health", "--url", &format!("http://{}/nope", ports[2])]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"), "{}", String::from_utf8_lossy(&out.stderr));

    // SIGTERM stops the gateway and, with it, the engine.
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(std::net::TcpStream::connect(&ports[3]).is_err(), "the engine still listens after shutdown");
    let out = gateway(&["health", "--url", &ready]);
    assert_eq!(out.status.code(), Some(1), "a stopped gateway must fail its probe");
    assert!(String::from_utf8_lossy(&out.stderr).contains("connect"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `gateway up --engine-config FILE`: your datasets under the shipped tenant policies, the
/// printed commands list what each key may read, an edit of the file is served without a
/// restart, and the state folder's policies come with their tests.
#[test]
fn up_serves_your_own_engine_config_and_copies_the_policy_tests() {
    let state = tempfile::tempdir().unwrap();
    let own = tempfile::tempdir().unwrap();
    std::fs::write(own.path().join("notes.csv"), "id,note\n1,first\n2,second\n").unwrap();
    let engine_yaml = own.path().join("engine.yaml");
    let datasets = "datasets:\n  - {name: acme.notes, path: notes.csv, tenant: acme}\n  - {name: globex.notes, path: notes.csv, tenant: globex}\n";
    std::fs::write(&engine_yaml, datasets).unwrap();
    let ports: Vec<String> = (0..5).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let (mut child, printed) = spawn_up_with(state.path(), &ports, &["--engine-config", engine_yaml.to_str().unwrap()]);
    assert!(printed.contains(&format!("Your engine configuration, {}", engine_yaml.display())), "{printed}");
    assert!(!printed.contains("my_orders"), "the demo tour printed for your own data: {printed}");
    let listings: Vec<&str> = printed.lines().map(str::trim).filter(|l| l.ends_with("/v1/datasets")).collect();
    assert_eq!(listings.len(), 2, "{printed}");
    let run = |curl: &str| {
        let out = Command::new("sh").arg("-c").arg(format!("{curl} -sS")).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let acme = run(listings[0]);
    assert!(acme.contains("\"acme.notes\"") && !acme.contains("globex.notes"), "{acme}");
    let globex = run(listings[1]);
    assert!(globex.contains("\"globex.notes\"") && !globex.contains("acme.notes"), "{globex}");
    let query = format!(
        "{} -H 'content-type: text/plain' -d 'SELECT count(*) AS n FROM acme.notes'",
        listings[0].replace("/v1/datasets", "/v1/sql")
    );
    assert!(run(&query).contains(r#"[{"n":2}]"#), "{query}");

    // One edit of your file: served by the engine and allowed by the gateway, no restart.
    std::fs::write(&engine_yaml, format!("{datasets}  - {{name: acme.more_notes, path: notes.csv, tenant: acme}}\n"))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let more = query.replace("acme.notes", "acme.more_notes");
    while !run(&more).contains(r#"[{"n":2}]"#) {
        assert!(std::time::Instant::now() < deadline, "{more}: {}", run(&more));
        std::thread::sleep(Duration::from_millis(200));
    }

    // The policies and their tests, copied: `policy test` runs them.
    let policies = state.path().join("policies");
    let demo_engine = state.path().join("engine.yaml");
    let out =
        gateway(&["policy", "test", "--engine-config", demo_engine.to_str().unwrap(), policies.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains(" 0 failed") && !stdout.contains(" 0 passed"), "{stdout}");
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(child.wait().unwrap().success());

    // A file that is not there: a clear error before anything starts.
    let out =
        gateway(&["up", "--state-dir", state.path().to_str().unwrap(), "--engine-config", "/nonexistent/engine.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--engine-config /nonexistent/engine.yaml: no such file"));
}

#[test]
fn policy_commands_validate_test_and_check_with_exit_codes() {
    let shipped = common::shipped_policies();
    let dir = shipped.to_str().unwrap();
    let out = gateway(&["policy", "validate", dir]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let engine = common::embedded_engine_config();
    let out = gateway(&["policy", "test", "--engine-config", engine.to_str().unwrap(), dir]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains(" 0 failed"), "{stdout}");

    let check = |resource: &str| {
        gateway(&[
            "policy",
            "check",
            "--dir",
            dir,
            "--principal",
            "Service::\"dev-acme\"",
            "--group",
            "acme",
            "--tenant",
            "acme",
            "--action",
            "select",
            "--resource",
            resource,
        ])
    };
    let out = check("Dataset::\"datafusion.acme.orders\"");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ALLOW\n  determining policies: tenant-read"));
    let out = check("Dataset::\"datafusion.globex.orders\"");
    assert_eq!(out.status.code(), Some(3), "denied is exit code 3");
    assert!(String::from_utf8_lossy(&out.stdout).contains("DENY"));

    // A misspelt action is an error (exit 1) naming the declared ones, not a "deny".
    let out = gateway(&[
        "policy",
        "check",
        "--dir",
        dir,
        "--principal",
        "User::\"a\"",
        "--action",
        "read",
        "--resource",
        "Dataset::\"datafusion.acme.orders\"",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown action \"read\"") && stderr.contains("select"), "{stderr}");
    // --sql: the endpoint, then each dataset the statement touches, each decided.
    let engine_yaml = concat!(env!("CARGO_MANIFEST_DIR"), "/../engine/demo/engine.yaml");
    let out = gateway(&[
        "policy",
        "check",
        "--dir",
        dir,
        "--engine-config",
        engine_yaml,
        "--principal",
        "Service::\"dev-acme\"",
        "--tenant",
        "acme",
        "--sql",
        "SELECT * FROM acme.orders o JOIN globex.customers c ON o.customer_id = c.customer_id JOIN acme.nope n ON true",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    for line in [
        "ALLOW query on Endpoint::\"/v1/sql\"",
        "ALLOW select on Dataset::\"datafusion.acme.orders\"\n  determining policies: tenant-read",
        "DENY select on Dataset::\"datafusion.globex.customers\"",
        "DENY select on Dataset::\"datafusion.acme.nope\" (not served by the engine)",
    ] {
        assert!(stdout.contains(line), "{line} missing from:\n{stdout}");
    }
    // With the engine's file, validate and test warn about datasets it does not serve.
    let stale = tempfile::tempdir().unwrap();
    common::copy_shipped_policies(stale.path());
    std::fs::write(
        stale.path().join("70-stale.cedar"),
        "@id(\"stale\")\npermit(principal, action == Action::\"select\", resource == Dataset::\"datafusion.acme.gone\");\n",
    )
    .unwrap();
    let out = gateway(&["policy", "validate", stale.path().to_str().unwrap(), "--engine-config", engine_yaml]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "70-stale.cedar: policy stale names Dataset::\"datafusion.acme.gone\", which the engine does not serve"
        ),
        "{stderr}"
    );
    let out = gateway(&["policy", "test", dir, "--engine-config", engine_yaml]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("\"datafusion.public.unknown\" is not served"), "{stderr}");
    // Entity errors name the entity and the attribute; a duplicate @id names both files.
    let entities = std::fs::read_to_string(stale.path().join("entities.json")).unwrap();
    std::fs::write(
        stale.path().join("entities.json"),
        entities.replacen("\"tenant\": \"acme\"", "\"tenat\": \"acme\"", 1),
    )
    .unwrap();
    std::fs::write(stale.path().join("70-stale.cedar"), "@id(\"admin\")\nforbid(principal, action, resource);\n")
        .unwrap();
    let out = gateway(&["policy", "validate", stale.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("attribute `tenat` on `Dataset::\"datafusion.acme.orders\"`"), "{stderr}");
    assert!(
        stderr.contains("70-stale.cedar: policy #0 has the id \"admin\", which")
            && stderr.contains("00-admin.cedar already uses"),
        "{stderr}"
    );

    // A broken copy: exit 1, with file:line:col.
    let broken = tempfile::tempdir().unwrap();
    common::copy_shipped_policies(broken.path());
    std::fs::write(
        broken.path().join("99-typo.cedar"),
        "permit(principal, action, resource)\n  when { context.mfaa };",
    )
    .unwrap();
    let out = gateway(&["policy", "validate", broken.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("99-typo.cedar:2:10"), "{stderr}");
    // `gateway check` refuses a config whose policies do not validate.
    let pki = common::Pki::new();
    let path = write_config(&pki, "", "http://127.0.0.1:8091");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let policies_line = yaml.lines().find(|l| l.trim_start().starts_with("policies:")).unwrap().to_string();
    std::fs::write(&path, yaml.replace(&policies_line, &format!("  policies: {}", broken.path().display()))).unwrap();
    let out = gateway(&["check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("authorization.policies") && stderr.contains("99-typo.cedar:2:10"), "{stderr}");
}

/// `gateway run -c gateway.yaml` with the certificate and the API keys file beside it, all
/// named relative to a config given by a relative path: a replaced certificate and a new key
/// are picked up without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_works_with_a_relative_config_path() {
    let pki = common::Pki::new();
    common::stamp_keys(pki.path());
    common::allow_all_policies(pki.path());
    let old_key = gateway::internal::apikeys::generate().unwrap();
    let new_key = gateway::internal::apikeys::generate().unwrap();
    let keys_entry = |name: &str, hash: &str| format!("  - {{name: {name}, hash: \"{hash}\"}}\n");
    std::fs::write(pki.path().join("api-keys.yaml"), format!("keys:\n{}", keys_entry("old", &old_key.hash))).unwrap();
    std::fs::write(
        pki.path().join("gateway.yaml"),
        "api: {listen: '127.0.0.1:0', upstream: 'http://127.0.0.1:1'}\nflight: {listen: '127.0.0.1:0', upstream: 'http://127.0.0.1:1'}\nhealth: {listen: '127.0.0.1:0'}\ntls: {certificate_file: server.pem, key_file: server-key.pem, client_auth: optional, client_ca_file: ca.pem}\nstamp: {key_file: stamp-key.pem}\nauth: {api_keys: {file: api-keys.yaml}}\nauthorization: {policies: allow-all-policies}\n",
    )
    .unwrap();
    let (mut child, addr, log_rx) =
        spawn_run(Command::new(GATEWAY).args(["run", "-c", "gateway.yaml"]).current_dir(pki.path()));
    let client = common::Client::new(&pki, None);
    let status = |key: String| {
        let client = &client;
        async move { client.request(addr, "POST", "/v1/sql", &[("x-api-key", &key)], "SELECT 1").await.unwrap().status }
    };
    let before = common::served_certificate(&pki, addr).await;
    assert_eq!(status(new_key.key.clone()).await, 401);

    pki.reissue_server();
    let keys = format!("keys:\n{}{}", keys_entry("old", &old_key.hash), keys_entry("new", &new_key.hash));
    std::fs::write(pki.path().join("api-keys.yaml"), keys).unwrap();
    let reloaded = common::certificate_changes(&pki, addr, &before).await && status(new_key.key.clone()).await != 401;
    let _ = child.kill();
    let _ = child.wait();
    let log: Vec<String> = log_rx.try_iter().collect();
    assert!(reloaded, "certificate or API key not reloaded with a relative -c:\n{}", log.join("\n"));
    assert!(log.iter().any(|l| l.contains("reloaded") && l.contains("certificates")), "{}", log.join("\n"));
    assert!(log.iter().any(|l| l.contains("reloaded") && l.contains("api_keys")), "{}", log.join("\n"));
}

/// `stamp keygen` writes a pair the gateway signs with and the engine verifies with, never
/// over an existing key; `apikey new` refuses an expiry in the past.
#[test]
fn stamp_keygen_and_apikey_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let out = gateway(&["stamp", "keygen", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let private = std::fs::read_to_string(dir.path().join("stamp-key.pem")).unwrap();
    let public = std::fs::read_to_string(dir.path().join("stamp-pub.pem")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("stamp-key.pem")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let signer = identity::StampSigner::from_pem(private.as_bytes(), identity::DEFAULT_AUDIENCE).unwrap();
    let verifier = identity::StampVerifier::from_pems([public.as_bytes()], identity::DEFAULT_AUDIENCE, 2, 10).unwrap();
    let principal =
        identity::Principal::new(identity::PrincipalKind::Service, "svc", "svc", identity::AuthMethod::ApiKey);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let stamp = signer.sign(&principal, now, 60).unwrap();
    assert_eq!(verifier.verify(&stamp).unwrap().principal.id, "svc");
    let again = gateway(&["stamp", "keygen", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read_to_string(dir.path().join("stamp-key.pem")).unwrap(), private);

    // `gateway up` binds loopback unless told otherwise (it prints development keys).
    let help = String::from_utf8_lossy(&gateway(&["up", "--help"]).stdout).into_owned();
    for default in ["127.0.0.1:8090", "127.0.0.1:50051", "127.0.0.1:9090"] {
        assert!(help.contains(&format!("[default: {default}]")), "{help}");
    }
    assert!(!help.contains("0.0.0.0"), "{help}");

    let past = gateway(&["apikey", "new", "--name", "etl", "--expires", "2020-01-01"]);
    assert_eq!(past.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&past.stderr).contains("is in the past"),
        "{}",
        String::from_utf8_lossy(&past.stderr)
    );
    let future = gateway(&["apikey", "new", "--name", "etl", "--expires", "2999-01-01"]);
    assert!(future.status.success());

    // --format json: one object; its entry is what the keys file holds and accepts the key.
    let out = gateway(&[
        "apikey",
        "new",
        "--name",
        "etl",
        "--group",
        "acme",
        "--tenant",
        "acme",
        "--expires",
        "2999-01-01",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry: gateway::config::ApiKeyEntry = serde_json::from_value(printed["entry"].clone()).unwrap();
    assert_eq!((entry.name.as_str(), entry.tenant.as_deref()), ("etl", Some("acme")));
    let keys =
        gateway::internal::apikeys::ApiKeys::load(&gateway::config::ApiKeysConfig { file: None, keys: vec![entry] })
            .unwrap();
    let principal = keys.verify(printed["key"].as_str().unwrap(), 1_900_000_000).unwrap();
    assert_eq!((principal.id.as_str(), principal.groups.as_slice()), ("etl", &["acme".to_string()][..]));
}

fn rss_kib(pid: u32) -> u64 {
    memory_kib(pid, "VmRSS")
}

/// A plain HTTP GET to the health listener: status and body.
async fn health_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(path).header("host", "x").body(http_body_util::Empty::<bytes::Bytes>::new());
    let response = sender.send_request(request.unwrap()).await.unwrap();
    let status = response.status().as_u16();
    use http_body_util::BodyExt;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The gateway as its own process with 256 file descriptors: a flood of idle connections
/// from ten addresses meets the connection limit derived from that (64) instead of the
/// descriptor limit, `/healthz` answers throughout, requests are served again once the head
/// deadline has cleared the flood, and the process's memory returns to where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_descriptor_limit_keeps_health_up_and_memory_flat() {
    let stack = common::Stack::start(gateway::config::ClientAuth::Required).await;
    let extra = "limits:\n  max_connections_per_ip: 1000\ntimeouts:\n  client_header_secs: 3\n";
    let path = write_config(&stack.pki, extra, &format!("http://{}", stack.engine.http_addr));
    let (mut child, addr, log) =
        spawn_run(Command::new("prlimit").args(["--nofile=256:256", GATEWAY, "run", "-c", path.to_str().unwrap()]));
    let started = std::iter::from_fn(|| log.recv_timeout(Duration::from_secs(10)).ok())
        .find(|line| line.contains("health_addr="))
        .expect("no startup line");
    let field = |name: &str| started.split(&format!("{name}=")).nth(1).unwrap().split_whitespace().next().unwrap();
    assert_eq!(field("max_connections"), "64", "{started}");
    let health: std::net::SocketAddr = field("health_addr").parse().unwrap();
    let client = stack.client(Some("workload"));
    assert_eq!(client.sql(addr, "SELECT 1").await.unwrap().status, 200);
    let baseline = rss_kib(child.id());

    let mut flood = Vec::new();
    for i in 0..600u32 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 2 + (i % 10) as u8], 0))).unwrap();
        if let Ok(stream) = socket.connect(addr).await {
            flood.push(stream);
        }
    }
    for _ in 0..3 {
        let probe = tokio::time::timeout(Duration::from_secs(2), health_get(health, "/healthz"));
        assert_eq!(probe.await.expect("/healthz did not answer during the flood").0, 200);
    }
    let (_, metrics) = health_get(health, "/metrics").await;
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gateway_connection_refusals_total{listener=\"api\",reason=\"connection_limit\"}"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused >= 500, "{refused} refused past the limit\n{metrics}");
    // The head deadline clears the held connections; requests are served again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let reply = client.sql(addr, "SELECT 2").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    drop(flood);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let lines: Vec<String> = log.try_iter().collect();
    assert!(!lines.iter().any(|l| l.contains("Too many open files")), "{}", lines.join("\n"));
    let grown_mib = after.saturating_sub(baseline) / 1024;
    assert!(grown_mib < 32, "RSS grew by {grown_mib} MiB ({baseline} → {after} KiB)");
    println!("flood: {refused} refused at the limit; gateway RSS {baseline} → {after} KiB");
}

#[test]
fn session_key_new_and_browser_login_settings_are_checked() {
    use base64::Engine as _;
    // `gateway session-key new`: 32 random bytes in base64, a new one each time.
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let out = gateway(&["session-key", "new"]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    assert_ne!(keys[0], keys[1]);
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(&keys[0]).unwrap().len(), 32);

    let pki = common::Pki::new();
    let key_file = pki.path().join("session-key");
    std::fs::write(&key_file, format!("{}\n", keys[0])).unwrap();
    let short_key = pki.path().join("short-key");
    std::fs::write(&short_key, "c2hvcnQ=").unwrap();
    let secret = pki.path().join("client-secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let login = |extra: &str| {
        format!(
            "auth:\n  oidc:\n    - name: idp\n      issuer: https://idp.example.com\n      audiences: [console]\n      browser_login:\n        client_id: console\n        redirect_url: https://gw.example.com/auth/callback\n{extra}"
        )
    };
    let sessions = |key: &std::path::Path, extra: &str| {
        format!("  browser_sessions:\n    keys: ['${{file:{}}}']\n{extra}", key.display())
    };
    let good = login(&format!("        client_secret: '${{file:{}}}'\n", secret.display())) + &sessions(&key_file, "");
    let path = write_config(&pki, &good, "http://127.0.0.1:8091");
    let out = gateway(&["check", "-c", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let cases = [
        (
            login("        client_secret: s3cret\n") + &sessions(&key_file, ""),
            "auth.oidc[0].browser_login.client_secret",
            "by reference",
        ),
        (login(""), "auth.oidc[0].browser_login", "needs auth.browser_sessions"),
        ("auth:\n".to_string() + &sessions(&key_file, ""), "auth.browser_sessions", "no provider has browser_login"),
        (
            login("        scopes: [email]\n") + &sessions(&key_file, ""),
            "auth.oidc[0].browser_login.scopes",
            "must include openid",
        ),
        (
            login("").replace("/auth/callback", "/callback") + &sessions(&key_file, ""),
            "auth.oidc[0].browser_login.redirect_url",
            "must end with /auth/callback",
        ),
        (login("") + &sessions(&short_key, ""), "auth.browser_sessions.keys[0]", "a key is 32 bytes"),
        (
            login("") + &sessions(&key_file, "    idle_secs: 7200\n    absolute_secs: 3600\n"),
            "auth.browser_sessions",
            "idle_secs <= absolute_secs",
        ),
        (
            login("") + &format!("  browser_sessions:\n    keys: ['{}']\n", keys[0]),
            "auth.browser_sessions.keys[0]",
            "by reference",
        ),
    ];
    for (yaml, field, why) in cases {
        let path = write_config(&pki, &yaml, "http://127.0.0.1:8091");
        let out = gateway(&["check", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{field}: {stderr}");
        assert!(stderr.contains(field) && stderr.contains(why), "wanted {field}: {why}, got {stderr}");
        assert!(!stderr.contains("s3cret") && !stderr.contains(&keys[0]), "a secret in the message: {stderr}");
    }
    // Browser sign-in on an API listener whose methods leave the cookie out.
    let path = write_config(&pki, &good, "http://127.0.0.1:8091");
    let yaml = std::fs::read_to_string(&path).unwrap().replacen(
        "upstream: 'http://127.0.0.1:8091'}",
        "upstream: 'http://127.0.0.1:8091', auth: {methods: [oidc]}}",
        1,
    );
    std::fs::write(&path, yaml).unwrap();
    let out = gateway(&["check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("api.auth.methods") && stderr.contains("leaves out browser"), "{stderr}");
}

#[test]
fn policy_test_coverage_names_uncovered_policies_and_enforces_a_minimum() {
    let shipped = common::shipped_policies();
    let engine = common::embedded_engine_config();
    let engine = engine.to_str().unwrap();
    let args = ["policy", "test", "--engine-config", engine, "--coverage", "--min-coverage", "100"];
    let out = gateway(&[&args[..], &[shipped.to_str().unwrap()]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("(100.0%)") && !stdout.contains("NOT COVERED"), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("tenant-read") && l.contains("tenant-isolation.json")));

    // A planted policy no test exercises: named, and the minimum fails the run.
    let dir = tempfile::tempdir().unwrap();
    common::copy_shipped_policies(dir.path());
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    for entry in std::fs::read_dir(shipped.join("tests")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join("tests").join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.path().join("70-untested.cedar"),
        "@id(\"untested-grant\")\npermit(principal in Group::\"auditors\", action == Action::\"select\", resource == Dataset::\"datafusion.demo.customers\");\n",
    )
    .unwrap();
    let planted = dir.path().to_str().unwrap();
    let out = gateway(&["policy", "test", "--engine-config", engine, "--coverage", planted]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "coverage alone reports, it does not fail: {stdout}");
    assert!(
        stdout.contains("15 of 16 policies") && stdout.contains("untested-grant") && stdout.contains("NOT COVERED"),
        "{stdout}"
    );
    let out = gateway(&["policy", "test", "--engine-config", engine, "--coverage", "--min-coverage", "95", planted]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("below --min-coverage 95%"), "{stdout}");
    // A minimum that is not a percentage is bad usage.
    assert_eq!(gateway(&["policy", "test", "--coverage", "--min-coverage", "120", planted]).status.code(), Some(2));
}

#[test]
fn policy_lint_passes_the_shipped_set_and_names_planted_mistakes() {
    let shipped = common::shipped_policies();
    let engine_config = common::embedded_engine_config();
    for with_columns in [false, true] {
        let mut args = vec!["policy", "lint", shipped.to_str().unwrap()];
        if with_columns {
            args.extend(["--engine-config", engine_config.to_str().unwrap()]);
        }
        let out = gateway(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains("no lint findings"), "{stdout}");
    }

    // The just-in-time grant that used to ship (its window ended 2026-11-21), with its tests,
    // and a grant of everything to everyone.
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    common::copy_shipped_policies(dir.path());
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::copy(fixtures.join("expired-just-in-time.cedar"), dir.path().join("50-just-in-time.cedar")).unwrap();
    std::fs::copy(fixtures.join("expired-just-in-time.json"), dir.path().join("tests/just-in-time.json")).unwrap();
    let planted = dir.path().to_str().unwrap();
    // Its tests still pass: `context.now` inside and outside the window.
    let out = gateway(&["policy", "test", planted]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    std::fs::write(dir.path().join("99-oops.cedar"), "@id(\"oops\")\npermit(principal, action, resource);\n").unwrap();
    let out = gateway(&["policy", "lint", planted]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("warning[expired-time-bound]: policy \"jit-incident-2026-11\""), "{stdout}");
    assert!(stdout.contains("warning[unconstrained-permit]: policy \"oops\""), "{stdout}");
    // Judged inside the window, the grant is current.
    let out = gateway(&["policy", "lint", planted, "--now", "2026-11-20T12:00:00Z"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("expired-time-bound") && stdout.contains("unconstrained-permit"), "{stdout}");
    assert_eq!(gateway(&["policy", "lint", planted, "--now", "yesterday"]).status.code(), Some(1));
}

/// With the engine's columns, lint names a tag no mask handles and a row policy reading a
/// column the engine does not declare; a mask that cannot fit its columns refuses the set.
#[test]
fn policy_lint_with_the_engines_columns_names_unmasked_tags_and_undeclared_row_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    common::copy_shipped_policies(&policies);
    let shipped = std::fs::read_to_string(common::embedded_engine_config()).unwrap();
    let declared = "    tenant: {type: string}\n";
    assert!(shipped.contains(declared), "the demo declares the tenant column");
    let planted = shipped.replace(declared, "").replace(
        "    email: {tags: [pii.email]}",
        "    email: {tags: [pii.email]}\n    name: {type: string, tags: [pii.name]}",
    );
    let engine_config = dir.path().join("engine.yaml");
    std::fs::write(&engine_config, planted).unwrap();
    let lint = || {
        let out = gateway(&[
            "policy",
            "lint",
            policies.to_str().unwrap(),
            "--engine-config",
            engine_config.to_str().unwrap(),
        ]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = lint();
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("warning[tag-without-mask]: policy \"masks.yaml\": the tag \"pii.name\""), "{stdout}");
    assert!(
        stdout.contains("warning[row-attribute-undeclared]: policy \"customers-of-own-tenant\": reads resource.tenant"),
        "{stdout}"
    );
    // A mask for the tag that cannot apply to the column: the set does not load.
    let masks = std::fs::read_to_string(policies.join("masks.yaml")).unwrap();
    std::fs::write(policies.join("masks.yaml"), format!("{masks}  pii.name: year_only\n")).unwrap();
    let (code, stdout, stderr) = lint();
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stderr.contains("the year_only mask cannot apply to datafusion.demo.customers.name (string)"), "{stderr}");
}

/// A child process killed when the test ends, however it ends.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One flood connection: a TLS handshake without a client certificate and an unauthenticated
/// request (401), then held open; `None` when the gateway refused or closed it.
async fn unauthenticated_keep_alive(
    source: std::net::IpAddr,
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(std::net::SocketAddr::new(source, 0)).ok()?;
    let within = Duration::from_secs(20);
    let tcp = tokio::time::timeout(within, socket.connect(addr)).await.ok()?.ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
    let mut stream =
        tokio::time::timeout(within, tokio_rustls::TlsConnector::from(tls).connect(name, tcp)).await.ok()?.ok()?;
    stream.write_all(b"GET /v1/datasets HTTP/1.1\r\nhost: localhost\r\n\r\n").await.ok()?;
    let mut head = [0u8; 512];
    let read = tokio::time::timeout(within, stream.read(&mut head)).await.ok()?.ok()?;
    head.get(..read)?.starts_with(b"HTTP/1.1 401").then_some(stream)
}

/// The chart's gateway memory limit (512 MiB, a cgroup the test makes) with a high
/// descriptor limit: the default connection cap follows the memory (2,730), a flood of
/// unauthenticated keep-alive connections from 250 loopback addresses meets it instead of
/// the kernel's OOM killer, idle connections are closed within a second under that pressure,
/// `/healthz` and an authenticated caller keep being answered, and the memory returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_in_a_512_mib_limit_meets_the_memory_cap_not_the_oom_killer() {
    use futures::StreamExt as _;
    let cgroup = common::cgroup::Cgroup::new("connection-flood", 512 << 20);
    let stack = common::Stack::start(gateway::config::ClientAuth::Optional).await;
    let path = write_config(&stack.pki, "", &format!("http://{}", stack.engine.http_addr));
    let yaml = std::fs::read_to_string(&path).unwrap().replace("client_auth: required", "client_auth: optional");
    std::fs::write(&path, yaml).unwrap();
    // Descriptors as high as this machine allows (for the gateway and for the flood's own
    // sockets): the memory must decide the cap.
    let hard = Command::new("sh").args(["-c", "ulimit -Hn"]).output().unwrap();
    let hard: u64 = String::from_utf8_lossy(&hard.stdout).trim().parse().unwrap_or(u64::MAX);
    assert!(hard >= 2 * 2730 + 128, "the test needs a descriptor hard limit of at least 5,588 (have {hard})");
    let raise = format!("prlimit --pid {} --nofile={hard}:{hard}", std::process::id());
    assert!(Command::new("sh").args(["-c", &raise]).status().unwrap().success());
    let script = format!(
        "echo $$ > {}/cgroup.procs && ulimit -n {hard} && exec {GATEWAY} run -c {}",
        cgroup.0.display(),
        path.display()
    );
    let (child, addr, log) = spawn_run(Command::new("sh").args(["-c", &script]));
    let mut child = KilledOnDrop(child);
    let child = &mut child.0;
    let started = std::iter::from_fn(|| log.recv_timeout(Duration::from_secs(10)).ok())
        .find(|line| line.contains("health_addr="))
        .expect("no startup line");
    let field = |name: &str| started.split(&format!("{name}=")).nth(1).unwrap().split_whitespace().next().unwrap();
    assert_eq!(field("max_connections"), "2730", "{started}");
    let health: std::net::SocketAddr = field("health_addr").parse().unwrap();
    let client = stack.client(Some("workload"));
    assert_eq!(client.sql(addr, "SELECT 1").await.unwrap().status, 200);
    let baseline = rss_kib(child.id());

    let tls = common::client_config(&stack.pki.ca(), None, &[b"http/1.1"]);
    let flood = || {
        let sources = (1..=250u8).flat_map(|last| std::iter::repeat_n(last, 40));
        futures::stream::iter(sources)
            .map(|last| unauthenticated_keep_alive(std::net::IpAddr::from([127, 0, 1, last]), addr, Arc::clone(&tls)))
            .buffer_unordered(256)
            .filter_map(|held| async move { held })
            .collect::<Vec<_>>()
    };
    let first = flood().await;
    let peak = memory_kib(child.id(), "VmHWM");
    assert!(child.try_wait().unwrap().is_none(), "the gateway died during the flood");
    for _ in 0..3 {
        let probe = tokio::time::timeout(Duration::from_secs(2), health_get(health, "/healthz"));
        assert_eq!(probe.await.expect("/healthz did not answer during the flood").0, 200);
    }
    // The authenticated caller gets in: idle flood connections make room within a second.
    let mut answered = false;
    for _ in 0..20 {
        if client.sql(addr, "SELECT 2").await.is_ok_and(|reply| reply.status == 200) {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(answered, "no authenticated request was served during the flood");
    let (_, metrics) = health_get(health, "/metrics").await;
    let metric = |name: &str| -> u64 {
        metrics.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    // More connections answered than the cap holds: the gateway shed the idle ones (and
    // refused past the cap) instead of keeping them all.
    let shed = metric("gateway_connection_refusals_total{listener=\"api\",reason=\"idle_under_pressure\"}");
    let refused = metric("gateway_connection_refusals_total{listener=\"api\",reason=\"connection_limit\"}");
    assert!(first.len() > 2730, "the flood got only {} connections answered", first.len());
    assert!(shed + refused > 0, "nothing was shed or refused\n{metrics}");
    assert!(metric("gateway_connections_active{listener=\"api\"}") <= 2730, "{metrics}");
    let answered = first.len();
    drop(first);
    // The memory a flood took is the gateway's to reuse: a second one takes no more.
    let second = flood().await;
    let again = memory_kib(child.id(), "VmHWM");
    drop(second);
    assert_eq!(cgroup.oom_kills(), 0, "the kernel killed in the gateway's cgroup");
    assert!(child.try_wait().unwrap().is_none(), "the gateway died");
    println!(
        "connection flood: {answered} answered, {shed} shed idle, {refused} refused at the cap; gateway RSS \
         {baseline} KiB, peak {peak} KiB, after a second flood {again} KiB"
    );
    assert!(peak < 256 * 1024, "the flood took {peak} KiB, over half the limit");
    assert!(again < peak + 16 * 1024, "a second flood grew the peak from {peak} to {again} KiB");
}
