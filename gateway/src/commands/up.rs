//! `gateway up`: the whole stack for development in one command.
//!
//! Creates (or reuses) in the state folder a CA, a server certificate for localhost, a client
//! certificate with a SPIFFE ID, a stamp key pair, two development API keys for two tenants
//! (hashes in `api-keys.yaml`, the keys themselves in `dev-api-key-<tenant>`, mode 0600, so
//! they can be printed again on the next start: development only), a copy of the shipped
//! Cedar policies with their tests (`policies/`, kept if it exists) and of the demo engine
//! configuration; starts the engine as a child process with the public stamp key and that
//! configuration or yours (`--engine-config`); serves the gateway on its default ports; prints commands to try;
//! stops the engine cleanly on Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use process::shutdown_signal;

use super::runtime;
use crate::auth::apikeys;
use crate::config::{
    ApiKeysConfig, AuthorizationConfig, BrowserLoginConfig, BrowserSessionsConfig, ClientAuth, Config, FsyncPolicy,
    HealthListener, Listener, OidcProviderConfig, Reference, ShutdownConfig, SinkConfig, StampConfig, TlsConfig,
};
use crate::pki::{self, LeafSpec};
use crate::server;

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Where the development CA, certificates and keys live (created if missing).
    #[arg(long, default_value = ".portcullis")]
    pub state_dir: PathBuf,
    /// The engine binary (default: `engine` next to this binary).
    #[arg(long)]
    pub engine_bin: Option<PathBuf>,
    /// Loopback by default: the development keys `up` prints are for this machine.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub api_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub flight_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub health_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8091")]
    pub engine_http_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:50052")]
    pub engine_flight_listen: SocketAddr,
    /// Cedar policy directory (default: the shipped policies and their tests, copied into the
    /// state folder).
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Your engine configuration (datasets, views, columns) instead of the demo one: the
    /// engine serves it and the gateway decides over it (`authorization.engine_config`), both
    /// reloading it when it changes. Its listen addresses and stamp keys are `up`'s.
    #[arg(long, value_name = "FILE")]
    pub engine_config: Option<PathBuf>,
    /// Create the state folder's files (PKI, stamp keys, API keys, policies) and exit: the
    /// one-shot secrets job of the compose stack and the pod test.
    #[arg(long)]
    pub init_only: bool,
    /// Browser sign-in and the SQL console (`https://localhost:PORT/console`) at this OIDC
    /// issuer, e.g. the development provider `node gateway/tests/js/interactive.mjs`.
    #[arg(long)]
    pub browser_issuer: Option<String>,
    /// The gateway's client id at that provider.
    #[arg(long, default_value = "portcullis-console", requires = "browser_issuer")]
    pub browser_client_id: String,
    /// A file holding the client secret (none: a public client, PKCE alone).
    #[arg(long, requires = "browser_issuer")]
    pub browser_client_secret_file: Option<PathBuf>,
}

/// The shipped policy set (`policies/` in the repository), embedded for `gateway up`.
const SHIPPED_POLICIES: &[(&str, &str)] = &[
    ("schema.cedarschema", include_str!("../../../policies/schema.cedarschema")),
    ("entities.json", include_str!("../../../policies/entities.json")),
    ("00-admin.cedar", include_str!("../../../policies/00-admin.cedar")),
    ("10-baseline.cedar", include_str!("../../../policies/10-baseline.cedar")),
    ("20-tenant-isolation.cedar", include_str!("../../../policies/20-tenant-isolation.cedar")),
    ("30-read-only-api-keys.cedar", include_str!("../../../policies/30-read-only-api-keys.cedar")),
    ("40-mfa-for-writes.cedar", include_str!("../../../policies/40-mfa-for-writes.cedar")),
    ("50-rows-and-columns.cedar", include_str!("../../../policies/50-rows-and-columns.cedar")),
    ("60-network.cedar", include_str!("../../../policies/60-network.cedar")),
    ("70-limits.cedar", include_str!("../../../policies/70-limits.cedar")),
    ("masks.yaml", include_str!("../../../policies/masks.yaml")),
    ("tests/admin.json", include_str!("../../../policies/tests/admin.json")),
    ("tests/limits.json", include_str!("../../../policies/tests/limits.json")),
    ("tests/mfa-for-writes.json", include_str!("../../../policies/tests/mfa-for-writes.json")),
    ("tests/read-only-api-keys.json", include_str!("../../../policies/tests/read-only-api-keys.json")),
    ("tests/rows-and-columns.json", include_str!("../../../policies/tests/rows-and-columns.json")),
    ("tests/tenant-isolation.json", include_str!("../../../policies/tests/tenant-isolation.json")),
];

