//! `gateway run -c FILE`: serve until Ctrl-C / SIGTERM.

use process::shutdown_signal;

use super::{ConfigArgs, runtime};
use crate::server;

pub(crate) fn run(args: ConfigArgs) -> Result<(), String> {
    let prepared = server::prepare(args.load()?).map_err(|e| e.to_string())?;
    runtime(prepared.config.runtime.worker_threads)?.block_on(async {
        let stop = shutdown_signal();
        let running = server::start(prepared).await.map_err(|e| e.to_string())?;
        stop.await;
        tracing::info!("shutting down");
        running.shutdown_unless(shutdown_signal()).await;
        Ok(())
    })
}
