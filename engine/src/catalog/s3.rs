//! Datasets in S3 (and S3-compatible stores: MinIO, Ceph, moto), read-only.
//!
//! DataFusion 55 reads through `object_store` 0.13, whose S3 client needs `ring`; this
//! project has one crypto provider, aws-lc-rs, which `object_store` 0.14's client uses. So
//! the client is 0.14's ([`S3Client`]), seen by DataFusion through 0.13's trait: the two
//! versions' types are the same shapes, converted field by field here. Only reads are
//! offered (the engine never writes a dataset); a write is refused.
//!
//! Credentials are by reference only: a file in the AWS shared-credentials format (a
//! Kubernetes Secret mounted read-only), else the SDK's environment chain: `AWS_ACCESS_KEY_ID`
//! and friends, web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`: EKS IRSA and
//! Pod Identity), the container credentials endpoint, then the instance metadata service.
//! Requests ([`S3Transport`]) retry twice within 10 s and time out after 30 s, so a wrong
//! endpoint or credential is an error naming the dataset, never a hang.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use datafusion::object_store as df;
use futures::stream::{BoxStream, StreamExt};
use object_store_s3 as s3;
use object_store_s3::ObjectStore as _;

use super::s3_transport::S3Transport;
use crate::config::{S3Config, s3_bucket};

/// One bucket, as DataFusion's object store (see the module docs).
#[derive(Debug)]
pub(crate) struct S3Client {
    bucket: String,
    inner: s3::aws::AmazonS3,
}

impl S3Client {
    /// A client of `bucket` with `config` (endpoint, region, credentials file).
    pub(crate) fn new(bucket: &str, config: &S3Config) -> Result<Self, String> {
        let mut builder = s3::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(s3::RetryConfig {
                backoff: s3::BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
            })
            .with_http_connector(S3Transport::new(config.ca_certificate_file.as_deref())?);
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &config.endpoint {
            // An S3-compatible store at a URL: path-style requests, plain HTTP only when the
            // endpoint says so.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(file) = &config.credentials_file {
            let credentials = Credentials::read(file)?;
            builder = builder
                .with_access_key_id(credentials.access_key_id)
                .with_secret_access_key(credentials.secret_access_key);
            if let Some(token) = credentials.session_token {
                builder = builder.with_token(token);
            }
        }
        let inner = builder.build().map_err(|e| format!("s3://{bucket}: {e}"))?;
        Ok(Self { bucket: bucket.to_string(), inner })
    }
}

impl fmt::Display for S3Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3Client(s3://{})", self.bucket)
    }
}

/// `s3.credentials_file`: the `[default]` profile of an AWS shared-credentials file.
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl Credentials {
    fn read(file: &Path) -> Result<Self, String> {
        let origin = format!("s3.credentials_file {}", file.display());
        let text = std::fs::read_to_string(file).map_err(|e| format!("{origin}: {e}"))?;
        Self::parse(&text).map_err(|e| format!("{origin}: {e}"))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let (mut section, mut key, mut secret, mut token) = (String::new(), None, None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
                continue;
            }
            if section != "default" {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err("a line in [default] is not `name = value`".into());
            };
            let value = Some(value.trim().to_string());
            match name.trim() {
                "aws_access_key_id" => key = value,
                "aws_secret_access_key" => secret = value,
                "aws_session_token" => token = value,
                _ => {}
            }
        }
        match (key, secret) {
            (Some(access_key_id), Some(secret_access_key)) => {
                Ok(Self { access_key_id, secret_access_key, session_token: token })
            }
            _ => Err("no [default] profile with aws_access_key_id and aws_secret_access_key".into()),
        }
    }
}

fn path_to_s3(path: &df::path::Path) -> s3::path::Path {
    s3::path::Path::parse(path.as_ref()).unwrap_or_else(|_| s3::path::Path::from(path.as_ref()))
}

fn path_from_s3(path: &s3::path::Path) -> df::path::Path {
    df::path::Path::parse(path.as_ref()).unwrap_or_else(|_| df::path::Path::from(path.as_ref()))
}

fn meta_from_s3(meta: s3::ObjectMeta) -> df::ObjectMeta {
    df::ObjectMeta {
        location: path_from_s3(&meta.location),
        last_modified: meta.last_modified,
        size: meta.size,
        e_tag: meta.e_tag,
        version: meta.version,
    }
}

fn error_from_s3(error: s3::Error) -> df::Error {
    match error {
        s3::Error::NotFound { path, source } => df::Error::NotFound { path, source },
        other => df::Error::Generic { store: "S3", source: Box::new(other) },
    }
}

fn read_only() -> df::Error {
    df::Error::NotSupported { source: "datasets in S3 are read-only".into() }
}

