//! `engine executor`: Ballista's executor. It polls the scheduler for tasks (pull-staged),
//! runs them, and serves their results to the coordinator and to other executors over
//! Flight, both over the node mTLS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::BALLISTA_PROTOCOL_VERSION;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::protobuf::executor_resource::Resource;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    ExecutorOperatingSystemSpecification, ExecutorRegistration, ExecutorResource, ExecutorSpecification,
};
use ballista_executor::executor::Executor;
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::metrics::LoggingMetricsCollector;
use clap::Args;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;

use super::node::{MAX_MESSAGE, NodeArgs};

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// The scheduler, `host:port` (as its certificate names the host).
    #[arg(long, value_name = "HOST:PORT")]
    pub scheduler_address: String,
    /// Tasks run at once (default: the CPUs).
    #[arg(long)]
    pub vcores: Option<usize>,
    /// Where task results (shuffle files) are written (default: a new folder under the
    /// system's temporary folder, removed at exit).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

pub(super) async fn run(args: ExecutorArgs) -> Result<(), String> {
    let tls = args.node.tls()?;
    if args.scheduler_address.contains("://") {
        return Err("--scheduler-address: give host:port (the scheme follows from mTLS)".into());
    }
    let listener = tokio::net::TcpListener::bind(args.node.node_bind_address)
        .await
        .map_err(|e| format!("--node-bind-address {}: {e}", args.node.node_bind_address))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let id = uuid::Uuid::new_v4().to_string();
    let (work_dir, _cleanup) = match &args.work_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!("portcullis-executor-{id}"));
            (dir.clone(), Some(RemoveOnDrop(dir)))
        }
    };
    std::fs::create_dir_all(&work_dir).map_err(|e| format!("--work-dir {}: {e}", work_dir.display()))?;
    let work_dir = work_dir.to_string_lossy().into_owned();
    let vcores = args.vcores.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1);
    let metadata = ExecutorRegistration {
        id: id.clone(),
        host: Some(args.node.advertised(bound)),
        port: u32::from(bound.port()),
        // Pull-staged: the scheduler never calls the executor.
        grpc_port: 0,
        specification: Some(ExecutorSpecification {
            resources: vec![ExecutorResource { resource: Some(Resource::Vcores(u32::try_from(vcores).unwrap_or(1))) }],
        }),
        // The scheduler requires it (it unwraps it on registration).
        os_info: Some(ExecutorOperatingSystemSpecification {
            system_name: std::env::consts::OS.to_string(),
            physical_cores: u32::try_from(vcores).unwrap_or(1),
            ..Default::default()
        }),
        ballista_protocol_version: BALLISTA_PROTOCOL_VERSION,
    };
    // Each task's session: TLS (with this node's certificate) when it fetches another
    // executor's results.
    let task_tls = tls.clone();
    let config_producer: ballista_core::ConfigProducer = Arc::new(move || {
        let config = SessionConfig::new_with_ballista();
        match &task_tls {
            Some(tls) => config
                .with_ballista_use_tls(true)
                .with_ballista_override_create_grpc_client_endpoint(tls.endpoint_override()),
            None => config,
        }
    });
    let temp = work_dir.clone();
    let runtime_producer: ballista_core::RuntimeProducer =
        Arc::new(move |_| Ok(Arc::new(RuntimeEnvBuilder::new().with_temp_file_path(temp.clone()).build()?)));
    // Tasks run the engine's mask functions (row and column policy) beside DataFusion's own.
    let mut functions = ballista_core::registry::BallistaFunctionRegistry::default();
    for function in args.node.mask_functions()? {
        functions.scalar_functions.insert(function.name().to_string(), function);
    }
    let executor = Arc::new(Executor::with_default_execution_engine(
        metadata,
        &work_dir,
        runtime_producer,
        config_producer,
        Arc::new(functions),
        Arc::new(LoggingMetricsCollector::default()),
        vcores,
    ));
    let flight = FlightServiceServer::new(BallistaFlightService::new(work_dir.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    if let Some(addr) = args.node.metrics_address {
        super::metrics::serve(addr, "executor", tls.clone()).await?;
    }
    let router = tonic::transport::Server::builder().add_service(flight);
    let stop = process::shutdown_signal();
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let flight_task = tokio::spawn(super::node::serve(router, listener, tls.clone(), async {
        let _ = stopped.await;
    }));
    tracing::info!(addr = %bound, %id, vcores, mtls = tls.is_some(), "executor serving results");

    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", args.scheduler_address);
    let mut endpoint =
        ballista_core::utils::create_grpc_client_endpoint(url.clone(), None).map_err(|e| format!("{url}: {e}"))?;
    if let Some(tls) = &tls {
        endpoint = endpoint.tls_config(tls.client()).map_err(|e| format!("{url}: {e}"))?;
    }
    let channel = connect(&endpoint, &url).await?;
    let scheduler =
        SchedulerGrpcClient::new(channel).max_encoding_message_size(MAX_MESSAGE).max_decoding_message_size(MAX_MESSAGE);
    let codec = super::barrier_codec::codec();
    let health = ballista_executor::health::ExecutorHealth::new();
    let poll = ballista_executor::execution_loop::poll_loop(scheduler, executor, codec, None, None, health);
    let outcome = tokio::select! {
        result = poll => result.map_err(|e| format!("polling the scheduler: {e}")),
        () = stop => Ok(()),
    };
    let _ = stopping.send(());
    let _ = flight_task.await;
    outcome
}

/// The scheduler may start after the executor: try for up to 60 s.
async fn connect(endpoint: &tonic::transport::Endpoint, url: &str) -> Result<tonic::transport::Channel, String> {
    let mut last = String::new();
    for _ in 0..120 {
        match endpoint.connect().await {
            Ok(channel) => {
                tracing::info!(scheduler = url, "connected to the scheduler");
                return Ok(channel);
            }
            Err(error) => {
                last = format!(
                    "{error}: {}",
                    std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Err(format!("cannot reach the scheduler at {url}: {last}"))
}

/// Removes the executor's own temporary work folder when the executor stops.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
