//! `gateway check -c FILE`: everything `run` loads and checks, without binding a port.
//! `--online` also fetches what `run` fetches at start (each OIDC provider's discovery
//! document and key set), so a provider `run` would not trust (an issuer that differs from
//! the provider's by a trailing slash, an unreachable JWKS) fails here too.

use clap::Args;

use super::ConfigArgs;
use crate::server;

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Fetch each OIDC provider's discovery document and key set, as `run` does at start.
    #[arg(long)]
    pub online: bool,
}

pub(crate) fn run(args: CheckArgs) -> Result<(), String> {
    let prepared = server::prepare(args.config.load()?).map_err(|e| e.to_string())?;
    if args.online {
        let probes = super::runtime(None)?.block_on(prepared.auth.probe_providers());
        let mut failed = Vec::new();
        for (name, probe) in probes {
            match probe {
                Ok(keys) => println!("auth.oidc provider {name}: {keys} signing keys"),
                Err(error) => failed.push(format!("auth.oidc provider {name}: {error}")),
            }
        }
        if !failed.is_empty() {
            return Err(failed.join("\n"));
        }
    }
    println!("{}: OK", args.config.config.display());
    Ok(())
}
