//! Engine configuration: YAML, unknown fields refused, errors name the field's path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::DataType;
use identity::ColumnType;
use serde::Deserialize;

/// The configuration used when no file is given: demo data and row-level-security views.
pub const EMBEDDED_DEFAULT: &str = include_str!("../demo/engine.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP API (`/v1/sql`, `/v1/datasets`, `/health`).
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// Arrow Flight SQL (gRPC, plaintext h2c: the gateway terminates TLS).
    #[serde(default = "default_flight_listen")]
    pub flight_listen: SocketAddr,
    #[serde(default)]
    pub stamp: StampConfig,
    #[serde(default)]
    pub sql: SqlConfig,
    #[serde(default)]
    pub limits: Limits,
    /// Register the embedded demo tables (`demo.customers`, `demo.orders`).
    #[serde(default)]
    pub demo_data: bool,
    #[serde(default)]
    pub datasets: Vec<Dataset>,
    #[serde(default)]
    pub views: Vec<View>,
    /// Column declarations for row and column policy, per dataset (`schema.table` as in
    /// `datasets`, or a demo table): each column's Cedar `type` (for row filters), `tags` (for
    /// masks and denies) and whether it may be NULL. A dataset listed here is *governed*: the
    /// engine serves it only under a decision from the gateway. Checked against each table's
    /// real schema at start. A key with `*`, `?` or `[` is a *pattern* (`*_ssn`): its tags go
    /// to every column of the table's real schema it matches that is not declared by name,
    /// so a new column is tagged without an edit (see [`crate::data_policy::patterns`]).
    #[serde(default)]
    pub columns: BTreeMap<String, BTreeMap<String, ColumnSpec>>,
    #[serde(default)]
    pub masking: MaskingConfig,
    /// How datasets at `s3://` locations are reached (`catalog::s3`).
    #[serde(default)]
    pub s3: S3Config,
    /// Run queries on an Apache Ballista cluster instead of in this process (docs/engine.md,
    /// "Scaling out"). Absent: in-process, the default.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

/// Where the cluster's scheduler is, and the node certificates to reach it and the
/// executors with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The scheduler, `host:port` (as its certificate names the host).
    pub scheduler_address: String,
    /// The cluster's mTLS files (its own CA, never the gateway's client CA).
    #[serde(default)]
    pub mtls: Option<NodeMtls>,
    /// INSECURE: talk to the cluster in plaintext, unauthenticated. Development only.
    #[serde(default)]
    pub dangerous_allow_insecure_connections: bool,
    /// A query that gets no result batch from the cluster for this long is stopped with an
    /// error (an executor lost at the wrong moment can leave a job waiting), never left hanging.
    #[serde(default = "default_stall_secs")]
    pub stall_timeout_secs: u64,
}

