//! Hostile clients against the real gateway over loopback: connection floods, idle and
//! slow connections, stalled bodies and first messages, slow readers, hop-by-hop abuse,
//! protocol confusion, duplicate credentials, an HTTP/2 control-frame flood and a stalled
//! audit sink. Each attack is bounded in count and time.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway::config::{ClientAuth, Config, FsyncPolicy, SinkConfig};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::health_status;
use crate::common::{self, Client, Stack, client_config};

/// An audit file sink for one test, with refusals aggregated every second.
fn audit_to(config: &mut Config, path: &Path) {
    config.audit.sinks = vec![SinkConfig::File {
        path: path.to_path_buf().into(),
        max_bytes: 1 << 30,
        keep: 1,
        fsync: FsyncPolicy::Never,
    }];
    config.audit.refusal_interval_secs = 1;
}

/// A stack whose gateway audits to its own file (kept with the folder); `adjust` sets what
/// the test attacks.
async fn audited_stack(adjust: impl FnOnce(&mut Config)) -> (Stack, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let stack = Stack::start_with(ClientAuth::Optional, |c| {
        adjust(c);
        audit_to(c, &log);
    })
    .await;
    (stack, dir, log)
}

/// An h2 connection to `addr` with the workload certificate.
async fn h2_sender<B>(stack: &Stack, addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync,
{
    h2_connection(stack, addr).await.0
}

async fn h2_connection<B>(
    stack: &Stack,
    addr: SocketAddr,
) -> (hyper::client::conn::http2::SendRequest<B>, tokio::task::JoinHandle<Result<(), hyper::Error>>)
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync,
{
    let mut client = stack.client(Some("workload"));
    client.config = client_config(&stack.pki.ca(), Some(stack.pki.leaf("workload")), &[b"h2"]);
    let tls = client.connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    (sender, tokio::spawn(conn))
}

fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// Connection-refusal events with this reason (`status_code`).
fn refusals(path: &Path, reason: &str) -> Vec<Value> {
    events(path).into_iter().filter(|e| e["api"]["operation"] != "" && e["status_code"] == reason).collect()
}

async fn eventually(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 10 s) for a counter to reach `at_least`: the gateway counts a refusal as it
/// records it, which can be just after the client has read the answer.
async fn metric_reaches(health: SocketAddr, series: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = metric(health, series).await;
        if value >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {value}, below {at_least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A counter's value in the gateway's `/metrics` (the registry is per process: other tests
/// add to it too, so callers compare with what it was before).
async fn metric(health: SocketAddr, series: &str) -> u64 {
    let tcp = TcpStream::connect(health).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/metrics").header("host", "x").body(http_body_util::Empty::<Bytes>::new());
    let body = sender.send_request(request.unwrap()).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0)
}

async fn tcp_from(ip: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(to).await
}

/// Whether the gateway closed (or reset) `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(within, stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_from_one_address_spares_the_others() {
    let (stack, _dir, log) = audited_stack(|c| {
        c.limits.max_connections_per_ip = 20;
        c.timeouts.client_header_secs = 3;
    })
    .await;
    let (api, health) = (stack.gateway.api_addr, stack.gateway.health_addr);
    let series = "gateway_connection_refusals_total{listener=\"api\",reason=\"source_connection_limit\"}";
    let refused_before = metric(health, series).await;

    // 300 connections from 127.0.0.2 that never start TLS.
    let flooder: IpAddr = "127.0.0.2".parse().unwrap();
    let (mut flood, mut reset_at_once) = (Vec::new(), 0);
    for _ in 0..300 {
        match tcp_from(flooder, api).await {
            Ok(stream) => flood.push(stream),
            // The gateway's reset can arrive before connect() returns.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => reset_at_once += 1,
            Err(error) => panic!("{error}"),
        }
    }
    // Past the per-address limit each connection was closed at once, before any TLS.
    let closed =
        futures::future::join_all(flood.iter_mut().map(|s| closed_within(s, Duration::from_millis(500)))).await;
    let mut held: Vec<TcpStream> = flood.into_iter().zip(&closed).filter(|(_, c)| !**c).map(|(s, _)| s).collect();
    assert_eq!((held.len(), reset_at_once + closed.iter().filter(|c| **c).count()), (20, 280));
    // Another address is served meanwhile, and the probes answer.
    let mut other = stack.client(Some("workload"));
    other.local_ip = Some("127.0.0.3".parse().unwrap());
    let reply = other.sql(api, "SELECT 1 AS one").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(health_status(health, "/healthz").await, 200);
    metric_reaches(health, series, refused_before + 280).await;
    // The 20 it held are closed at the head deadline (no TLS handshake within 3 s).
    for stream in &mut held {
        assert!(closed_within(stream, Duration::from_secs(6)).await, "an idle connection outlived its deadline");
    }
    // One event at once, then the rest of the interval as one event with its count.
    eventually("the aggregated refusal events", 10, || {
        let counted: u64 = refusals(&log, "source_connection_limit")
            .iter()
            .filter(|e| e["src_endpoint"]["ip"] == "127.0.0.2")
            .map(|e| e["count"].as_u64().unwrap())
            .sum();
        counted == 280
    })
    .await;
    let aggregated = refusals(&log, "source_connection_limit");
    assert!(aggregated.len() <= 4, "refusals were audited one by one: {}", aggregated.len());
    eventually("the handshake timeouts' event", 10, || {
        refusals(&log, "tls_handshake_failed").iter().any(|e| e["status_detail"] == "TLS handshake timed out")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_and_idle_h2_connections_are_closed_at_their_deadlines() {
    let (stack, _dir, log) = audited_stack(|c| {
        c.timeouts.client_header_secs = 2;
        c.timeouts.idle_secs = 2;
    })
    .await;
    // TLS done, no request: closed at the head deadline, as a refusal.
    let started = Instant::now();
    let mut tls = stack.client(None).connect(stack.gateway.api_addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(8), tls.read(&mut buf)).await.expect("still open after 8 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(1500), "closed too early: {:?}", started.elapsed());
    eventually("the header_timeout event", 10, || !refusals(&log, "header_timeout").is_empty()).await;

    // h2: one request, then nothing: GOAWAY and close at the idle deadline.
    let (mut sender, conn) = h2_connection(&stack, stack.gateway.api_addr).await;
    let request = http::Request::post("https://localhost/v1/sql").body(Full::new(Bytes::from("SELECT 1"))).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    let idle_from = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await.expect("h2 connection still open after 10 s");
    assert!(ended.unwrap().is_ok(), "a GOAWAY is a clean end for the client");
    assert!(idle_from.elapsed() >= Duration::from_millis(1500), "closed too early: {:?}", idle_from.elapsed());
}

/// Sends `head` and `body` over TLS (HTTP/1.1, the workload certificate), then reads
/// whatever comes back until the connection closes (at most `secs`).
async fn raw_h1(stack: &Stack, head: &str, body: &[u8], secs: u64) -> String {
    let mut tls = stack.client(Some("workload")).connect(stack.gateway.api_addr).await.unwrap();
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(secs), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_and_slow_readers_get_their_timeouts_while_a_large_result_streams_whole() {
    let (stack, dir, log) = audited_stack(|c| {
        c.timeouts.client_body_secs = 1;
        c.timeouts.client_write_secs = 2;
    })
    .await;
    // Content-Length: 100, then 9 bytes and nothing more: 408 after client_body_secs.
    let started = Instant::now();
    let head = "POST /v1/sql HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n";
    let reply = raw_h1(&stack, head, b"SELECT 1 ", 10).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("\"request_timeout\"") && reply.contains("client_body_secs"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(8));
    eventually("the request's 408 event", 10, || {
        events(&log)
            .iter()
            .any(|e| e["http_response"]["code"] == 408 && e["unmapped"]["error_code"] == "request_timeout")
    })
    .await;

    // A Flight call whose first message never completes: DEADLINE_EXCEEDED.
    let mut sender = h2_sender(&stack, stack.gateway.flight_addr).await;
    let (mut feed, frames) = futures::channel::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
    feed.try_send(Ok(http_body::Frame::data(Bytes::from_static(&[0, 0, 0])))).unwrap();
    let request = http::Request::post("https://localhost/arrow.flight.protocol.FlightService/DoGet")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::StreamBody::new(frames))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request)).await.unwrap().unwrap();
    assert_eq!(response.headers()["grpc-status"], "4", "{:?}", response.headers());
    let message = response.headers()["grpc-message"].to_str().unwrap();
    assert!(message.contains("first gRPC message"), "{message}");
    drop(feed);
    eventually("the stalled call's event", 10, || {
        events(&log)
            .iter()
            .any(|e| e["unmapped"]["grpc_status"] == 4 && e["unmapped"]["error_code"] == "request_timeout")
    })
    .await;

    // A large result read at normal speed streams to the end.
    let sql = "SELECT value FROM generate_series(1, 3000000)";
    let head = format!(
        "POST /v1/sql HTTP/1.1\r\nhost: localhost\r\naccept: text/csv\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        sql.len()
    );
    let whole = raw_h1(&stack, &head, sql.as_bytes(), 60).await;
    assert!(whole.starts_with("HTTP/1.1 200"), "{}", &whole[..whole.len().min(300)]);
    assert!(whole.contains("\n3000000\n") && whole.ends_with("0\r\n\r\n"), "the result was cut short");

    // A client that reads the head and then stops reading: cut off after client_write_secs.
    // The upstream here streams as fast as it can, so the sockets' buffers fill at once.
    let pki = common::Pki::new();
    let (key, _) = common::stamp_keys(pki.path());
    let fast = endless_upstream().await;
    let mut config = common::gateway_config(&pki, ClientAuth::Optional, fast.clone(), fast, key);
    config.timeouts.client_write_secs = 2;
    let slow_log = dir.path().join("slow-reader.log");
    audit_to(&mut config, &slow_log);
    let gateway = gateway::server::start(gateway::server::prepare(config).unwrap()).await.unwrap();
    let series = "gateway_connection_refusals_total{listener=\"api\",reason=\"write_timeout\"}";
    let before = metric(gateway.health_addr, series).await;
    let mut tls = Client::new(&pki, Some("workload")).connect(gateway.api_addr).await.unwrap();
    let head = "POST /v1/sql HTTP/1.1\r\nhost: localhost\r\ncontent-length: 8\r\n\r\nSELECT 1";
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut first = [0u8; 1024];
    let n = tls.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let stopped_reading = Instant::now();
    eventually("the write timeout", 20, || !refusals(&slow_log, "write_timeout").is_empty()).await;
    assert!(stopped_reading.elapsed() >= Duration::from_millis(1500), "cut off too early");
    // What the sockets held, then the end: the connection was closed.
    let rest = read_until_closed(&mut tls).await;
    assert!(rest.len() < 256 << 20, "{} bytes", rest.len());
    assert!(metric(gateway.health_addr, series).await > before);
    // The request's own event says the response was cut short.
    eventually("the incomplete response's event", 10, || {
        events(&slow_log).iter().any(|e| e["unmapped"]["error_code"] == "response_incomplete")
    })
    .await;
    gateway.shutdown().await;
}

/// An upstream whose every response is an endless stream of 64 KiB chunks.
async fn endless_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request: http::Request<hyper::body::Incoming>| async {
                    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                    let frames = futures::stream::repeat_with(move || {
                        Ok::<_, std::convert::Infallible>(http_body::Frame::data(chunk.clone()))
                    });
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::StreamBody::new(frames)))
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    url
}

/// An upstream that records the headers of each request it gets and answers 200.
async fn recording_upstream() -> (String, Arc<Mutex<Vec<http::HeaderMap>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    record.lock().unwrap().push(request.headers().clone());
                    async { Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("[]")))) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_header_cannot_strip_what_the_gateway_adds() {
    let hop = ("connection", "x-portcullis-stamp, x-forwarded-for, x-request-id, x-extra");
    // The headers as the upstream receives them.
    let pki = common::Pki::new();
    let (key, _) = common::stamp_keys(pki.path());
    let (url, seen) = recording_upstream().await;
    let config = common::gateway_config(&pki, ClientAuth::Optional, url.clone(), url, key);
    let gateway = gateway::server::start(gateway::server::prepare(config).unwrap()).await.unwrap();
    let headers = [hop, ("x-request-id", "client-chosen"), ("x-extra", "dropped")];
    let reply = Client::new(&pki, Some("workload"))
        .request(gateway.api_addr, "POST", "/v1/sql", &headers, "SELECT 1")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let upstream = seen.lock().unwrap().pop().unwrap();
    assert!(upstream.get("x-portcullis-stamp").is_some_and(|s| s.len() > 100), "{upstream:?}");
    assert_eq!(upstream["x-forwarded-for"], "127.0.0.1");
    assert_eq!(upstream["x-request-id"], reply.headers["x-request-id"], "the id the client is told is the engine's");
    assert!(!upstream.contains_key("x-extra") && !upstream.contains_key("connection"), "{upstream:?}");
    gateway.shutdown().await;

    // And the real engine verifies the stamp.
    let stack = Stack::start(ClientAuth::Optional).await;
    let reply = stack
        .client(Some("workload"))
        .request(stack.gateway.api_addr, "POST", "/v1/sql", &[hop], "SELECT * FROM whoami")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()[0]["principal"], "spiffe://test.example/ns/etl/sa/loader");
}

