//! Forwarding through the gateway to a real engine: identity spoofing, curl over mTLS,
//! gRPC streaming in every direction, upstream failures, and limits.

use crate::common;
mod hostile;

use std::pin::Pin;
use std::sync::Arc;

use crate::common::{Stack, grpc_channel};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse,
    PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt};
use gateway::config::ClientAuth;
use tokio::net::TcpStream;
use tonic::{Code, Request, Response, Status, Streaming};

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_engine() {
    let stack = Stack::start(ClientAuth::Optional).await;
    // A stamp minted with a key the engine does not trust, plus every common identity header.
    let pair = identity::generate_stamp_keypair().unwrap();
    let forger =
        identity::StampSigner::from_pem(pair.private_pkcs8_pem.as_bytes(), identity::DEFAULT_AUDIENCE).unwrap();
    let root = identity::Principal::new(identity::PrincipalKind::User, "root", "root", identity::AuthMethod::Oidc);
    let forged = forger.sign(&root, common_now(), 60).unwrap();
    let headers = [
        ("x-portcullis-stamp", forged.as_str()),
        ("X-Portcullis-Stamp", "v1.x.y.z"),
        ("x_portcullis_stamp", "v1.x.y.z"),
        ("X-Principal", "root"),
        ("x_principal", "root"),
        ("X-Forwarded-User", "root"),
        ("x-auth-request-user", "root"),
        ("x-forwarded-for", "10.0.0.1"),
    ];
    let reply = stack
        .client(Some("workload"))
        .request(stack.gateway.api_addr, "POST", "/v1/sql", &headers, "SELECT * FROM whoami")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()[0]["principal"], "spiffe://test.example/ns/etl/sa/loader");
    // Without a certificate the spoofed headers get nothing at all.
    let reply = stack
        .client(None)
        .request(stack.gateway.api_addr, "POST", "/v1/sql", &headers, "SELECT * FROM whoami")
        .await
        .unwrap();
    assert_eq!(reply.status, 401);
}