fn default_stall_secs() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeMtls {
    pub ca_certificate_file: PathBuf,
    pub certificate_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampConfig {
    /// PEM Ed25519 public keys whose stamps are trusted (several during a rotation).
    #[serde(default)]
    pub public_key_files: Vec<PathBuf>,
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Clock skew tolerated between gateway and engine.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Verified stamps kept in memory (about one per active principal).
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: usize,
}

impl Default for StampConfig {
    fn default() -> Self {
        Self {
            public_key_files: Vec::new(),
            audience: default_audience(),
            leeway_secs: default_leeway(),
            cache_capacity: default_cache_capacity(),
        }
    }
}

/// What SQL may do beyond reading. Everything is off by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// CREATE / DROP (tables, views, external tables).
    #[serde(default)]
    pub allow_ddl: bool,
    /// INSERT / UPDATE / DELETE / COPY.
    #[serde(default)]
    pub allow_dml: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest SQL request body accepted over HTTP.
    #[serde(default = "default_max_body")]
    pub max_sql_bytes: usize,
    /// Open Flight prepared statements kept per engine (statement tickets hold no state).
    #[serde(default = "default_max_handles")]
    pub max_flight_handles: usize,
    /// Lifetime of a Flight statement ticket, and of an unused prepared statement.
    #[serde(default = "default_handle_ttl")]
    pub flight_handle_ttl_secs: u64,
    /// Bytes all running queries may hold together (DataFusion's memory pool; sorts and
    /// aggregations spill past it, other operators fail their query). Absent: half of the
    /// process's memory limit (its cgroup's, else the host's).
    #[serde(default)]
    pub memory_pool_bytes: Option<u64>,
    /// A statement still planning or running after this long is stopped with an error.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_secs: u64,
    /// The container's memory limit (`--memory-limit-bytes`), not a file setting.
    #[serde(skip)]
    pub memory_limit_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sql_bytes: default_max_body(),
            max_flight_handles: default_max_handles(),
            flight_handle_ttl_secs: default_handle_ttl(),
            memory_pool_bytes: None,
            statement_timeout_secs: default_statement_timeout(),
            memory_limit_bytes: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// `table` or `schema.table` (the schema is created if needed).
    pub name: String,
    /// A file, or a folder of files of one format; or `s3://bucket/key` (a folder: ending in
    /// `/`), reached as `s3:` says.
    pub path: PathBuf,
    /// Inferred from the file extension when absent; required for folders.
    #[serde(default)]
    pub format: Option<Format>,
    /// For the gateway's policy, when the gateway reads this file (`authorization.engine_config`):
    /// the Cedar `Dataset` entity's `tenant` and `classification`. The engine does not use them.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub classification: Option<String>,
}

/// One declared column (see [`Config::columns`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// The type a row filter sees it as; absent: row filters cannot name it.
    #[serde(default, rename = "type")]
    pub kind: Option<ColumnType>,
    /// Labels masks and denies are written against (`pii.email`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether the column may hold NULL (a row filter must then test `resource has column`).
    #[serde(default)]
    pub nullable: bool,
}

/// Whether a column of Arrow type `actual` is of the declared family `kind`.
pub fn admits(kind: ColumnType, actual: &DataType) -> bool {
    match kind {
        ColumnType::String => matches!(actual, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
        ColumnType::Long => actual.is_integer(),
        ColumnType::Double => {
            actual.is_floating() || matches!(actual, DataType::Decimal128(..) | DataType::Decimal256(..))
        }
        ColumnType::Boolean => *actual == DataType::Boolean,
        ColumnType::Date => matches!(actual, DataType::Date32 | DataType::Date64),
        ColumnType::Timestamp => matches!(actual, DataType::Timestamp(..)),
    }
}

/// Masking settings of the engine (the masks themselves are chosen by the gateway's policy).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// A file of at least 32 secret bytes: the key of the `keyed_hash` mask. Give every engine
    /// of a deployment the same file so hashes agree; absent, each process draws its own.
    #[serde(default)]
    pub keyed_hash_key_file: Option<PathBuf>,
}

/// S3 and S3-compatible stores, for every `s3://bucket/…` dataset.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket's region (default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// An S3-compatible store's URL (MinIO, Ceph, moto): path-style requests; `http://` only
    /// then. Default: AWS (`AWS_ENDPOINT_URL` if set).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// An AWS shared-credentials file (its `[default]` profile), e.g. a mounted Secret.
    /// Absent: the environment chain (`AWS_ACCESS_KEY_ID`…, web identity / IRSA, container
    /// credentials, instance metadata).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// A PEM bundle of the CAs the store's certificate must chain to (a store with an
    /// internal CA). Absent: the Mozilla roots.
    #[serde(default)]
    pub ca_certificate_file: Option<PathBuf>,
}

/// Whether a dataset's `path` is an object store URL rather than a file or folder.
pub fn is_s3(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.starts_with("s3://"))
}