/// The engine's embedded default configuration, written to the state folder so the engine
/// runs it and the gateway reads its datasets and declared columns
/// (`authorization.engine_config`).
const ENGINE_CONFIG: &str = include_str!("../../../engine/demo/engine.yaml");

/// The development tenants, one API key each.
const DEV_TENANTS: &[&str] = &["acme", "globex"];

/// The state folder's files, created if missing.
pub(crate) struct DevState {
    pub tls_dir: PathBuf,
    pub stamp_key: PathBuf,
    pub stamp_public_key: PathBuf,
    pub api_keys_file: PathBuf,
    /// `(tenant, key)` for each development tenant.
    pub dev_api_keys: Vec<(String, String)>,
    pub policies: PathBuf,
    pub engine_config: PathBuf,
}

pub(crate) fn prepare_state(dir: &Path) -> Result<DevState, String> {
    let tls_dir = dir.join("tls");
    pki::init_ca(&tls_dir, "Portcullis development CA")?;
    if !pki::leaf_paths(&tls_dir, "server").0.exists() {
        let spec = LeafSpec {
            name: "server".into(),
            hosts: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().map_err(|_| "ip")?, "::1".parse().map_err(|_| "ip")?],
            valid_days: 90,
            ..Default::default()
        };
        pki::issue_leaf(&tls_dir, &spec)?;
    }
    if !pki::leaf_paths(&tls_dir, "client").0.exists() {
        let spec = LeafSpec {
            name: "client".into(),
            spiffe_id: Some("spiffe://portcullis.dev/workload/dev-client".into()),
            client: true,
            valid_days: 90,
            ..Default::default()
        };
        pki::issue_leaf(&tls_dir, &spec)?;
    }
    let stamp_key = dir.join("stamp-key.pem");
    let stamp_public_key = dir.join("stamp-pub.pem");
    if !stamp_key.exists() || !stamp_public_key.exists() {
        let pair = identity::generate_stamp_keypair().map_err(|e| e.to_string())?;
        pki::write_private(&stamp_key, &pair.private_pkcs8_pem)?;
        std::fs::write(&stamp_public_key, &pair.public_spki_pem)
            .map_err(|e| format!("{}: {e}", stamp_public_key.display()))?;
    }
    let api_keys_file = dir.join("api-keys.yaml");
    let key_file = |tenant: &str| dir.join(format!("dev-api-key-{tenant}"));
    if !api_keys_file.exists() || DEV_TENANTS.iter().any(|t| !key_file(t).exists()) {
        let mut yaml = String::from("keys:\n");
        for tenant in DEV_TENANTS {
            let new = apikeys::generate()?;
            pki::write_private(&key_file(tenant), &new.key)?;
            yaml.push_str(&format!(
                "  - name: dev-{tenant}\n    hash: {}\n    groups: [{tenant}]\n    tenant: {tenant}\n",
                new.hash
            ));
        }
        std::fs::write(&api_keys_file, yaml).map_err(|e| format!("{}: {e}", api_keys_file.display()))?;
    }
    let mut dev_api_keys = Vec::new();
    for tenant in DEV_TENANTS {
        let path = key_file(tenant);
        let key = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        dev_api_keys.push((tenant.to_string(), key.trim().to_string()));
    }
    let policies = dir.join("policies");
    if !policies.exists() {
        std::fs::create_dir_all(policies.join("tests")).map_err(|e| format!("{}: {e}", policies.display()))?;
        for (name, text) in SHIPPED_POLICIES {
            std::fs::write(policies.join(name), text).map_err(|e| format!("{}/{name}: {e}", policies.display()))?;
        }
    }
    let engine_config = dir.join("engine.yaml");
    if !engine_config.exists() {
        std::fs::write(&engine_config, ENGINE_CONFIG).map_err(|e| format!("{}: {e}", engine_config.display()))?;
    }
    Ok(DevState { tls_dir, stamp_key, stamp_public_key, api_keys_file, dev_api_keys, policies, engine_config })
}

