//! `gateway tls init` and `gateway tls add`: the development PKI.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::pki::{self, LeafSpec};

#[derive(Debug, Subcommand)]
pub(crate) enum TlsCommand {
    /// Create a CA (ca.pem, ca-key.pem) in DIR, unless one exists.
    Init {
        #[arg(long, default_value = ".portcullis/tls")]
        dir: PathBuf,
    },
    /// Issue NAME.pem and NAME-key.pem signed by the CA in DIR.
    Add(AddArgs),
    /// Write DIR/crl.pem revoking the named leaves (list it in tls.crl_files).
    Revoke {
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(long, default_value = ".portcullis/tls")]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    pub name: String,
    #[arg(long, default_value = ".portcullis/tls")]
    pub dir: PathBuf,
    /// DNS name (repeatable).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// IP address (repeatable).
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
    /// SPIFFE ID URI SAN, e.g. spiffe://example.org/ns/etl/sa/loader.
    #[arg(long)]
    pub spiffe_id: Option<String>,
    /// Email SAN.
    #[arg(long)]
    pub email: Option<String>,
    /// A client (workload) certificate instead of a server certificate.
    #[arg(long, conflicts_with = "node")]
    pub client: bool,
    /// An engine cluster node's certificate (scheduler, executor, coordinator): server and
    /// client usage both. Issue it from the cluster's own CA (`--dir`), never the gateway's.
    #[arg(long)]
    pub node: bool,
    #[arg(long, default_value_t = 365)]
    pub days: i64,
}

pub(crate) fn run(command: TlsCommand) -> Result<(), String> {
    match command {
        TlsCommand::Init { dir } => {
            if pki::init_ca(&dir, "Portcullis development CA")? {
                println!("created {}", pki::ca_paths(&dir).0.display());
            } else {
                println!("kept the existing CA in {}", dir.display());
            }
            Ok(())
        }
        TlsCommand::Add(args) => {
            let spec = LeafSpec {
                name: args.name,
                hosts: args.hosts,
                ips: args.ips,
                spiffe_id: args.spiffe_id,
                email: args.email,
                client: args.client,
                node: args.node,
                valid_days: args.days,
            };
            let (cert, key) = pki::issue_leaf(&args.dir, &spec)?;
            println!("created {} and {}", cert.display(), key.display());
            Ok(())
        }
        TlsCommand::Revoke { names, dir } => {
            let crl = pki::revoke(&dir, &names)?;
            println!("wrote {}", crl.display());
            Ok(())
        }
    }
}
