//! Cluster mode on Apache Ballista: `engine scheduler` and `engine executor` run Ballista's
//! scheduler and executor (the library crates, with this main) with mTLS between every
//! node; an engine whose config has `cluster:` stays the coordinator clients talk to and
//! submits its queries to the scheduler ([`coordinator`]).
//!
//! What keeps this safe is unchanged: the gateway authenticates, authorizes and audits; the
//! coordinator verifies the stamp, refuses writes, and folds `current_principal()` and
//! friends into literals while it plans, so the plan that reaches the cluster carries no
//! caller, no stamp and no function of ours (the nodes do not have them: a plan that still
//! called one would fail there, closed).

mod barrier_codec;
pub mod coordinator;
mod executor;
mod metrics;
mod node;
mod node_tls;
mod scheduler;

use clap::Subcommand;

pub use node_tls::{NodeTls, NodeTlsFiles};

#[derive(Debug, Subcommand)]
pub enum Role {
    /// Run a Ballista scheduler: plans distributed jobs; executors pull their tasks from it.
    Scheduler(scheduler::SchedulerArgs),
    /// Run a Ballista executor: pulls tasks from the scheduler, serves its results (Flight).
    Executor(executor::ExecutorArgs),
}

/// Runs a cluster role until SIGTERM / Ctrl-C.
pub async fn run(role: Role) -> Result<(), String> {
    match role {
        Role::Scheduler(args) => scheduler::run(args).await,
        Role::Executor(args) => executor::run(args).await,
    }
}