#[tonic::async_trait]
impl df::ObjectStore for S3Client {
    async fn put_opts(
        &self,
        _location: &df::path::Path,
        _payload: df::PutPayload,
        _opts: df::PutOptions,
    ) -> df::Result<df::PutResult> {
        Err(read_only())
    }

    async fn put_multipart_opts(
        &self,
        _location: &df::path::Path,
        _opts: df::PutMultipartOptions,
    ) -> df::Result<Box<dyn df::MultipartUpload>> {
        Err(read_only())
    }

    async fn get_opts(&self, location: &df::path::Path, options: df::GetOptions) -> df::Result<df::GetResult> {
        let range = options.range.map(|range| match range {
            df::GetRange::Bounded(r) => s3::GetRange::Bounded(r),
            df::GetRange::Offset(o) => s3::GetRange::Offset(o),
            df::GetRange::Suffix(s) => s3::GetRange::Suffix(s),
        });
        let options = s3::GetOptions {
            if_match: options.if_match,
            if_none_match: options.if_none_match,
            if_modified_since: options.if_modified_since,
            if_unmodified_since: options.if_unmodified_since,
            range,
            version: options.version,
            head: options.head,
            extensions: Default::default(),
        };
        let result = self.inner.get_opts(&path_to_s3(location), options).await.map_err(error_from_s3)?;
        // Built without its file system support: a remote store's result is a stream.
        let s3::GetResultPayload::Stream(stream) = result.payload;
        let payload = df::GetResultPayload::Stream(stream.map(|chunk| chunk.map_err(error_from_s3)).boxed());
        Ok(df::GetResult {
            payload,
            meta: meta_from_s3(result.meta),
            range: result.range,
            attributes: df::Attributes::new(),
        })
    }

    async fn get_ranges(&self, location: &df::path::Path, ranges: &[Range<u64>]) -> df::Result<Vec<Bytes>> {
        self.inner.get_ranges(&path_to_s3(location), ranges).await.map_err(error_from_s3)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, df::Result<df::path::Path>>,
    ) -> BoxStream<'static, df::Result<df::path::Path>> {
        locations.map(|_| Err(read_only())).boxed()
    }

    fn list(&self, prefix: Option<&df::path::Path>) -> BoxStream<'static, df::Result<df::ObjectMeta>> {
        let prefix = prefix.map(path_to_s3);
        self.inner.list(prefix.as_ref()).map(|meta| meta.map(meta_from_s3).map_err(error_from_s3)).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&df::path::Path>) -> df::Result<df::ListResult> {
        let prefix = prefix.map(path_to_s3);
        let listed = self.inner.list_with_delimiter(prefix.as_ref()).await.map_err(error_from_s3)?;
        Ok(df::ListResult {
            common_prefixes: listed.common_prefixes.iter().map(path_from_s3).collect(),
            objects: listed.objects.into_iter().map(meta_from_s3).collect(),
        })
    }

    async fn copy_opts(
        &self,
        _from: &df::path::Path,
        _to: &df::path::Path,
        _options: df::CopyOptions,
    ) -> df::Result<()> {
        Err(read_only())
    }
}

/// Registers a client of `location`'s bucket with `ctx`'s object stores.
pub(crate) fn register(
    ctx: &datafusion::prelude::SessionContext,
    location: &str,
    config: &S3Config,
) -> Result<(), String> {
    let bucket = s3_bucket(location).ok_or_else(|| format!("{location}: no bucket (expected s3://bucket/key)"))?;
    let url = datafusion::execution::object_store::ObjectStoreUrl::parse(format!("s3://{bucket}"))
        .map_err(|e| format!("{location}: {e}"))?;
    ctx.register_object_store(url.as_ref(), Arc::new(S3Client::new(bucket, config)?));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_default_profile_only() {
        let text = "[other]\naws_access_key_id = NOPE\n\n[default]\n# a comment\naws_access_key_id = AKID\naws_secret_access_key = s3cr3t\n";
        let credentials = Credentials::parse(text).unwrap();
        assert_eq!((credentials.access_key_id.as_str(), credentials.secret_access_key.as_str()), ("AKID", "s3cr3t"));
        assert!(credentials.session_token.is_none());
        // A file without a usable [default] profile: an error that never quotes what it read.
        for bad in [
            "",
            "[other]\naws_access_key_id = AKID\naws_secret_access_key = QUOTED-SECRET\n",
            "[default]\naws_secret_access_key = QUOTED-SECRET\n",
            "[default]\nQUOTED-SECRET\n",
        ] {
            let error = Credentials::parse(bad).err().unwrap();
            assert!(!error.contains("QUOTED-SECRET"), "{error}");
        }
    }
}
