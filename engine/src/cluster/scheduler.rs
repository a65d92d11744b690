//! `engine scheduler`: Ballista's scheduler with pull-staged scheduling (executors poll it
//! for tasks, so it never dials an executor), served over the node mTLS. Its REST API is
//! not built (the crate's `rest-api` feature is off).

use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_server::SchedulerServer;
use clap::Args;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use super::node::{MAX_MESSAGE, NodeArgs};

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Seconds without a heartbeat before an executor counts as lost and its tasks run
    /// elsewhere (Ballista's own default, 180, would hold a query that long).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub executor_timeout_seconds: u64,
}

pub(super) async fn run(args: SchedulerArgs) -> Result<(), String> {
    let tls = args.node.tls()?;
    let listener = tokio::net::TcpListener::bind(args.node.node_bind_address)
        .await
        .map_err(|e| format!("--node-bind-address {}: {e}", args.node.node_bind_address))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    if args.executor_timeout_seconds == 0 {
        return Err("--executor-timeout-seconds must be at least 1".into());
    }
    // Plans arrive with the engine's mask functions in them: the scheduler decodes and plans
    // them with those registered.
    let functions = args.node.mask_functions()?;
    let session_builder: ballista_scheduler::scheduler_server::SessionBuilder = Arc::new(move |config| {
        let mut state = ballista_core::utils::default_session_builder(config)?;
        for function in &functions {
            datafusion::execution::FunctionRegistry::register_udf(&mut state, Arc::clone(function))?;
        }
        Ok(state)
    });
    let config = SchedulerConfig {
        external_host: args.node.advertised(bound),
        bind_host: bound.ip().to_string(),
        bind_port: bound.port(),
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        executor_timeout_seconds: args.executor_timeout_seconds,
        no_executors_grace_period_seconds: args.executor_timeout_seconds,
        override_create_grpc_client_endpoint: tls.as_ref().map(|tls| tls.endpoint_override()),
        use_tls: tls.is_some(),
        override_session_builder: Some(session_builder),
        ..SchedulerConfig::default()
    };
    config.validate().map_err(|e| format!("scheduler configuration: {e}"))?;
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(|e| format!("scheduler state: {e}"))?;
    let metrics = ballista_scheduler::metrics::default_metrics_collector().map_err(|e| e.to_string())?;
    let endpoint = config.scheduler_endpoint();
    let mut scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode> =
        SchedulerServer::new(endpoint, cluster, super::barrier_codec::codec(), Arc::new(config), metrics);
    scheduler.init().await.map_err(|e| format!("scheduler: {e}"))?;
    let service = SchedulerGrpcServer::new(scheduler)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    if let Some(addr) = args.node.metrics_address {
        super::metrics::serve(addr, "scheduler", tls.clone()).await?;
    }
    tracing::info!(addr = %bound, mtls = tls.is_some(), "scheduler listening");
    let router = tonic::transport::Server::builder().add_service(service);
    super::node::serve(router, listener, tls, process::shutdown_signal()).await
}
