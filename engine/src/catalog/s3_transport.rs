//! How the S3 client's requests travel: hyper with rustls on aws-lc-rs, the process's one
//! HTTP stack and one crypto provider (`object_store`'s own transport is reqwest). Servers are
//! verified against the Mozilla roots, or the CA bundle `s3.ca_certificate_file` names (a
//! store inside the cluster with its own CA). Connecting gives up after 5 s and a response
//! head after 30 s; the client retries (see `s3`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use object_store_s3::ClientOptions;
use object_store_s3::client::{
    HttpClient, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, HttpResponse, HttpResponseBody, HttpService,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes the S3 client's HTTP client (see the module docs).
#[derive(Debug)]
pub(crate) struct S3Transport {
    tls: Arc<rustls::ClientConfig>,
}

impl S3Transport {
    /// Trusting the Mozilla roots, or only the certificates in `ca_file` (PEM).
    pub(crate) fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(file) => {
                let origin = format!("s3.ca_certificate_file {}", file.display());
                for certificate in CertificateDer::pem_file_iter(file).map_err(|e| format!("{origin}: {e}"))? {
                    let certificate = certificate.map_err(|e| format!("{origin}: {e}"))?;
                    roots.add(certificate).map_err(|e| format!("{origin}: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!("{origin}: no certificate in it"));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { tls: Arc::new(tls) })
    }
}

impl object_store_s3::client::HttpConnector for S3Transport {
    fn connect(&self, _options: &ClientOptions) -> object_store_s3::Result<HttpClient> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let https = HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Ok(HttpClient::new(Hyper { client: Client::builder(TokioExecutor::new()).build(https) }))
    }
}

#[derive(Debug)]
struct Hyper {
    client: Client<HttpsConnector<HttpConnector>, HttpRequestBody>,
}

#[tonic::async_trait]
impl HttpService for Hyper {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = tokio::time::timeout(RESPONSE_TIMEOUT, self.client.request(request))
            .await
            .map_err(|elapsed| HttpError::new(HttpErrorKind::Timeout, elapsed))?
            .map_err(|error| {
                let kind = if error.is_connect() { HttpErrorKind::Connect } else { HttpErrorKind::Request };
                HttpError::new(kind, error)
            })?;
        Ok(response.map(|body| {
            HttpResponseBody::new(http_body_util::BodyExt::map_err(body, |error| {
                HttpError::new(HttpErrorKind::Interrupted, error)
            }))
        }))
    }
}
