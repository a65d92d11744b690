//! Datasets in object storage: a bucket on a real S3 server (moto, on loopback, checking
//! signatures), the engine reading it with static credentials from a file, served through
//! the gateway under the shipped tenant policies; a wrong credential is a clear error naming
//! the dataset, within seconds.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway::config::{ApiKeyEntry, ApiKeysConfig, ClientAuth};
use gateway::internal::apikeys;

use crate::common::{Stack, shipped_policies};

/// A moto S3 server on a free loopback port, stopped (by PID) when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Signatures are checked once the first three (unauthenticated) actions, which create
        // the engine's IAM user, are spent.
        let child = testkit::python_command()
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto[server] (engine/tests/python/requirements.txt) is not installed");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, endpoint: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn engine_yaml(dir: &Path, endpoint: &str, credentials: &str) -> std::path::PathBuf {
    let file = dir.join(format!("engine-{credentials}.yaml"));
    std::fs::write(
        &file,
        format!(
            "demo_data: false\n\
             s3: {{endpoint: '{endpoint}', region: us-east-1, credentials_file: {credentials}}}\n\
             datasets:\n  \
             - {{name: acme.s3_orders, path: 's3://portcullis-data/acme/orders.parquet', tenant: acme}}\n  \
             - {{name: globex.s3_orders, path: 's3://portcullis-data/globex/orders/', format: parquet, tenant: globex}}\n"
        ),
    )
    .unwrap();
    file
}

#[tokio::test]
async fn a_dataset_in_s3_is_served_under_the_tenant_policies_and_a_wrong_credential_is_named() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let fill = testkit::python_command()
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/s3_bucket.py"))
        .args([&moto.endpoint, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    testkit::python_stdout(&fill, "filling the bucket");

    let file = engine_yaml(dir.path(), &moto.endpoint, "credentials");
    let (acme, globex) = (apikeys::generate().unwrap(), apikeys::generate().unwrap());
    let entry = |tenant: &str, hash: &str| ApiKeyEntry {
        name: format!("{tenant}-reader"),
        hash: hash.to_string(),
        groups: vec![tenant.into()],
        tenant: Some(tenant.into()),
        expires: None,
    };
    let keys = vec![entry("acme", &acme.hash), entry("globex", &globex.hash)];
    let engine_config = engine::config::Config::from_file(&file).unwrap();
    let engine_file = file.clone();
    let stack = Stack::start_with_engine(ClientAuth::Optional, engine_config, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys });
        c.authorization.policies = shipped_policies().into();
        c.authorization.engine_config = Some(engine_file.into());
    })
    .await;
    let sql = |key: &str, query: &'static str| {
        let (stack, key) = (&stack, key.to_string());
        async move {
            stack
                .client(None)
                .request(stack.gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", &key)], query)
                .await
                .unwrap()
        }
    };
    let reply =
        sql(&acme.key, "SELECT count(*) AS n, min(order_id) AS first, sum(amount) AS total FROM acme.s3_orders").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let expected: f64 = (0..1000).map(|i| f64::from(i % 97)).sum();
    assert_eq!(reply.json(), serde_json::json!([{"n": 1000, "first": 1, "total": expected}]));
    // The other tenant's dataset in the same bucket: refused by Cedar, as on local files.
    let reply = sql(&acme.key, "SELECT count(*) FROM globex.s3_orders").await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("select on dataset datafusion.globex.s3_orders is not allowed"), "{}", reply.text());
    // Its own tenant reads it: a folder of two files.
    let reply = sql(&globex.key, "SELECT count(*) AS n, min(order_id) AS first FROM globex.s3_orders").await;
    assert_eq!(reply.json(), serde_json::json!([{"n": 500, "first": 5001}]), "{}", reply.text());

    // A wrong secret: the engine refuses to start, naming the dataset and S3's answer, in
    // seconds (two retries within 10 s), not after a hang.
    let wrong = engine_yaml(dir.path(), &moto.endpoint, "wrong-credentials");
    let engine_bin = Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("engine");
    let keygen = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["stamp", "keygen", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
    let check = |config: &Path| {
        Command::new(&engine_bin)
            .args(["--config", config.to_str().unwrap(), "--check", "--stamp-public-key"])
            .arg(dir.path().join("stamp-pub.pem"))
            .output()
            .unwrap()
    };
    let started = Instant::now();
    let out = check(&wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("datasets[0] (acme.s3_orders)") && stderr.contains("403 Forbidden"), "{stderr}");
    assert!(!stderr.contains("not-"), "the error quotes the secret: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    // The right one, by the same command: the configuration loads.
    let out = check(&file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