/// Everything the gateway sends on `tls` until it closes (at most 10 s).
async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(tls: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await.expect("never closed");
    out
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn h2_frame(frame_type: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, frame_type, 0];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The frame types in an h2 byte stream (server side: no preface).
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    frames(bytes).into_iter().map(|(frame_type, _)| frame_type).collect()
}

/// Each frame's type and payload.
fn frames(mut bytes: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        out.push((bytes[3], &bytes[9..(9 + len).min(bytes.len())]));
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_confusion_duplicate_credentials_and_control_floods_are_refused() {
    let key = gateway::internal::apikeys::generate().unwrap();
    let (stack, _dir, log) = audited_stack(|c| c.auth.api_keys = Some(common::inline_key("svc", &key.hash))).await;
    let health = stack.gateway.health_addr;
    let protocol = "gateway_connection_refusals_total{listener=\"api\",reason=\"protocol_error\"}";
    let protocol_before = metric(health, protocol).await;
    let request = "POST /v1/sql HTTP/1.1\r\nhost: localhost\r\ncontent-length: 8\r\n\r\nSELECT 1";

    // HTTP/1.1 on a connection where ALPN chose h2: no HTTP/1.1 answer, the connection closes.
    let mut h2_client = stack.client(Some("workload"));
    h2_client.config = client_config(&stack.pki.ca(), Some(stack.pki.leaf("workload")), &[b"h2"]);
    for addr in [stack.gateway.api_addr, stack.gateway.flight_addr] {
        let mut tls = h2_client.connect(addr).await.unwrap();
        tls.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut tls).await;
        assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1"), "{}", String::from_utf8_lossy(&answer));
    }
    // The h2 preface where ALPN chose HTTP/1.1: refused too.
    let mut tls = stack.client(Some("workload")).connect(stack.gateway.api_addr).await.unwrap();
    tls.write_all(PREFACE).await.unwrap();
    let answer = read_until_closed(&mut tls).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "{}", String::from_utf8_lossy(&answer));
    metric_reaches(health, protocol, protocol_before + 2).await;
    eventually("the protocol_error event", 10, || !refusals(&log, "protocol_error").is_empty()).await;

    // A request head over limits.max_header_bytes: 431, and a header_too_large refusal.
    let too_large = "gateway_connection_refusals_total{listener=\"api\",reason=\"header_too_large\"}";
    let too_large_before = metric(health, too_large).await;
    // Exactly the limit and no end of head yet: the gateway reads all of it (nothing unread
    // turns its close into a reset that could swallow the answer) and refuses.
    let mut head = "GET /v1/datasets HTTP/1.1\r\nhost: localhost\r\nx-padding: ".to_string();
    head.push_str(&"a".repeat(65_536 - head.len()));
    let mut tls = stack.client(Some("workload")).connect(stack.gateway.api_addr).await.unwrap();
    tls.write_all(head.as_bytes()).await.unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut tls).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    metric_reaches(health, too_large, too_large_before + 1).await;
    eventually("the header_too_large event", 10, || !refusals(&log, "header_too_large").is_empty()).await;

    // Two credentials of one kind: 401 malformed, whichever comes first.
    let client = stack.client(None);
    for name in ["x-api-key", "authorization"] {
        let value = if name == "x-api-key" { key.key.clone() } else { format!("Bearer {}", key.key) };
        let headers = [(name, value.as_str()), (name, value.as_str())];
        let reply = client.request(stack.gateway.api_addr, "POST", "/v1/sql", &headers, "SELECT 1").await.unwrap();
        assert_eq!(reply.status, 401, "{}", reply.text());
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains("more than one"), "{}", reply.text());
    }
    let reply = client
        .request(stack.gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", key.key.as_str())], "SELECT 1")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "one key is accepted: {}", reply.text());

    // A WINDOW_UPDATE flood: GOAWAY, then the connection closes.
    let flood_series = "gateway_connection_refusals_total{listener=\"flight\",reason=\"control_frame_flood\"}";
    let flood_before = metric(health, flood_series).await;
    let tls = h2_client.connect(stack.gateway.flight_addr).await.unwrap();
    let (mut read, mut write) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let mut start = PREFACE.to_vec();
        start.extend(h2_frame(0x4, 0, &[]));
        write.write_all(&start).await?;
        let burst: Vec<u8> = (0..5000).flat_map(|_| h2_frame(0x8, 0, &1u32.to_be_bytes())).collect();
        for _ in 0..40 {
            write.write_all(&burst).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let answer = read_until_closed(&mut read).await;
    let types = frame_types(&answer);
    assert!(types.contains(&0x7), "no GOAWAY among {types:?}");
    // RFC 9113 §7: ENHANCE_YOUR_CALM (0xb), not NO_ERROR, for a peer that floods.
    let codes: Vec<&[u8]> = frames(&answer).into_iter().filter(|(t, _)| *t == 0x7).map(|(_, p)| &p[4..8]).collect();
    assert!(!codes.is_empty() && codes.iter().all(|c| *c == [0, 0, 0, 0xb]), "GOAWAY codes {codes:?}");
    let _ = writer.await;
    metric_reaches(health, flood_series, flood_before + 1).await;
    eventually("the control_frame_flood event", 10, || !refusals(&log, "control_frame_flood").is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_host_header_naming_another_authority_is_refused() {
    let stack = Stack::start(ClientAuth::Required).await;
    let addr = stack.gateway.api_addr;
    let mut sender = h2_sender::<Full<Bytes>>(&stack, addr).await;
    let authority = format!("localhost:{}", addr.port());
    for (host, status) in [("evil.example", 400), ("LOCALHOST:1", 400), (authority.as_str(), 200)] {
        let request = http::Request::post(format!("https://{authority}/v1/sql"))
            .header("host", host)
            .body(Full::new(Bytes::from_static(b"SELECT 1")))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "host {host}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if status == 400 {
            assert!(String::from_utf8_lossy(&body).contains("another authority"), "{}", String::from_utf8_lossy(&body));
        }
    }
}

/// A FIFO as the audit file: nothing is written until the test reads it.
fn fifo(dir: &Path) -> PathBuf {
    let path = dir.join("audit.fifo");
    let status = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(status.success());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_audit_sink_makes_requests_wait_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo(dir.path());
    // The read end, opened when the gateway opens the write end; read only when released.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let lines = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (path, lines) = (path.clone(), Arc::clone(&lines));
        std::thread::spawn(move || {
            use std::io::BufRead;
            let fifo = std::fs::File::open(path).unwrap();
            released.recv().unwrap();
            for line in std::io::BufReader::new(fifo).lines() {
                let Ok(line) = line else { return };
                let mut lines = lines.lock().unwrap();
                lines.push_str(&line);
                lines.push('\n');
            }
        })
    };
    let stack = Stack::start_with(ClientAuth::Optional, |c| {
        c.audit.sinks = vec![SinkConfig::File {
            path: path.clone().into(),
            max_bytes: 1 << 40,
            keep: 1,
            fsync: FsyncPolicy::Never,
        }];
        c.audit.queue_capacity = 8;
    })
    .await;
    let api = stack.gateway.api_addr;
    // Far more events than the pipe (64 KiB) and the queue hold.
    let requests: Vec<_> = (0..150)
        .map(|i| {
            let client = stack.client(Some("workload"));
            tokio::spawn(async move { client.sql(api, &format!("SELECT {i} AS n")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = requests.iter().filter(|r| !r.is_finished()).count();
    assert!(waiting > 0, "every request finished: the sink never stalled");
    // The runtime is not blocked: probes answer while requests wait for the audit queue.
    for _ in 0..3 {
        let probe = tokio::time::timeout(Duration::from_secs(2), health_status(stack.gateway.health_addr, "/healthz"));
        assert_eq!(probe.await.expect("/healthz did not answer while the audit sink stalled"), 200);
    }
    // The sink recovers: every request completes, and every one has its event.
    release.send(()).unwrap();
    let mut ids = Vec::new();
    for request in requests {
        let reply = tokio::time::timeout(Duration::from_secs(60), request).await.unwrap().unwrap().unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        ids.push(reply.headers["x-request-id"].to_str().unwrap().to_string());
    }
    eventually("an event for every request", 30, || {
        let lines = lines.lock().unwrap();
        ids.iter().all(|id| lines.contains(&format!("\"correlation_uid\":\"{id}\"")))
    })
    .await;
    stack.gateway.shutdown().await;
    let _ = reader.join();
}
