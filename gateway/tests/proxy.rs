//! Forwarding through the gateway to a real engine: identity spoofing, curl over mTLS,
//! gRPC streaming in every direction, upstream failures, and limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse,
    PollInfo, PutResult, SchemaResult, Ticket,
};
use common::{Stack, client_config};
use futures::{Stream, StreamExt};
use gateway::config::ClientAuth;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
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
    let output = tokio::process::Command::new(std::env::var("PORTCULLIS_PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg("-c")
        .arg(script)
        .arg(uri)
        .arg(ca)
        .arg(cert)
        .arg(key)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.trim() == "ok", "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
}

/// A gRPC channel to the gateway over TLS with a client certificate.
async fn grpc_channel(stack: &Stack, port: u16) -> Channel {
    let config = client_config(&stack.pki.ca(), Some(stack.pki.leaf("workload")), &[b"h2"]);
    let connector = tower::service_fn(move |_: http::Uri| {
        let config = Arc::clone(&config);
        async move {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Endpoint::from_static("http://localhost").connect_with_connector(connector).await.unwrap()
}

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
    let get = |path: &'static str| {
        let addr = stack.gateway.health_addr;
        async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let request = http::Request::get(path)
                .header("host", "x")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            sender.send_request(request).await.unwrap().status().as_u16()
        }
    };
    assert_eq!(get("/healthz").await, 200);
    assert_eq!(get("/readyz").await, 200);
    assert_eq!(get("/other").await, 404);
    let Stack { engine, gateway, pki: _pki, .. } = stack;
    engine.shutdown().await;
    let addr = gateway.health_addr;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request =
        http::Request::get("/readyz").header("host", "x").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status().as_u16(), 503);
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
