//! `gateway check -c FILE`: everything `run` loads and checks, without binding a port.

use crate::cli::ConfigArgs;
use crate::server;

pub fn run(args: ConfigArgs) -> Result<(), String> {
    server::prepare(args.load()?).map_err(|e| e.to_string())?;
    println!("{}: OK", args.config.display());
    Ok(())
}