pub(crate) fn run(args: UpArgs) -> Result<(), String> {
    let state = prepare_state(&args.state_dir)?;
    if args.init_only {
        println!("{}: development PKI, stamp keys, API keys and policies ready", args.state_dir.display());
        return Ok(());
    }
    let engine_config = match &args.engine_config {
        Some(file) if !file.is_file() => {
            return Err(format!("--engine-config {}: no such file", file.display()));
        }
        Some(file) => std::path::absolute(file).map_err(|e| format!("--engine-config {}: {e}", file.display()))?,
        None => state.engine_config.clone(),
    };
    let (certificate, key) = pki::leaf_paths(&state.tls_dir, "server");
    let mut config = Config::new(
        TlsConfig {
            client_auth: ClientAuth::Optional,
            client_ca_file: Some(pki::ca_paths(&state.tls_dir).0.into()),
            ..TlsConfig::from_files(certificate, key)
        },
        StampConfig::from_key_file(state.stamp_key.clone()),
        AuthorizationConfig {
            engine_config: Some(engine_config.clone().into()),
            ..AuthorizationConfig::new(args.policies.clone().unwrap_or_else(|| state.policies.clone()))
        },
    );
    config.api = Listener::new(args.api_listen, args.engine_http_listen);
    config.flight = Listener::new(args.flight_listen, args.engine_flight_listen);
    config.health = HealthListener { listen: args.health_listen };
    // A development stack on one machine: no load balancer to drain from.
    config.shutdown = ShutdownConfig::immediate();
    config.auth.api_keys = Some(ApiKeysConfig { file: Some(state.api_keys_file.clone().into()), keys: Vec::new() });
    if let Some(issuer) = &args.browser_issuer {
        browser_login(&mut config, &args, issuer)?;
    }
    // Every request's OCSF event, one JSON line each, in the state dir.
    config.audit.sinks = vec![SinkConfig::file(args.state_dir.join("audit.log"), FsyncPolicy::Interval)];
    let prepared = server::prepare(config).map_err(|e| e.to_string())?;
    let engine_bin = match args.engine_bin {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .parent()
            .map(|dir| dir.join("engine"))
            .ok_or("cannot locate the engine binary; pass --engine-bin")?,
    };
    // Something already on the engine's address (an engine another process left running)
    // would answer in place of ours: refuse to start instead of printing commands that reach it.
    for addr in [args.engine_http_listen, args.engine_flight_listen] {
        std::net::TcpListener::bind(addr).map_err(|e| {
            format!("the engine's address {addr} is in use ({e}): is an engine from an earlier run still up? stop it, or pass --engine-http-listen / --engine-flight-listen")
        })?;
    }
    // The gateway's own addresses, named by the flags that set them (not the config fields
    // `up` fills in), before the engine is started for nothing.
    for (addr, flag) in [
        (args.api_listen, "--api-listen"),
        (args.flight_listen, "--flight-listen"),
        (args.health_listen, "--health-listen"),
    ] {
        std::net::TcpListener::bind(addr).map_err(|e| {
            format!("the gateway's address {addr} ({flag}) is in use ({e}): is a gateway from an earlier run still up? stop it, or pass {flag}")
        })?;
    }
    runtime(None)?.block_on(async move {
        // The engine exits when its stdin closes: the pipe's other end is this process's, so
        // the engine goes with it however it ends.
        let mut engine = tokio::process::Command::new(&engine_bin)
            .arg("--exit-with-stdin")
            .stdin(std::process::Stdio::piped())
            .arg("--config")
            .arg(&engine_config)
            .arg("--stamp-public-key")
            .arg(&state.stamp_public_key)
            .arg("--http-listen")
            .arg(args.engine_http_listen.to_string())
            .arg("--flight-listen")
            .arg(args.engine_flight_listen.to_string())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start the engine ({}): {e}; build it with `cargo build -p engine`",
                    engine_bin.display()
                )
            })?;
        // Held here: `Child::wait` would close it.
        let _engine_stdin = engine.stdin.take();
        wait_for_engine(args.engine_http_listen, &mut engine).await?;
        let stop = shutdown_signal();
        let running = server::start(prepared).await.map_err(|e| e.to_string())?;
        let ports = (running.api_addr.port(), running.flight_addr.port());
        print_usage(&state, args.engine_config.as_deref(), &args.state_dir.join("audit.log"), ports);
        if args.browser_issuer.is_some() {
            println!(
                "  The SQL console (sign in at the provider): https://localhost:{}/console\n",
                running.api_addr.port()
            );
        }
        tokio::select! {
            _ = stop => {}
            status = engine.wait() => tracing::error!(?status, "the engine exited"),
        }
        tracing::info!("shutting down");
        running.shutdown().await;
        stop_child(&mut engine).await;
        Ok(())
    })
}

