//! Flight SQL load: one channel per worker, GetFlightInfo then DoGet for each request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::StreamExt;
use tonic::transport::Channel;

use crate::common::Common;
use crate::report::Sample;

pub async fn run(common: &Common, stamp: Option<String>, requests: usize) -> Result<Sample, String> {
    let remaining = Arc::new(AtomicUsize::new(requests));
    let mut workers = Vec::new();
    for _ in 0..common.concurrency.max(1) {
        let channel = channel(common).await?;
        let mut client = FlightSqlServiceClient::new(channel);
        if let Some(stamp) = &stamp {
            client.set_header(identity::STAMP_HEADER, stamp.clone());
        }
        let (sql, remaining) = (common.sql.clone(), Arc::clone(&remaining));
        workers.push(tokio::spawn(async move {
            let mut sample = Sample::default();
            while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                let start = Instant::now();
                match query(&mut client, &sql, &mut sample).await {
                    Ok(()) => sample.latencies.push(start.elapsed()),
                    Err(e) => {
                        if sample.errors == 0 {
                            eprintln!("flight error: {e}");
                        }
                        sample.errors += 1;
                    }
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

async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str, sample: &mut Sample) -> Result<(), String> {
    let info = client.execute(sql.to_string(), None).await.map_err(|e| e.to_string())?;
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or("endpoint without ticket")?;
        let mut stream = client.do_get(ticket).await.map_err(|e| e.to_string())?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| e.to_string())?;
            sample.rows += batch.num_rows() as u64;
            sample.bytes += batch.get_array_memory_size() as u64;
        }
    }
    Ok(())
}

/// A gRPC channel: h2c for http://, TLS (ALPN h2, optional client certificate) for https://.
async fn channel(common: &Common) -> Result<Channel, String> {
    let (https, authority) = common.authority()?;
    if !https {
        return Channel::from_shared(common.target.clone())
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("{}: {e}", common.target));
    }
    let config = common.tls_config(&[b"h2"], true)?;
    let connector = tower::service_fn(move |_: http::Uri| {
        let (config, authority) = (Arc::clone(&config), authority.clone());
        async move {
            let tls = crate::tls::connect(&authority, config).await.map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("{}: {e}", common.target))
}
