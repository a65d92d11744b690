//! Cluster mode end to end, with real processes on loopback: a Ballista scheduler
//! (127.0.0.1) and two executors (127.0.0.2, 127.0.0.3), each its own `engine` process,
//! mTLS everywhere with certificates made by `gateway tls` exactly as the README's "Scaling
//! out" says; a coordinator engine in cluster mode beside a single-node engine with the same
//! datasets and views.
//!
//! Needs the `gateway` binary next to the engine's (`cargo test --workspace` builds both).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, unreachable_pub)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestEngine, test_config, user};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");

fn gateway_bin() -> PathBuf {
    let path = Path::new(ENGINE).with_file_name("gateway");
    assert!(path.exists(), "{} is missing: build it first (cargo build -p gateway)", path.display());
    path
}

/// Runs `gateway ARGS` and asserts it succeeded.
fn gateway(args: &[&str]) {
    let output = Command::new(gateway_bin()).args(args).output().unwrap();
    assert!(output.status.success(), "gateway {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A free port on `ip` (bound, then released for the process about to take it).
fn free_port(ip: [u8; 4]) -> u16 {
    std::net::TcpListener::bind(SocketAddr::from((ip, 0))).unwrap().local_addr().unwrap().port()
}

/// A child process killed (by PID) when the test ends, its stderr kept in a file.
struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    fn start(dir: &Path, name: &str, args: &[String]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(ENGINE)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `--node-mtls-*` flags for `name`'s certificate.
fn mtls(certs: &Path, name: &str) -> Vec<String> {
    vec![
        "--node-mtls-ca-certificate-file".into(),
        certs.join("ca.pem").display().to_string(),
        "--node-mtls-certificate-file".into(),
        certs.join(format!("{name}.pem")).display().to_string(),
        "--node-mtls-key-file".into(),
        certs.join(format!("{name}-key.pem")).display().to_string(),
    ]
}

/// Eight Parquet files of orders, 500 rows each, tenants acme and globex in turn.
async fn write_orders(dir: &Path) -> PathBuf {
    let orders = dir.join("orders");
    std::fs::create_dir_all(&orders).unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    for file in 0..8 {
        let first = file * 500;
        let sql = format!(
            "COPY (SELECT value AS order_id, CASE WHEN value % 2 = 0 THEN 'acme' ELSE 'globex' END AS tenant, \
             CAST(value % 97 AS DOUBLE) AS amount FROM generate_series({first}, {}) ) \
             TO '{}' STORED AS PARQUET",
            first + 499,
            orders.join(format!("part-{file}.parquet")).display()
        );
        ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    }
    orders
}

fn engine_yaml(orders: &Path, cluster: &str) -> String {
    format!(
        "{cluster}datasets:\n  - name: orders\n    path: {}\n    format: parquet\nviews:\n  \
         - name: my_orders\n    sql: SELECT * FROM orders WHERE array_has(current_principal_groups(), tenant)\n",
        orders.display()
    )
}

/// A TLS client of `addr` with the cluster CA and, optionally, a client certificate; the
/// result of the handshake (a TLS 1.3 client-certificate refusal arrives on the first read).
async fn handshake(addr: SocketAddr, ca: &Path, identity: Option<(&Path, &Path)>) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::IpAddress(addr.ip().into());
    let mut tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    // An HTTP/2 client preface; the server answers with its SETTINGS frame.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 9];
    match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        Ok(Ok(_)) => Err("closed".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

/// Plaintext HTTP/2 to a TLS port: the server closes without an HTTP/2 answer.
async fn plaintext_is_refused(addr: SocketAddr) -> bool {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    // A SETTINGS frame (type 4) would be 9+ bytes with byte 3 == 4; a TLS alert is 0x15.
    !(buf.len() >= 9 && buf[3] == 4)
}

async fn metrics(addr: SocketAddr) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/metrics")
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    use http_body_util::BodyExt;
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_run_on_a_ballista_cluster_with_mtls_and_the_callers_identity_folded_in() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("cluster-tls");
    let certs_arg = certs.display().to_string();
    // The README's commands: a cluster CA, and a certificate per node naming its address.
    gateway(&["tls", "init", "--dir", &certs_arg]);
    for (name, ip) in [
        ("scheduler", "127.0.0.1"),
        ("executor-1", "127.0.0.2"),
        ("executor-2", "127.0.0.3"),
        ("coordinator", "127.0.0.1"),
    ] {
        gateway(&["tls", "add", name, "--node", "--dir", &certs_arg, "--host", "localhost", "--ip", ip]);
    }
    let other = dir.path().join("other-ca");
    let other_arg = other.display().to_string();
    gateway(&["tls", "init", "--dir", &other_arg]);
    gateway(&["tls", "add", "intruder", "--node", "--dir", &other_arg, "--ip", "127.0.0.1"]);

    let scheduler_addr = SocketAddr::from(([127, 0, 0, 1], free_port([127, 0, 0, 1])));
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port([127, 0, 0, 1])));
    let mut args = vec![
        "scheduler".to_string(),
        "--node-bind-address".into(),
        scheduler_addr.to_string(),
        "--metrics-address".into(),
        metrics_addr.to_string(),
    ];
    args.extend(mtls(&certs, "scheduler"));
    let scheduler = Node::start(dir.path(), "scheduler", &args);
    let mut executors = Vec::new();
    let mut executor_addrs = Vec::new();
    for (n, ip) in [(1u8, [127, 0, 0, 2]), (2, [127, 0, 0, 3])] {
        let addr = SocketAddr::from((ip, free_port(ip)));
        executor_addrs.push(addr);
        let mut args = vec![
            "executor".to_string(),
            "--node-bind-address".into(),
            addr.to_string(),
            "--node-advertise-address".into(),
            addr.ip().to_string(),
            "--scheduler-address".into(),
            scheduler_addr.to_string(),
            "--vcores".into(),
            "2".into(),
        ];
        args.extend(mtls(&certs, &format!("executor-{n}")));
        executors.push(Node::start(dir.path(), &format!("executor-{n}"), &args));
    }

    let orders = write_orders(dir.path()).await;
    let cluster = format!(
        "cluster:\n  scheduler_address: {scheduler_addr}\n  mtls:\n    ca_certificate_file: {}\n    \
         certificate_file: {}\n    key_file: {}\n",
        certs.join("ca.pem").display(),
        certs.join("coordinator.pem").display(),
        certs.join("coordinator-key.pem").display()
    );
    let single = TestEngine::start_with(test_config(Some(&engine_yaml(&orders, "")))).await;
    let coordinator = TestEngine::start_with(test_config(Some(&engine_yaml(&orders, &cluster)))).await;
    let alice = user("alice", &["acme"]);
    let bob = user("bob", &["globex"]);

    // Wait for both executors to register (a query succeeds), at most 60 s.
    let sql = "SELECT tenant, count(*) AS n, sum(amount) AS total FROM my_orders GROUP BY tenant ORDER BY tenant";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = coordinator.http.sql(Some(&coordinator.stamp(&alice)), sql).await;
        if reply.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster never answered: {}\nscheduler: {}\nexecutor-1: {}",
            reply.text(),
            scheduler.log(),
            executors[0].log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Same rows through the cluster as on one node, each caller only its own tenant's.
    for (who, tenant) in [(&alice, "acme"), (&bob, "globex")] {
        let on_cluster = coordinator.http.sql(Some(&coordinator.stamp(who)), sql).await;
        let on_one_node = single.http.sql(Some(&single.stamp(who)), sql).await;
        assert_eq!(on_cluster.status, 200, "{}", on_cluster.text());
        assert_eq!(on_cluster.json(), on_one_node.json(), "{tenant}");
        let rows = on_cluster.json();
        assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
        assert_eq!(rows[0]["tenant"], tenant);
        assert_eq!(rows[0]["n"], 2000);
    }

    // The plan that leaves the coordinator: distributed, the caller's groups a literal, no
    // identity function left in it.
    let explain = coordinator.http.sql(Some(&coordinator.stamp(&alice)), "EXPLAIN SELECT * FROM my_orders").await;
    assert_eq!(explain.status, 200, "{}", explain.text());
    let plan = explain.text();
    assert!(plan.contains("distributed_plan") && plan.contains("ShuffleWriterExec"), "{plan}");
    // `array_has(current_principal_groups(), tenant)` became `tenant = 'acme'`.
    assert!(plan.contains(r#"orders.tenant = Utf8(\"acme\")"#), "{plan}");
    assert!(!plan.contains("current_principal"), "{plan}");

    // A GROUP BY over the eight files ran tasks on both executors.
    let big = "SELECT order_id % 100 AS k, count(*) AS n FROM orders GROUP BY order_id % 100 ORDER BY k";
    let reply = coordinator.http.sql(Some(&coordinator.stamp(&alice)), big).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json().as_array().unwrap().len(), 100);
    for executor in &executors {
        assert!(executor.log().contains("Received task"), "an executor ran no task: {}", executor.log());
    }

    // Writes are refused by the coordinator before anything reaches the cluster.
    let jobs_before = scheduler.log().matches("Job submitted").count();
    assert!(jobs_before > 0, "the scheduler's log names no job: {}", scheduler.log());
    for write in
        ["CREATE TABLE t AS SELECT 1", "INSERT INTO orders VALUES (1, 'acme', 1.0)", "COPY orders TO '/tmp/x.csv'"]
    {
        let reply = coordinator.http.sql(Some(&coordinator.stamp(&alice)), write).await;
        assert!(reply.status == 403 || reply.status == 400, "{write}: {} {}", reply.status, reply.text());
    }
    assert_eq!(scheduler.log().matches("Job submitted").count(), jobs_before, "a write reached the scheduler");

    // Every node's port: plaintext refused, another CA's certificate refused, no certificate
    // refused; the cluster's own certificate accepted.
    let ca = certs.join("ca.pem");
    let (intruder, intruder_key) = (other.join("intruder.pem"), other.join("intruder-key.pem"));
    let (node, node_key) = (certs.join("coordinator.pem"), certs.join("coordinator-key.pem"));
    for addr in std::iter::once(scheduler_addr).chain(executor_addrs.iter().copied()) {
        assert!(plaintext_is_refused(addr).await, "{addr} answered plaintext HTTP/2");
        assert!(
            handshake(addr, &ca, Some((&intruder, &intruder_key))).await.is_err(),
            "{addr} took another CA's certificate"
        );
        assert!(handshake(addr, &ca, None).await.is_err(), "{addr} took a client without a certificate");
        handshake(addr, &ca, Some((&node, &node_key))).await.unwrap_or_else(|e| panic!("{addr}: {e}"));
    }

    // The scheduler's certificate expiry, for alerting: about 365 days.
    let page = metrics(metrics_addr).await;
    let secs: i64 = page
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_node_certificate_expiry_seconds{role=\"scheduler\"} "))
        .unwrap_or_else(|| panic!("{page}"))
        .parse()
        .unwrap();
    assert!((364 * 86_400..=366 * 86_400).contains(&secs), "{secs}");
    // No plan (and so no caller's identity) in the scheduler's log at INFO.
    assert!(!scheduler.log().contains("acme"), "the scheduler logged a plan: {}", scheduler.log());
}
