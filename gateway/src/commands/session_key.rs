//! `gateway session-key new`: 32 random bytes in base64, the key that seals browser session
//! cookies (`auth.browser_sessions.keys`). Printed once, for a secret store; the config
//! names it by reference (`${env:...}` / `${file:...}`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum SessionKeyCommand {
    /// Print a new key (put it first in `keys` to rotate; keep the old one until
    /// `absolute_secs` has passed).
    New,
}

pub(crate) fn run(command: SessionKeyCommand) -> Result<(), String> {
    let SessionKeyCommand::New = command;
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| "no randomness from the operating system".to_string())?;
    println!("{}", STANDARD.encode(key));
    Ok(())
}
