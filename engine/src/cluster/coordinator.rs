//! The coordinator: the engine clients talk to, with a `cluster:` section in its config. Its
//! session plans as before (the caller folded into literals by the optimizer, writes refused)
//! and hands the optimized plan to Ballista's scheduler; results stream back from the
//! executors over the node mTLS.

use std::sync::Arc;

use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::barrier_codec::BarrierCodec;
use super::node_tls::{NodeTls, NodeTlsFiles};
use crate::config::ClusterConfig;

/// A context whose queries run on the cluster. Ballista's upgrade replaces the session's
/// function list, so the caller registers its functions on the context afterwards.
pub fn context(config: SessionConfig, cluster: &ClusterConfig) -> Result<SessionContext, String> {
    let tls = match &cluster.mtls {
        Some(files) => {
            let tls = NodeTls::load(NodeTlsFiles {
                ca: files.ca_certificate_file.clone(),
                certificate: files.certificate_file.clone(),
                key: files.key_file.clone(),
            })
            .map_err(|e| format!("cluster.mtls: {e}"))?;
            tokio::spawn(Arc::clone(&tls).watch());
            Some(tls)
        }
        None => {
            tracing::warn!(
                "INSECURE: cluster.dangerous_allow_insecure_connections: plans and results cross the network in \
                 plaintext, to and from nodes nobody authenticated. Development only."
            );
            None
        }
    };
    // Row filters cross as policy barriers (see `barrier_codec`).
    let mut config =
        config.upgrade_for_ballista().with_ballista_logical_extension_codec(Arc::new(BarrierCodec::default()));
    if let Some(tls) = &tls {
        config = config
            .with_ballista_use_tls(true)
            .with_ballista_override_create_grpc_client_endpoint(tls.endpoint_override());
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .build()
        .upgrade_for_ballista(format!("{scheme}://{}", cluster.scheduler_address))
        .map_err(|e| format!("cluster: {e}"))?;
    tracing::info!(scheduler = %cluster.scheduler_address, mtls = tls.is_some(), "queries run on the cluster");
    Ok(SessionContext::new_with_state(state))
}