/// The bucket of an `s3://bucket/key` location.
pub fn s3_bucket(location: &str) -> Option<&str> {
    let rest = location.strip_prefix("s3://")?;
    let bucket = rest.split('/').next().unwrap_or(rest);
    (!bucket.is_empty()).then_some(bucket)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    /// `view` or `schema.view`.
    pub name: String,
    /// A SELECT; it may call `current_principal()` and friends, evaluated per query.
    pub sql: String,
    /// As for datasets: labels for the gateway's policy.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub classification: Option<String>,
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8091))
}
fn default_flight_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50052))
}
fn default_audience() -> String {
    identity::DEFAULT_AUDIENCE.to_string()
}
fn default_leeway() -> u64 {
    5
}
fn default_cache_capacity() -> usize {
    10_000
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_max_handles() -> usize {
    10_000
}
fn default_handle_ttl() -> u64 {
    600
}
fn default_statement_timeout() -> u64 {
    300
}

/// A configuration error, with the path of the offending field when there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: at `{field}`: {message}")]
    Invalid { origin: String, field: String, message: String },
}

impl Config {
    /// Parses YAML; `origin` names the source in error messages (a file path).
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::Invalid {
                origin: origin.to_string(),
                field: if field == "." { "(top level)".into() } else { field },
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads and parses a YAML file. Relative dataset and key paths are resolved against the
    /// file's folder, so a config and its data can move together.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut config = Self::from_yaml(&text, &path.display().to_string())?;
        if let Some(dir) = path.parent() {
            for dataset in config.datasets.iter_mut().filter(|d| !is_s3(&d.path)) {
                dataset.path = dir.join(&dataset.path);
            }
            for file in
                [config.s3.credentials_file.as_mut(), config.s3.ca_certificate_file.as_mut()].into_iter().flatten()
            {
                *file = dir.join(&*file);
            }
            for key in &mut config.stamp.public_key_files {
                *key = dir.join(&*key);
            }
            if let Some(key) = config.masking.keyed_hash_key_file.as_mut() {
                *key = dir.join(&*key);
            }
            if let Some(mtls) = config.cluster.as_mut().and_then(|c| c.mtls.as_mut()) {
                for file in [&mut mtls.ca_certificate_file, &mut mtls.certificate_file, &mut mtls.key_file] {
                    *file = dir.join(&*file);
                }
            }
        }
        Ok(config)
    }

