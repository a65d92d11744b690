//! HTTP load: one keep-alive HTTP/1.1 connection per worker (plain, or TLS with an optional
//! client certificate), POSTing SQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::common::Common;
use crate::report::Sample;

pub async fn run(common: &Common, stamp: Option<String>, requests: usize) -> Result<Sample, String> {
    let (https, authority) = common.authority()?;
    let tls = if https { Some(common.tls_config(&[b"http/1.1"], true)?) } else { None };
    let remaining = Arc::new(AtomicUsize::new(requests));
    let mut workers = Vec::new();
    for _ in 0..common.concurrency.max(1) {
        let request = Job {
            sql: Bytes::from(common.sql.clone()),
            accept: common.accept.clone(),
            stamp: stamp.clone(),
            remaining: Arc::clone(&remaining),
        };
        let sender = match &tls {
            Some(config) => handshake(crate::tls::connect(&authority, Arc::clone(config)).await?).await?,
            None => {
                let tcp = tokio::net::TcpStream::connect(&authority).await.map_err(|e| format!("{authority}: {e}"))?;
                tcp.set_nodelay(true).map_err(|e| e.to_string())?;
                handshake(tcp).await?
            }
        };
        workers.push(tokio::spawn(request.run(sender)));
    }
    let mut total = Sample::default();
    for worker in workers {
        total.merge(worker.await.map_err(|e| e.to_string())?);
    }
    Ok(total)
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
) -> Result<http1::SendRequest<Full<Bytes>>, String> {
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

struct Job {
    sql: Bytes,
    accept: String,
    stamp: Option<String>,
    remaining: Arc<AtomicUsize>,
}

impl Job {
    async fn run(self, mut sender: http1::SendRequest<Full<Bytes>>) -> Sample {
        let mut sample = Sample::default();
        while self.remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
            let mut request =
                http::Request::post("/v1/sql").header("host", "localhost").header("accept", self.accept.as_str());
            if let Some(stamp) = &self.stamp {
                request = request.header(identity::STAMP_HEADER, stamp.as_str());
            }
            let Ok(request) = request.body(Full::new(self.sql.clone())) else {
                sample.errors += 1;
                continue;
            };
            let start = Instant::now();
            if sender.ready().await.is_err() {
                sample.errors += 1;
                break;
            }
            match sender.send_request(request).await {
                Ok(response) if response.status().is_success() => match response.into_body().collect().await {
                    Ok(body) => {
                        sample.bytes += body.to_bytes().len() as u64;
                        sample.latencies.push(start.elapsed());
                    }
                    Err(_) => sample.errors += 1,
                },
                Ok(response) => {
                    if sample.errors == 0 {
                        eprintln!("HTTP {}", response.status());
                    }
                    sample.errors += 1;
                }
                Err(_) => sample.errors += 1,
            }
        }
        sample
    }
}
