//! Test harness: a development PKI in a temp folder, a real engine on loopback verifying the
//! gateway's stamps, a real gateway in front of it, and a rustls client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cgroup;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use gateway::config::{
    AuthorizationConfig, ClientAuth, Config, HealthListener, Listener, ShutdownConfig, StampConfig, TlsConfig,
};
use gateway::internal::pki::{self, LeafSpec};
use http_body_util::{BodyExt, Full};
use rustls::pki_types::ServerName;
pub use testkit::{Reply, client_config};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// A CA with a server leaf (`server`), a SPIFFE client (`workload`), an email-only client
    /// (`mailer`), an expired client (`expired`), and a second CA's client (`stranger`).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        pki::init_ca(path, "Test CA").unwrap();
        let leaf = |name: &str, f: &dyn Fn(&mut LeafSpec)| {
            let mut spec = LeafSpec { name: name.into(), valid_days: 30, ..Default::default() };
            f(&mut spec);
            pki::issue_leaf(path, &spec).unwrap();
        };
        leaf("server", &|s| {
            s.hosts = vec!["localhost".into()];
            s.ips = vec!["127.0.0.1".parse().unwrap()];
        });
        leaf("workload", &|s| {
            s.client = true;
            s.spiffe_id = Some("spiffe://test.example/ns/etl/sa/loader".into());
        });
        leaf("mailer", &|s| {
            s.client = true;
            s.email = Some("mailer@example.com".into());
        });
        leaf("expired", &|s| {
            s.client = true;
            s.spiffe_id = Some("spiffe://test.example/expired".into());
            s.valid_days = -1;
        });
        let other = path.join("other-ca");
        pki::init_ca(&other, "Other CA").unwrap();
        pki::issue_leaf(
            &other,
            &LeafSpec {
                name: "stranger".into(),
                client: true,
                spiffe_id: Some("spiffe://test.example/stranger".into()),
                valid_days: 30,
                ..Default::default()
            },
        )
        .unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca(&self) -> PathBuf {
        self.path().join("ca.pem")
    }

    /// A new `server` leaf (localhost, 10 days) written over the old one, as a rotation does.
    pub fn reissue_server(&self) {
        let spec =
            LeafSpec { name: "server".into(), hosts: vec!["localhost".into()], valid_days: 10, ..Default::default() };
        pki::issue_leaf(self.path(), &spec).unwrap();
    }

    /// (certificate, key) of a leaf; `stranger` lives under the other CA.
    pub fn leaf(&self, name: &str) -> (PathBuf, PathBuf) {
        if name == "stranger" {
            pki::leaf_paths(&self.path().join("other-ca"), name)
        } else {
            pki::leaf_paths(self.path(), name)
        }
    }
}

pub fn stamp_keys(dir: &Path) -> (PathBuf, String) {
    let pair = identity::generate_stamp_keypair().unwrap();
    let key = dir.join("stamp-key.pem");
    pki::write_private(&key, &pair.private_pkcs8_pem).unwrap();
    (key, pair.public_spki_pem)
}

/// The engine's embedded default configuration, as a file.
pub fn embedded_engine_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/demo/engine.yaml")
}