    /// The embedded default: demo data and row-level-security views.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::from_yaml(EMBEDDED_DEFAULT, "embedded default config")
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |field: String, message: &str| ConfigError::Invalid {
            origin: origin.to_string(),
            field,
            message: message.to_string(),
        };
        for (i, d) in self.datasets.iter().enumerate() {
            check_name(&d.name).map_err(|m| invalid(format!("datasets[{i}].name"), m))?;
            if is_s3(&d.path) && s3_bucket(&d.path.to_string_lossy()).is_none() {
                return Err(invalid(format!("datasets[{i}].path"), "an S3 location is s3://bucket/key"));
            }
        }
        if let Some(endpoint) = &self.s3.endpoint
            && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        {
            return Err(invalid("s3.endpoint".into(), "must be an http:// or https:// URL"));
        }
        for (i, v) in self.views.iter().enumerate() {
            check_name(&v.name).map_err(|m| invalid(format!("views[{i}].name"), m))?;
            if v.sql.trim().is_empty() {
                return Err(invalid(format!("views[{i}].sql"), "must not be empty"));
            }
        }
        if self.stamp.cache_capacity == 0 {
            return Err(invalid("stamp.cache_capacity".into(), "must be at least 1"));
        }
        if self.limits.statement_timeout_secs == 0 {
            // Zero would stop every statement at once, not mean "no limit".
            return Err(invalid("limits.statement_timeout_secs".into(), "must be at least 1"));
        }
        if self.stamp.audience.is_empty() {
            return Err(invalid("stamp.audience".into(), "must not be empty"));
        }
        if let Some(cluster) = &self.cluster {
            self.validate_cluster(cluster).map_err(|(field, message)| invalid(field, &message))?;
        }
        Ok(())
    }

    /// What cluster mode cannot do: every node must read a dataset at the same path, there is
    /// no in-memory table on the executors, and nothing may write.
    fn validate_cluster(&self, cluster: &ClusterConfig) -> Result<(), (String, String)> {
        match (&cluster.mtls, cluster.dangerous_allow_insecure_connections) {
            (None, false) => {
                return Err((
                    "cluster.mtls".into(),
                    "required: the cluster's ports require mTLS (or, for development only, \
                     dangerous_allow_insecure_connections: true)"
                        .into(),
                ));
            }
            (Some(_), true) => {
                return Err((
                    "cluster.dangerous_allow_insecure_connections".into(),
                    "cannot be combined with cluster.mtls".into(),
                ));
            }
            _ => {}
        }
        if cluster.stall_timeout_secs == 0 {
            return Err(("cluster.stall_timeout_secs".into(), "must be at least 1".into()));
        }
        if cluster.scheduler_address.contains("://") || cluster.scheduler_address.rsplit_once(':').is_none() {
            return Err(("cluster.scheduler_address".into(), "must be host:port (no scheme)".into()));
        }
        if self.demo_data {
            return Err((
                "demo_data".into(),
                "the demo tables live in this process's memory, which the cluster's executors cannot read: \
                 write them out as files and list them under datasets"
                    .into(),
            ));
        }
        for (i, d) in self.datasets.iter().enumerate() {
            if is_s3(&d.path) {
                return Err((
                    format!("datasets[{i}].path"),
                    "an s3:// dataset cannot run on the cluster yet: its executors have no S3 client".into(),
                ));
            }
            if d.path.is_relative() {
                return Err((
                    format!("datasets[{i}].path"),
                    format!(
                        "{} is relative: in cluster mode every node reads a dataset itself, so it must be an \
                         absolute path (or URL) that is the same on the coordinator, the scheduler and every executor",
                        d.path.display()
                    ),
                ));
            }
        }
        for (i, d) in self.datasets.iter().enumerate() {
            let json_array = match d.format {
                Some(format) => format == Format::Json,
                None => d.path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")),
            };
            if json_array {
                return Err((
                    format!("datasets[{i}].format"),
                    "a JSON-array file cannot run on the cluster: its executors read JSON as NDJSON \
                     (Ballista 55 does not carry the option in a plan); convert it to NDJSON or Parquet"
                        .into(),
                ));
            }
        }
        if self.sql.allow_ddl || self.sql.allow_dml {
            let field = if self.sql.allow_ddl { "sql.allow_ddl" } else { "sql.allow_dml" };
            return Err((field.into(), "writes are not supported in cluster mode".into()));
        }
        Ok(())
    }
}

