//! HTTP load: keep-alive connections, one per worker, POSTing SQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cli::Common;
use crate::report::Sample;

pub async fn run(common: &Common, stamp: Option<String>, requests: usize) -> Result<Sample, String> {
    let uri: http::Uri =
        format!("{}/v1/sql", common.target.trim_end_matches('/')).parse().map_err(|e| format!("{e}"))?;
    let remaining = Arc::new(AtomicUsize::new(requests));
    let mut workers = Vec::new();
    for _ in 0..common.concurrency.max(1) {
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1).build_http::<Full<Bytes>>();
        let (uri, stamp, remaining) = (uri.clone(), stamp.clone(), Arc::clone(&remaining));
        let (sql, accept) = (Bytes::from(common.sql.clone()), common.accept.clone());
        workers.push(tokio::spawn(async move {
            let mut sample = Sample::default();
            while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                let mut request = http::Request::post(uri.clone()).header("accept", &accept);
                if let Some(stamp) = &stamp {
                    request = request.header(identity::STAMP_HEADER, stamp);
                }
                let Ok(request) = request.body(Full::new(sql.clone())) else {
                    sample.errors += 1;
                    continue;
                };
                let start = Instant::now();
                match client.request(request).await {
                    Ok(response) if response.status().is_success() => match response.into_body().collect().await {
                        Ok(body) => {
                            sample.bytes += body.to_bytes().len() as u64;
                            sample.latencies.push(start.elapsed());
                        }
                        Err(_) => sample.errors += 1,
                    },
                    _ => sample.errors += 1,
                }
            }
            sample
        }));
    }
    let mut total = Sample::default();
    for worker in workers {
        total.merge(worker.await.map_err(|e| e.to_string())?);
    }
    Ok(total)
}