/// The repository's shipped policies (`policies/`).
pub fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A copy of the shipped policies in `dir`, to change in a test.
pub fn copy_shipped_policies(dir: &Path) {
    for entry in std::fs::read_dir(shipped_policies()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// A policy directory with the shipped schema and one policy that allows everything: for
/// tests about other stages.
pub fn allow_all_policies(dir: &Path) -> PathBuf {
    let policies = dir.join("allow-all-policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::copy(shipped_policies().join("schema.cedarschema"), policies.join("schema.cedarschema")).unwrap();
    std::fs::write(policies.join("allow-all.cedar"), "@id(\"allow-all\")\npermit(principal, action, resource);\n")
        .unwrap();
    policies
}

/// `auth.api_keys` with one key, given by its hash, in the config itself.
pub fn inline_key(name: &str, hash: &str) -> gateway::config::ApiKeysConfig {
    gateway::config::ApiKeysConfig {
        file: None,
        keys: vec![gateway::config::ApiKeyEntry {
            name: name.into(),
            hash: hash.into(),
            groups: vec![],
            tenant: None,
            expires: None,
        }],
    }
}

pub fn gateway_config(
    pki: &Pki,
    client_auth: ClientAuth,
    api_upstream: String,
    flight_upstream: String,
    stamp_key: PathBuf,
) -> Config {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = Config::new(
        TlsConfig {
            client_auth,
            client_ca_file: Some(pki.ca().into()),
            ..TlsConfig::from_files(pki.leaf("server").0, pki.leaf("server").1)
        },
        StampConfig::from_key_file(stamp_key),
        AuthorizationConfig::new(allow_all_policies(pki.path())),
    );
    config.api = Listener { listen: any, upstream: api_upstream, ..Listener::new(any, any) };
    config.flight = Listener { listen: any, upstream: flight_upstream, ..Listener::new(any, any) };
    config.health = HealthListener { listen: any };
    // Tests that shut a gateway down do not wait for a load balancer.
    config.shutdown = ShutdownConfig::immediate();
    config.audit = suite_audit();
    config
}

/// Every test gateway writes its audit events under `$CARGO_TARGET_TMPDIR/test-audit/`
/// (one file per gateway), so `.ci/run` can check that nothing the whole suite did put a
/// token, key or session token into an event. Tests that configure audit replace this.
pub fn suite_audit() -> gateway::config::AuditConfig {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-audit");
    std::fs::create_dir_all(&dir).unwrap();
    let binary = std::env::current_exe().unwrap().file_stem().unwrap().to_string_lossy().into_owned();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{binary}-{}-{n}.log", std::process::id()));
    gateway::config::AuditConfig {
        sinks: vec![gateway::config::SinkConfig::File {
            path: path.into(),
            max_bytes: 1 << 30,
            keep: 1,
            fsync: gateway::config::FsyncPolicy::Never,
        }],
        ..Default::default()
    }
}

/// A gateway in front of a real engine that trusts its stamp key.
pub struct Stack {
    pub pki: Pki,
    pub engine: engine::server::Running,
    pub gateway: gateway::server::Running,
    /// The gateway's config, to start it again.
    pub config: Config,
}

impl Stack {
    pub async fn start(client_auth: ClientAuth) -> Self {
        Self::start_with(client_auth, |_| {}).await
    }

    /// [`Self::start`] with the gateway config adjusted (authentication methods, say).
    /// The gateway reads the engine's embedded default from the repository's copy
    /// (`authorization.engine_config`), as a deployment reads the engine's file.
    pub async fn start_with(client_auth: ClientAuth, adjust: impl FnOnce(&mut Config)) -> Self {
        let embedded = embedded_engine_config();
        Self::start_with_engine(client_auth, engine::config::Config::embedded_default().unwrap(), move |config| {
            config.authorization.engine_config = Some(embedded.into());
            adjust(config)
        })
        .await
    }

    /// [`Self::start_with`] with the engine's configuration given (listen addresses replaced).
    pub async fn start_with_engine(
        client_auth: ClientAuth,
        mut engine_config: engine::config::Config,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let pki = Pki::new();
        engine_config.http_listen = "127.0.0.1:0".parse().unwrap();
        engine_config.flight_listen = "127.0.0.1:0".parse().unwrap();
        let (stamp_key, public_pem) = stamp_keys(pki.path());
        let mut config = gateway_config(&pki, client_auth, String::new(), String::new(), stamp_key);
        let verifier =
            identity::StampVerifier::from_pems([public_pem.as_bytes()], identity::DEFAULT_AUDIENCE, 2, 100).unwrap();
        let engine =
            engine::server::start(&engine_config, engine::caller::Authenticator::Stamps(verifier)).await.unwrap();
        config.api.upstream = format!("http://{}", engine.http_addr);
        config.flight.upstream = format!("http://{}", engine.flight_addr);
        adjust(&mut config);
        let gateway = gateway::server::start(gateway::server::prepare(config.clone()).unwrap()).await.unwrap();
        Self { pki, engine, gateway, config }
    }

    pub fn client(&self, leaf: Option<&str>) -> Client {
        Client::new(&self.pki, leaf)
    }

    /// One raw gRPC call to the Flight listener over h2 (TLS, no client certificate) with
    /// `body` as sent (framing included): the response head, where the gateway's own refusals
    /// carry `grpc-status` and `grpc-message`.
    pub async fn grpc_head(&self, rpc: &str, headers: &[(&str, &str)], body: Bytes) -> http::HeaderMap {
        let mut client = self.client(None);
        client.config = client_config(&self.pki.ca(), None, &[b"h2"]);
        let tls = client.connect(self.gateway.flight_addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut request = http::Request::post(format!("https://localhost/arrow.flight.protocol.FlightService/{rpc}"))
            .header("content-type", "application/grpc");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        sender.send_request(request.body(Full::new(body)).unwrap()).await.unwrap().headers().clone()
    }
}

/// A TLS client (rustls, aws-lc-rs) speaking HTTP/1.1 or h2 to the gateway.
pub struct Client {
    pub config: Arc<rustls::ClientConfig>,
    /// Connect from this loopback address (any of 127.0.0.0/8) instead of the default.
    pub local_ip: Option<std::net::IpAddr>,
}

impl Client {
    pub fn new(pki: &Pki, leaf: Option<&str>) -> Self {
        Self { config: client_config(&pki.ca(), leaf.map(|l| pki.leaf(l)), &[b"http/1.1"]), local_ip: None }
    }

    /// Opens a TLS connection; the error is the handshake's.
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
        let tcp = match self.local_ip {
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
            None => TcpStream::connect(addr).await?,
        };
        let mut tls = TlsConnector::from(Arc::clone(&self.config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        // TLS 1.3 client auth failures arrive after the handshake: provoke them now.
        use tokio::io::AsyncWriteExt;
        tls.flush().await?;
        Ok(tls)
    }

    pub async fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, String> {
        let tls = self.connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut request = http::Request::builder().method(method).uri(path).header("host", "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let collected = response.into_body().collect().await.map_err(|e| e.to_string())?;
        let trailers = collected.trailers().cloned();
        Ok(Reply { status, headers, body: collected.to_bytes(), trailers })
    }

    pub async fn sql(&self, addr: SocketAddr, sql: &str) -> Result<Reply, String> {
        self.request(addr, "POST", "/v1/sql", &[], sql).await
    }
}

/// The leaf certificate `addr` serves to a new connection (no client certificate).
pub async fn served_certificate(pki: &Pki, addr: SocketAddr) -> Vec<u8> {
    let tls = Client::new(pki, None).connect(addr).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec()
}

/// Waits up to 5 s for `addr` to serve a certificate other than `before`; false if it never does.
pub async fn certificate_changes(pki: &Pki, addr: SocketAddr, before: &[u8]) -> bool {
    for _ in 0..50 {
        if served_certificate(pki, addr).await != before {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// The events of an audit file, one JSON value per line (none if it is not there yet).
pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// Waits up to 60 s for `done`; panics naming `what` after that.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The health listener's `/metrics` text.
pub async fn metrics_text(addr: SocketAddr) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request =
        http::Request::get("/metrics").header("host", "localhost").body(http_body_util::Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// A gRPC channel to the gateway's `port` over TLS, as the `workload` certificate.
pub async fn grpc_channel(stack: &Stack, port: u16) -> tonic::transport::Channel {
    let config = client_config(&stack.pki.ca(), Some(stack.pki.leaf("workload")), &[b"h2"]);
    let connector = tower::service_fn(move |_: http::Uri| {
        let config = Arc::clone(&config);
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    tonic::transport::Endpoint::from_static("http://localhost").connect_with_connector(connector).await.unwrap()
}