/// Browser sign-in at `issuer` for `https://localhost:PORT`, the session key in the state
/// folder (created once, so sessions survive a restart).
fn browser_login(config: &mut Config, args: &UpArgs, issuer: &str) -> Result<(), String> {
    let key_file = args.state_dir.join("session-key");
    if !key_file.exists() {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| "no randomness from the operating system".to_string())?;
        use base64::Engine as _;
        pki::write_private(&key_file, &base64::engine::general_purpose::STANDARD.encode(key))?;
    }
    let by_file = |path: &Path| Reference::new(format!("${{file:{}}}", path.display()));
    let origin = format!("https://localhost:{}", args.api_listen.port());
    let mut provider = OidcProviderConfig::new("dev", issuer, vec![args.browser_client_id.clone()]);
    provider.claims.tenant = Some("tenant".into());
    let mut login = BrowserLoginConfig::new(&args.browser_client_id, format!("{origin}/auth/callback"));
    login.client_secret = args.browser_client_secret_file.as_deref().map(by_file);
    login.scopes = ["openid", "email", "profile", "tenant", "offline_access"].map(String::from).to_vec();
    provider.browser_login = Some(login);
    config.auth.oidc = vec![provider];
    config.auth.browser_sessions = Some(BrowserSessionsConfig::new(vec![by_file(&key_file)]));
    Ok(())
}

