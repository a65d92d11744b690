//! Test harness: a real engine on loopback ports, with a fresh stamp key pair, and helpers to
//! mint stamps the way the gateway does.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use engine::caller::Authenticator;
use engine::config::Config;
use engine::server::{Running, start};
use identity::{AuthMethod, Grant, Principal, PrincipalKind, StampSigner, StampVerifier, generate_stamp_keypair};

pub struct TestEngine {
    pub running: Running,
    pub signer: StampSigner,
    pub public_key_pem: String,
    /// The signing key, for tests that sign with other claims (another audience).
    pub signer_pem: String,
    pub http: reqwest_lite::Client,
    /// Every table and view the config serves, as the gateway would scope a caller that
    /// policy lets touch all of them.
    pub served: Vec<String>,
    /// For each governed table (`columns:`), the decision of a gateway whose policy restricts
    /// nothing: every row, every tagged column unmasked.
    pub unrestricted: Vec<identity::DatasetPolicy>,
}

/// `name` (`table` or `schema.table`) as a stamp's scope spells it.
pub fn dataset(name: &str) -> String {
    match name.split_once('.') {
        Some((schema, table)) => identity::dataset_id("datafusion", schema, table),
        None => identity::dataset_id("datafusion", "public", name),
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn user(id: &str, groups: &[&str]) -> Principal {
    let mut p = Principal::new(PrincipalKind::User, id, format!("sub-{id}"), AuthMethod::Oidc);
    p.groups = groups.iter().map(|g| g.to_string()).collect();
    p.email = Some(format!("{id}@example.com"));
    p.issuer = Some("https://idp.example".into());
    p
}

/// Config on ephemeral loopback ports: the embedded default unless `yaml` is given.
pub fn test_config(yaml: Option<&str>) -> Config {
    let mut config = match yaml {
        Some(yaml) => Config::from_yaml(yaml, "test config").unwrap(),
        None => Config::embedded_default().unwrap(),
    };
    config.http_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.flight_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config
}

impl TestEngine {
    pub async fn start() -> Self {
        Self::start_with(test_config(None)).await
    }

    pub async fn start_with(config: Config) -> Self {
        let pair = generate_stamp_keypair().unwrap();
        Self::start_with_keys(config, pair.private_pkcs8_pem, pair.public_spki_pem).await
    }

    /// [`Self::start_with`] trusting (and signing with) a given stamp key pair, e.g. one a
    /// gateway in front of this engine signs with.
    pub async fn start_with_keys(config: Config, private_pem: String, public_pem: String) -> Self {
        let verifier = StampVerifier::from_pems([public_pem.as_bytes()], &config.stamp.audience, 2, 1000).unwrap();
        let signer = StampSigner::from_pem(private_pem.as_bytes(), &config.stamp.audience).unwrap();
        let running = start(&config, Authenticator::Stamps(verifier)).await.unwrap();
        let http = reqwest_lite::Client::new(running.http_addr);
        let demo = if config.demo_data { &identity::DEMO_TABLES[..] } else { &[] };
        let names = config.datasets.iter().map(|d| d.name.as_str()).chain(config.views.iter().map(|v| v.name.as_str()));
        let served = names.chain(demo.iter().copied()).map(dataset).collect();
        let unrestricted = config
            .columns
            .iter()
            .map(|(name, columns)| identity::DatasetPolicy {
                dataset: dataset(name),
                denied: Vec::new(),
                masks: Vec::new(),
                unmasked: columns.iter().filter(|(_, c)| !c.tags.is_empty()).map(|(c, _)| c.clone()).collect(),
                rows: None,
                row_policies: Vec::new(),
            })
            .collect();
        Self { running, signer, public_key_pem: public_pem, signer_pem: private_pem, http, served, unrestricted }
    }

    /// A stamp whose statement may touch every served dataset.
    pub fn stamp(&self, principal: &Principal) -> String {
        let grant = Grant { scope: &self.served, data: &self.unrestricted, ..Grant::default() };
        self.signer.sign_with(principal, grant, now(), 60).unwrap()
    }

    /// A stamp whose statement may touch only `datasets` (`table` or `schema.table`).
    pub fn scoped_stamp(&self, principal: &Principal, datasets: &[&str]) -> String {
        let scope: Vec<String> = datasets.iter().map(|d| dataset(d)).collect();
        let grant = Grant { scope: &scope, data: &self.unrestricted, ..Grant::default() };
        self.signer.sign_with(principal, grant, now(), 60).unwrap()
    }

    /// A stamp as the gateway signs it for a catalog listing that may show `tables`.
    pub fn listing_stamp(&self, principal: &Principal, tables: &[&str]) -> String {
        let tables: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let grant = Grant { catalog: Some(&tables), scope: &self.served, data: &self.unrestricted, ..Grant::default() };
        self.signer.sign_with(principal, grant, now(), 60).unwrap()
    }

    pub fn flight_url(&self) -> String {
        format!("http://{}", self.running.flight_addr)
    }
}

/// A dev-mode engine (no stamps at all).
pub async fn start_dev(principal: Principal) -> Running {
    start(&test_config(None), Authenticator::DangerousDevelopment(Arc::new(principal))).await.unwrap()
}

/// The engine binary of this build.
pub const ENGINE: &str = env!("CARGO_BIN_EXE_engine");

/// A child process killed (by PID) when the test ends, its stderr kept in a file.
pub struct Node {
    pub child: Child,
    log: PathBuf,
}

impl Node {
    pub fn start(dir: &Path, name: &str, args: &[String]) -> Self {
        Self::start_bin(Path::new(ENGINE), dir, name, args)
    }

    pub fn start_bin(bin: &Path, dir: &Path, name: &str, args: &[String]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client over hyper, so tests speak real HTTP to the engine.
pub mod reqwest_lite {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client as HyperClient;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    pub struct Client {
        addr: SocketAddr,
        inner: HyperClient<HttpConnector, Full<Bytes>>,
    }

    pub use testkit::Reply;

    impl Client {
        pub fn new(addr: SocketAddr) -> Self {
            Self { addr, inner: HyperClient::builder(TokioExecutor::new()).build_http() }
        }

        pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
            let mut builder = http::Request::builder().method(method).uri(format!("http://{}{path}", self.addr));
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            let response = self.inner.request(builder.body(Full::new(body.into())).unwrap()).await.unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let collected = response.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned();
            Reply { status, headers, body: collected.to_bytes(), trailers }
        }

        /// POST /v1/sql with an optional stamp.
        pub async fn sql(&self, stamp: Option<&str>, sql: &str) -> Reply {
            match stamp {
                Some(stamp) => self.send("POST", "/v1/sql", &[(identity::STAMP_HEADER, stamp)], sql.to_string()).await,
                None => self.send("POST", "/v1/sql", &[], sql.to_string()).await,
            }
        }
    }
}
