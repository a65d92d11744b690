//! `gateway stamp keygen --dir DIR`: a new Ed25519 stamp key pair, `stamp-key.pem` (PKCS#8,
//! mode 0600, for the gateway's `stamp.key_file`) and `stamp-pub.pem` (SubjectPublicKeyInfo,
//! for the engine's `--stamp-public-key`), without openssl. Existing files are kept: a
//! rotation writes the new pair into a new folder.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::pki;

#[derive(Debug, Subcommand)]
pub(crate) enum StampCommand {
    /// Write a new key pair into DIR (refused if either file exists).
    Keygen(KeygenArgs),
}

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

pub(crate) fn run(command: StampCommand) -> Result<(), String> {
    let StampCommand::Keygen(args) = command;
    let private = args.dir.join("stamp-key.pem");
    let public = args.dir.join("stamp-pub.pem");
    for path in [&private, &public] {
        if path.exists() {
            return Err(format!("{} exists; keygen never overwrites a key (use another --dir)", path.display()));
        }
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let pair = identity::generate_stamp_keypair().map_err(|e| e.to_string())?;
    pki::write_private(&private, &pair.private_pkcs8_pem)?;
    std::fs::write(&public, &pair.public_spki_pem).map_err(|e| format!("{}: {e}", public.display()))?;
    println!(
        "{} (gateway stamp.key_file, mode 0600)\n{} (engine --stamp-public-key)",
        private.display(),
        public.display()
    );
    Ok(())
}