async fn wait_for_engine(addr: SocketAddr, engine: &mut tokio::process::Child) -> Result<(), String> {
    for _ in 0..300 {
        if let Ok(Some(status)) = engine.try_wait() {
            return Err(format!("the engine exited during startup ({status})"));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the engine did not listen on {addr} within 30 s"))
}

/// SIGTERM first so the engine shuts down cleanly; killed if it lingers.
async fn stop_child(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

fn print_usage(state: &DevState, own_engine_config: Option<&Path>, audit_log: &Path, ports: (u16, u16)) {
    let (api_port, flight_port) = ports;
    let dir = state.tls_dir.display();
    let policies = state.policies.display();
    let key = |tenant: &str| {
        state.dev_api_keys.iter().find(|(t, _)| t == tenant).map(|(_, k)| k.as_str()).unwrap_or_default()
    };
    let (acme, globex) = (key("acme"), key("globex"));
    let audit = audit_log.display();
    let data = match own_engine_config {
        // The demo data's tour.
        None => format!(
            r#"  Two tenants, one query, two answers (development API keys; Cedar policies in {policies}):
    curl --cacert {dir}/ca.pem -H 'X-API-Key: {acme}' \
      https://localhost:{api_port}/v1/sql -d 'SELECT * FROM my_orders'
    curl --cacert {dir}/ca.pem -H 'X-API-Key: {globex}' \
      https://localhost:{api_port}/v1/sql -d 'SELECT * FROM my_orders'
  and a dataset of the other tenant is refused (403):
    curl --cacert {dir}/ca.pem -H 'X-API-Key: {acme}' \
      https://localhost:{api_port}/v1/sql -d 'SELECT * FROM globex.orders'

  Rows and columns under Cedar: one shared table, each tenant its own rows, contact
  details masked (policies/50-rows-and-columns.cedar and masks.yaml):
    curl --cacert {dir}/ca.pem -H 'X-API-Key: {acme}' \
      https://localhost:{api_port}/v1/sql -d 'SELECT name, email, phone FROM demo.customers'
    curl --cacert {dir}/ca.pem -H 'X-API-Key: {globex}' \
      https://localhost:{api_port}/v1/sql -d 'SELECT name, email, phone FROM demo.customers'
"#
        ),
        Some(file) => format!(
            r#"  Your engine configuration, {file} (edits are served without a restart): what each
  development API key may read (Cedar policies in {policies}), then query one:
    curl --cacert {dir}/ca.pem -H 'X-API-Key: {acme}' https://localhost:{api_port}/v1/datasets
    curl --cacert {dir}/ca.pem -H 'X-API-Key: {globex}' https://localhost:{api_port}/v1/datasets
"#,
            file = file.display()
        ),
    };
    println!(
        r#"
Portcullis is up. The engine listens on loopback only; talk to the gateway.

  curl over mTLS (the client certificate is the workload identity):
    curl --cacert {dir}/ca.pem --cert {dir}/client.pem --key {dir}/client-key.pem \
      https://localhost:{api_port}/v1/sql -d 'SELECT * FROM whoami'

{data}
  pyarrow (ADBC Flight SQL) over mTLS:
    python3 -c "
import adbc_driver_flightsql.dbapi as f
r = lambda p: open(p).read()
with f.connect('grpc+tls://localhost:{flight_port}', autocommit=True, db_kwargs={{
    'adbc.flight.sql.client_option.tls_root_certs': r('{dir}/ca.pem'),
    'adbc.flight.sql.client_option.mtls_cert_chain': r('{dir}/client.pem'),
    'adbc.flight.sql.client_option.mtls_private_key': r('{dir}/client-key.pem')}}) as c, c.cursor() as cur:
  cur.execute('SELECT * FROM whoami'); print(cur.fetch_arrow_table())"

  Audit events (OCSF, one JSON line per request and sign-in): {audit}

Ctrl-C stops the gateway and the engine.
"#
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `up` copies the policy folder whole (policies, schema, entities, masks, tests): a file
    /// added to `policies/` and not embedded fails here.
    #[test]
    fn the_embedded_policies_are_the_policy_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let mut on_disk = Vec::new();
        for dir in [root.clone(), root.join("tests")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() && path.file_name().is_some_and(|n| n != "README.md") {
                    on_disk.push(path.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = SHIPPED_POLICIES.iter().map(|(name, _)| name.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        for (name, text) in SHIPPED_POLICIES {
            assert_eq!(&std::fs::read_to_string(root.join(name)).unwrap(), text, "{name}");
        }
    }
}