fn common_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_mtls() {
    let stack = Stack::start(ClientAuth::Required).await;
    let (cert, key) = stack.pki.leaf("workload");
    let url = format!("https://localhost:{}/v1/sql", stack.gateway.api_addr.port());
    let ca = stack.pki.ca();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--fail-with-body", "--resolve"])
            .arg(format!("localhost:{}:127.0.0.1", url.split(':').nth(2).unwrap().split('/').next().unwrap()))
            .arg("--cacert")
            .arg(ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["-H", "accept: text/csv", "-d", "SELECT current_principal() AS p", &url])
            .output()
            .expect("curl is installed (.ci/run installs it)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout, "p\nspiffe://test.example/ns/etl/sa/loader\n");
}

/// Refusals sent before the request body was read arrive whole over HTTP/2: the system curl
/// (7.88 on Debian) used to exit 92 ("Stream error in the HTTP/2 framing layer") on about
/// half of them when the gateway reset the unread stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_arrive_whole_over_http2_with_curl() {
    let stack = Stack::start(ClientAuth::Optional).await;
    let port = stack.gateway.api_addr.port();
    let ca = stack.pki.ca();
    let outputs = tokio::task::spawn_blocking(move || {
        let body = "SELECT ".to_string() + &"1 + ".repeat(4000) + "1";
        (0..30)
            .map(|i| {
                // A small and a 16 KiB body; a wrong API key and no credentials at all.
                let data = if i % 2 == 0 { "SELECT 1" } else { body.as_str() };
                let mut command = std::process::Command::new("curl");
                command
                    .args(["-sS", "--http2", "--resolve", &format!("localhost:{port}:127.0.0.1")])
                    .arg("--cacert")
                    .arg(&ca)
                    .args(["-w", "\n%{http_code} %{http_version}", "-d", data])
                    .arg(format!("https://localhost:{port}/v1/sql"));
                if i % 3 != 0 {
                    command.args(["-H", &format!("X-API-Key: pcl_{}", "A".repeat(43))]);
                }
                command.output().expect("curl is installed (.ci/test installs it)")
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (i, output) in outputs.iter().enumerate() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "try {i}: curl exited {:?}: {}\n{stdout}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.ends_with("\n401 2"), "try {i}: {stdout}");
        assert!(stdout.contains("\"code\":\"unauthenticated\""), "try {i}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_flight_sql_through_the_gateway_over_mtls() {
    let stack = Stack::start(ClientAuth::Required).await;
    let (cert, key) = stack.pki.leaf("workload");
    let script = r#"
import sys
import adbc_driver_flightsql.dbapi as f
uri, ca, cert, key = sys.argv[1:5]
r = lambda p: open(p).read()
kw = {'adbc.flight.sql.client_option.tls_root_certs': r(ca),
      'adbc.flight.sql.client_option.mtls_cert_chain': r(cert),
      'adbc.flight.sql.client_option.mtls_private_key': r(key)}
with f.connect(uri, autocommit=True, db_kwargs=kw) as c, c.cursor() as cur:
    cur.execute('SELECT current_principal() AS p')
    assert cur.fetchall() == [('spiffe://test.example/ns/etl/sa/loader',)]
    sql = 'SELECT value FROM generate_series(1, 10) WHERE value > $1'
    cur.adbc_prepare(sql)
    cur.execute(sql, parameters=(7,))
    assert [r[0] for r in cur.fetchall()] == [8, 9, 10]
    cur.execute('SELECT value FROM generate_series(1, 300000)')
    n = cur.fetch_arrow_table().num_rows
    assert n == 300000, n
print('ok')
"#;
    let uri = format!("grpc+tls://localhost:{}", stack.gateway.flight_addr.port());
    let ca = stack.pki.ca();
    let output = tokio::process::Command::from(testkit::python_command())
        .arg("-c")
        .arg(script)
        .arg(uri)
        .arg(ca)
        .arg(cert)
        .arg(key)
        .output()
        .await
        .unwrap();
    let stdout = testkit::python_stdout(&output, "the pyarrow mTLS client");
    assert_eq!(stdout.trim(), "ok");
}

/// A gRPC channel to the gateway over TLS with a client certificate.
/// A Flight service that echoes: the upstream for streaming tests in every direction.
struct Echo;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl FlightService for Echo {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn handshake(
        &self,
        r: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let out = r.into_inner().map(|m| m.map(|m| HandshakeResponse { protocol_version: 0, payload: m.payload }));
        Ok(Response::new(Box::pin(out)))
    }
    async fn list_flights(&self, _: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn get_flight_info(&self, _: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn poll_flight_info(&self, _: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn get_schema(&self, _: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("echo"))
    }
    /// Server streaming: as many messages as the ticket says, each carrying who called.
    async fn do_get(&self, r: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let caller = r.metadata().get(identity::STAMP_HEADER).is_some();
        let n: usize = String::from_utf8_lossy(&r.get_ref().ticket).parse().unwrap_or(0);
        let out = futures::stream::iter(
            (0..n).map(move |i| Ok(FlightData { app_metadata: format!("{i}:{caller}").into(), ..Default::default() })),
        );
        Ok(Response::new(Box::pin(out)))
    }
    /// Client streaming: counts what was sent.
    async fn do_put(&self, r: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        let count = r.into_inner().count().await;
        let out = futures::stream::once(async move { Ok(PutResult { app_metadata: count.to_string().into() }) });
        Ok(Response::new(Box::pin(out)))
    }
    /// Bidirectional: echoes each message as it arrives.
    async fn do_exchange(&self, r: Request<Streaming<FlightData>>) -> Result<Response<Self::DoExchangeStream>, Status> {
        Ok(Response::new(Box::pin(r.into_inner())))
    }
    async fn do_action(&self, _: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::failed_precondition("echo refuses actions"))
    }
    async fn list_actions(&self, _: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("echo"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_streaming_in_every_direction_and_statuses_pass_through() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(FlightServiceServer::new(Echo))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let pki = common::Pki::new();
    let (key, _) = common::stamp_keys(pki.path());
    let config = common::gateway_config(
        &pki,
        ClientAuth::Required,
        "http://127.0.0.1:9".into(),
        format!("http://{echo_addr}"),
        key,
    );
    let gateway = gateway::server::start(gateway::server::prepare(config.clone()).unwrap()).await.unwrap();
    let stack_like = Stack { pki, engine: dummy_engine().await, gateway, config };
    let mut client = FlightServiceClient::new(grpc_channel(&stack_like, stack_like.gateway.flight_addr.port()).await);

    // Server streaming, 1000 messages; the upstream saw the gateway's stamp.
    let got: Vec<FlightData> =
        client.do_get(Ticket::new("1000")).await.unwrap().into_inner().map(|m| m.unwrap()).collect().await;
    assert_eq!(got.len(), 1000);
    assert_eq!(got[999].app_metadata, "999:true");

    // Client streaming; the first message names what is written (authorization reads it).
    let sent = futures::stream::iter((0..500).map(|i| FlightData {
        flight_descriptor: (i == 0).then(|| FlightDescriptor::new_cmd(ingest_command("acme.orders"))),
        ..Default::default()
    }));
    let mut put = client.do_put(sent).await.unwrap().into_inner();
    assert_eq!(put.next().await.unwrap().unwrap().app_metadata, "500");

    // Bidirectional: each reply arrives before the next message is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<FlightData>(1);
    let first = FlightData {
        flight_descriptor: Some(FlightDescriptor::new_cmd(ingest_command("acme.orders"))),
        app_metadata: "m0".into(),
        ..Default::default()
    };
    tx.send(first).await.unwrap();
    let mut replies = client.do_exchange(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert_eq!(replies.next().await.unwrap().unwrap().app_metadata, "m0");
    for i in 1..20 {
        tx.send(FlightData { app_metadata: format!("m{i}").into(), ..Default::default() }).await.unwrap();
        assert_eq!(replies.next().await.unwrap().unwrap().app_metadata, format!("m{i}"));
    }
    drop(tx);
    assert!(replies.next().await.is_none());

    // The upstream's own error status comes back as it was sent (in trailers).
    let status = client.do_action(Action::new("ClosePreparedStatement", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "echo refuses actions");
}

/// A Flight SQL `CommandStatementIngest` for `table`, as a descriptor's command.
fn ingest_command(table: &str) -> Vec<u8> {
    use arrow_flight::sql::{Any, CommandStatementIngest, ProstMessageExt};
    let ingest = CommandStatementIngest { table: table.into(), ..Default::default() };
    let any: Any = ingest.as_any();
    prost::Message::encode_to_vec(&any)
}

/// An engine instance the echo test never uses (the Stack type wants one).
async fn dummy_engine() -> engine::server::Running {
    let mut config = engine::config::Config::embedded_default().unwrap();
    config.http_listen = "127.0.0.1:0".parse().unwrap();
    config.flight_listen = "127.0.0.1:0".parse().unwrap();
    let principal =
        identity::Principal::new(identity::PrincipalKind::User, "unused", "unused", identity::AuthMethod::Development);
    engine::server::start(&config, engine::caller::Authenticator::DangerousDevelopment(Arc::new(principal)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_unavailable() {
    let pki = common::Pki::new();
    let (key, _) = common::stamp_keys(pki.path());
    // A port that was just free: connections to it are refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        format!("http://{addr}")
    };
    let config = common::gateway_config(&pki, ClientAuth::Required, closed.clone(), closed, key);
    let gateway = gateway::server::start(gateway::server::prepare(config.clone()).unwrap()).await.unwrap();
    let reply = common::Client::new(&pki, Some("workload")).sql(gateway.api_addr, "SELECT 1").await.unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["error"]["code"], "upstream_unavailable");
    assert!(!reply.text().contains("127.0.0.1"), "upstream address leaked: {}", reply.text());

    let stack_like = Stack { pki, engine: dummy_engine().await, gateway, config };
    let mut client = FlightServiceClient::new(grpc_channel(&stack_like, stack_like.gateway.flight_addr.port()).await);
    let status = client.do_get(Ticket::new("1")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "upstream unavailable");
}

#[tokio::test]
async fn api_body_over_the_limit_is_413() {
    let stack = Stack::start(ClientAuth::Required).await;
    let big = format!("SELECT '{}'", "x".repeat(17 * 1024 * 1024));
    let reply = stack.client(Some("workload")).sql(stack.gateway.api_addr, &big).await.unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn health_and_readiness() {
    let stack = Stack::start(ClientAuth::Required).await;
    let addr = stack.gateway.health_addr;
    assert_eq!(health_status(addr, "/healthz").await, 200);
    assert_eq!(health_status(addr, "/readyz").await, 200);
    assert_eq!(health_status(addr, "/other").await, 404);
    let Stack { engine, gateway: _gateway, pki: _pki, .. } = stack;
    engine.shutdown().await;
    assert_eq!(health_status(addr, "/readyz").await, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_is_504_and_deadline_exceeded() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let pki = common::Pki::new();
    let (key, _) = common::stamp_keys(pki.path());
    let mut config = common::gateway_config(&pki, ClientAuth::Required, silent.clone(), silent, key);
    config.timeouts.upstream_response_secs = 1;
    let gateway = gateway::server::start(gateway::server::prepare(config.clone()).unwrap()).await.unwrap();
    let reply = common::Client::new(&pki, Some("workload")).sql(gateway.api_addr, "SELECT 1").await.unwrap();
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["error"]["code"], "upstream_timeout");

    let stack_like = Stack { pki, engine: dummy_engine().await, gateway, config };
    let mut client = FlightServiceClient::new(grpc_channel(&stack_like, stack_like.gateway.flight_addr.port()).await);
    let status = client.do_get(Ticket::new("1")).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

/// A TLS front's port, and the client identities it saw.
type Front = (u16, Arc<std::sync::Mutex<Vec<String>>>);

/// An engine that is not on loopback, as the gateway sees it: TLS in front of the engine's
/// port, requiring a client certificate from its own PKI (not the gateway's). Records who
/// connected (the client certificate's identity) and pipes the bytes to the engine.
async fn tls_front(engine_pki: &common::Pki, backend: String) -> Front {
    use rustls::pki_types::pem::PemObject;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_file(engine_pki.ca()).unwrap()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        gateway::internal::crypto_provider(),
    )
    .build()
    .unwrap();
    let (cert, key) = engine_pki.leaf("server");
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
    let mut config = rustls::ServerConfig::builder_with_provider(gateway::internal::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let backend = backend.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, record, backend) = (acceptor.clone(), Arc::clone(&record), backend.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let identity = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| gateway::internal::principal_from_certificate(&chain[0]))
                    .map(|p| p.id);
                record.lock().unwrap().push(identity.unwrap_or_default());
                let mut engine = TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_a_client_certificate() {
    let engine_pki = common::Pki::new();
    // The engine's own ports are known only inside the stack's setup: start the TLS fronts
    // there, on the runtime, and point the gateway at them.
    let fronts: Arc<std::sync::Mutex<Vec<Front>>> = Arc::default();
    let handle = tokio::runtime::Handle::current();
    let upstream_tls = engine_side_tls(&engine_pki);
    let slot = Arc::clone(&fronts);
    let pki_ref = &engine_pki;
    let stack = Stack::start_with(ClientAuth::Required, |c| {
        let (api, flight) = tokio::task::block_in_place(|| {
            handle.block_on(async {
                (tls_front(pki_ref, c.api.upstream.clone()).await, tls_front(pki_ref, c.flight.upstream.clone()).await)
            })
        });
        let tls = upstream_tls.clone();
        c.api.upstream = format!("https://localhost:{}", api.0);
        c.flight.upstream = format!("https://localhost:{}", flight.0);
        c.api.upstream_tls = Some(tls.clone());
        c.flight.upstream_tls = Some(tls);
        slot.lock().unwrap().extend([api, flight]);
    })
    .await;
    let (api_seen, flight_seen) = {
        let fronts = fronts.lock().unwrap();
        (Arc::clone(&fronts[0].1), Arc::clone(&fronts[1].1))
    };
    // HTTP/1.1 over TLS to the engine; the stamp still says who called.
    let reply =
        stack.client(Some("workload")).sql(stack.gateway.api_addr, "SELECT current_principal() AS p").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("spiffe://test.example/ns/etl/sa/loader"), "{}", reply.text());
    // The engine side saw the gateway's upstream client certificate.
    assert_eq!(api_seen.lock().unwrap().first().map(String::as_str), Some("spiffe://test.example/ns/etl/sa/loader"));
    // Readiness goes the same way.
    assert_eq!(health_status(stack.gateway.health_addr, "/readyz").await, 200);
    // gRPC: h2 over TLS (ALPN h2) to the Flight port.
    let mut client = FlightServiceClient::new(grpc_channel(&stack, stack.gateway.flight_addr.port()).await);
    let actions: Vec<_> = client.list_actions(Empty {}).await.unwrap().into_inner().collect().await;
    assert!(!actions.is_empty() && actions.iter().all(Result::is_ok), "{actions:?}");
    assert!(!flight_seen.lock().unwrap().is_empty());

    // Fail closed: an engine certificate from a CA the gateway does not trust, or no client
    // certificate for an engine that requires one, is a 502, never a plaintext fallback.
    let untrusted =
        gateway::config::UpstreamTls { ca_file: Some(stack.pki.ca().into()), ..engine_side_tls(&engine_pki) };
    let anonymous =
        gateway::config::UpstreamTls { certificate_file: None, key_file: None, ..engine_side_tls(&engine_pki) };
    for tls in [untrusted, anonymous] {
        let mut config = stack.config.clone();
        config.api.upstream_tls = Some(tls);
        let other = gateway::server::start(gateway::server::prepare(config).unwrap()).await.unwrap();
        let reply = stack.client(Some("workload")).sql(other.api_addr, "SELECT 1").await.unwrap();
        assert_eq!(reply.status, 502, "{}", reply.text());
        assert_eq!(reply.json()["error"]["code"], "upstream_unavailable");
        other.shutdown().await;
    }
}

/// The engine PKI's CA and its `workload` leaf as the gateway's upstream client certificate.
fn engine_side_tls(engine_pki: &common::Pki) -> gateway::config::UpstreamTls {
    let (cert, key) = engine_pki.leaf("workload");
    gateway::config::UpstreamTls {
        ca_file: Some(engine_pki.ca().into()),
        certificate_file: Some(cert.into()),
        key_file: Some(key.into()),
    }
}

#[test]
fn upstream_transport_is_checked_at_startup() {
    let pki = common::Pki::new();
    let (key, _) = common::stamp_keys(pki.path());
    let loopback = "http://127.0.0.1:9".to_string();
    let check = |api: &str, tls: Option<gateway::config::UpstreamTls>| {
        let mut config = common::gateway_config(&pki, ClientAuth::Required, api.into(), loopback.clone(), key.clone());
        config.api.upstream_tls = tls;
        gateway::server::prepare(config).map(|_| ()).map_err(|e| e.to_string())
    };
    // The stamp is a bearer assertion: never in the clear off the machine.
    let err = check("http://10.1.2.3:8091", None).unwrap_err();
    assert!(err.contains("api.upstream") && err.contains("loopback"), "{err}");
    let err = check("http://127.0.0.1:8091", Some(Default::default())).unwrap_err();
    assert!(err.contains("api.upstream_tls") && err.contains("https"), "{err}");
    let half =
        gateway::config::UpstreamTls { certificate_file: Some(pki.leaf("workload").0.into()), ..Default::default() };
    let err = check("https://engine.internal:8091", Some(half)).unwrap_err();
    assert!(err.contains("go together"), "{err}");
    let mismatched = gateway::config::UpstreamTls {
        ca_file: Some(pki.ca().into()),
        certificate_file: Some(pki.leaf("workload").0.into()),
        key_file: Some(pki.leaf("mailer").1.into()),
    };
    let err = check("https://engine.internal:8091", Some(mismatched)).unwrap_err();
    assert!(err.contains("api.upstream_tls.key_file"), "{err}");
    assert!(check("https://engine.internal:8091", None).is_ok(), "Mozilla roots by default");
}

/// A GET's status on the health listener (plain HTTP/1.1).
async fn health_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request =
        http::Request::get(path).header("host", "x").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    sender.send_request(request).await.unwrap().status().as_u16()
}

/// SIGTERM's order: readiness fails first while requests are still served (the drain),
/// then the listeners close, and a response already streaming finishes whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_closes_and_lets_streams_finish() {
    use http_body_util::BodyExt;
    let stack = Stack::start_with(ClientAuth::Required, |c| {
        c.shutdown = gateway::config::ShutdownConfig { drain_secs: 2, grace_secs: 30 };
    })
    .await;
    let (api, health) = (stack.gateway.api_addr, stack.gateway.health_addr);
    let client = stack.client(Some("workload"));
    // A response large enough (tens of MB) that it is still streaming when the listeners close.
    let tls = client.connect(api).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::post("/v1/sql")
        .header("host", "localhost")
        .body(http_body_util::Full::new(bytes::Bytes::from("SELECT value FROM generate_series(1, 1000000)")))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);

    let Stack { gateway, engine: _engine, pki: _pki, .. } = stack;
    let shutdown = tokio::spawn(gateway.shutdown());
    // Draining: not ready, but new requests are still answered.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(health_status(health, "/readyz").await, 503);
    assert_eq!(health_status(health, "/healthz").await, 200);
    let reply = client.sql(api, "SELECT 1 AS one").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    // After the drain the listener is closed...
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if client.connect(api).await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "the API listener still accepts after the drain");
    // ...and the stream that started before finishes, every row.
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(rows.len(), 1_000_000);
    assert_eq!(rows[999_999]["value"], 1_000_000);
    tokio::time::timeout(std::time::Duration::from_secs(30), shutdown).await.unwrap().unwrap();
}