/// `table` or `schema.table`, each part a plain identifier, so names mean the same to the
/// engine, the gateway's SQL parser and Cedar.
fn check_name(name: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 {
        return Err("must be `table` or `schema.table`");
    }
    for part in parts {
        let mut chars = part.chars();
        let starts_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        if !starts_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err("each part must be a lower-case identifier ([a-z_][a-z0-9_]*)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mode_refuses_what_the_cluster_cannot_do() {
        let base = "cluster: {scheduler_address: 'sched:50050', mtls: {ca_certificate_file: /c/ca.pem, \
                    certificate_file: /c/n.pem, key_file: /c/n-key.pem}}\n";
        for (extra, field) in [
            ("demo_data: true\n", "demo_data"),
            ("datasets: [{name: t, path: data/t.parquet}]\n", "datasets[0].path"),
            ("sql: {allow_ddl: true}\n", "sql.allow_ddl"),
            ("sql: {allow_dml: true}\n", "sql.allow_dml"),
            ("datasets: [{name: t, path: /data/t.json}]\n", "datasets[0].format"),
            ("datasets: [{name: t, path: /data/t, format: json}]\n", "datasets[0].format"),
        ] {
            let err = Config::from_yaml(&format!("{base}{extra}"), "c.yaml").unwrap_err().to_string();
            assert!(err.contains(field), "{extra}: {err}");
        }
        for (yaml, field) in [
            ("cluster: {scheduler_address: 'sched:50050'}\n", "cluster.mtls"),
            (
                "cluster: {scheduler_address: 'https://sched:50050', dangerous_allow_insecure_connections: true}\n",
                "cluster.scheduler_address",
            ),
            (
                "cluster: {scheduler_address: 's:1', dangerous_allow_insecure_connections: true, mtls: \
                 {ca_certificate_file: a, certificate_file: b, key_file: c}}\n",
                "cluster.dangerous_allow_insecure_connections",
            ),
        ] {
            let err = Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string();
            assert!(err.contains(field), "{yaml}: {err}");
        }
        let ok = Config::from_yaml(&format!("{base}datasets: [{{name: t, path: /data/t.parquet}}]\n"), "c.yaml");
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn embedded_default_parses() {
        let config = Config::embedded_default().unwrap();
        assert!(config.demo_data);
        assert!(!config.views.is_empty());
        assert!(config.http_listen.ip().is_loopback());
        assert!(config.flight_listen.ip().is_loopback());
    }

    #[test]
    fn an_s3_location_names_its_bucket_and_stays_a_url() {
        assert_eq!(s3_bucket("s3://sales/2026/orders.parquet"), Some("sales"));
        assert_eq!(s3_bucket("s3://sales"), Some("sales"));
        assert_eq!(s3_bucket("s3:///key"), None);
        assert_eq!(s3_bucket("/data/x.parquet"), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("engine.yaml");
        std::fs::write(
            &file,
            "datasets: [{name: t, path: s3://b/t.parquet}, {name: u, path: u.csv}]\ns3: {credentials_file: creds}\n",
        )
        .unwrap();
        let config = Config::from_file(&file).unwrap();
        assert_eq!(config.datasets[0].path, PathBuf::from("s3://b/t.parquet"));
        assert_eq!(config.datasets[1].path, dir.path().join("u.csv"));
        assert_eq!(config.s3.credentials_file, Some(dir.path().join("creds")));
        for (yaml, field) in [
            ("datasets: [{name: t, path: 's3:///t.parquet'}]\n", "datasets[0].path"),
            ("s3: {endpoint: 'localhost:9000'}\n", "s3.endpoint"),
        ] {
            let error = Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string();
            assert!(error.contains(field), "{yaml}: {error}");
        }
    }

    #[test]
    fn unknown_field_names_its_path() {
        let err = Config::from_yaml("sql:\n  allow_dll: true\n", "test.yaml").unwrap_err().to_string();
        assert!(err.contains("test.yaml"), "{err}");
        assert!(err.contains("sql"), "{err}");
        assert!(err.contains("allow_dll"), "{err}");
    }

    #[test]
    fn bad_value_names_its_path() {
        let err = Config::from_yaml("datasets:\n  - name: t\n    path: x.csv\n    format: xml\n", "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("datasets[0].format"), "{err}");
        let err = Config::from_yaml("http_listen: nowhere\n", "c.yaml").unwrap_err().to_string();
        assert!(err.contains("http_listen"), "{err}");
        let err = Config::from_yaml("limits:\n  statement_timeout_secs: 0\n", "c.yaml").unwrap_err().to_string();
        assert!(err.contains("limits.statement_timeout_secs") && err.contains("at least 1"), "{err}");
        assert!(Config::from_yaml("limits:\n  statement_timeout_secs: 1\n", "c.yaml").is_ok());
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["Orders", "a.b.c", "1t", "drop table", ""] {
            let yaml = format!("views:\n  - name: '{name}'\n    sql: SELECT 1\n");
            let err = Config::from_yaml(&yaml, "c.yaml").unwrap_err().to_string();
            assert!(err.contains("views[0].name"), "{name}: {err}");
        }
    }
}
