//! `gateway apikey new`: generate an API key, print it once, and print the entry (holding
//! only its hash) to paste into `auth.api_keys.keys` or the keys file. `--format json`
//! prints one JSON object (`key`, and `entry` as the keys file holds it) for scripts that
//! put the key into a secret store and the entry into the config.
//!
//! `gateway apikey list --file F`: the keys a keys file holds (name, groups, tenant, expiry;
//! never a hash). `gateway apikey revoke NAME --file F`: removes a key from the file, which a
//! running gateway reloads (the key is refused from then on).

use clap::{Args, Subcommand};

use crate::auth::apikeys;

#[derive(Debug, Subcommand)]
pub(crate) enum ApiKeyCommand {
    /// Generate a key: the key goes to the service, the printed entry into the config.
    New(NewArgs),
    /// The keys a keys file holds: name, groups, tenant, expiry (never a hash).
    List(ListArgs),
    /// Remove a key from a keys file; a running gateway refuses it from its reload on.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The keys file (`auth.api_keys.file`).
    #[arg(long)]
    pub file: std::path::PathBuf,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The key's name (its principal id).
    pub name: String,
    /// The keys file (`auth.api_keys.file`).
    #[arg(long)]
    pub file: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The principal id the key authenticates as.
    #[arg(long)]
    pub name: String,
    /// Groups of the principal (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// The tenant the key belongs to (for tenant-isolation policies).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Refused from this date on: `2027-01-31` or an RFC 3339 date-time.
    #[arg(long)]
    pub expires: Option<String>,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

pub(crate) fn run(command: ApiKeyCommand) -> Result<(), String> {
    match command {
        ApiKeyCommand::New(args) => new(&args),
        ApiKeyCommand::List(args) => list(&args),
        ApiKeyCommand::Revoke(args) => revoke(&args),
    }
}

fn list(args: &ListArgs) -> Result<(), String> {
    let keys = apikeys::read_keys_file(&args.file).map_err(|e| e.to_string())?;
    let now = process::unix_secs();
    let expired = |expires: &Option<String>| {
        expires.as_deref().and_then(|e| apikeys::parse_expiry(e).ok()).is_some_and(|at| at <= now)
    };
    if args.format == Format::Json {
        let listed: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "name": k.name, "groups": k.groups, "tenant": k.tenant,
                    "expires": k.expires, "expired": expired(&k.expires),
                })
            })
            .collect();
        println!("{}", serde_json::Value::from(listed));
        return Ok(());
    }
    println!("{} keys in {}", keys.len(), args.file.display());
    for key in &keys {
        let tenant = key.tenant.as_deref().map(|t| format!(" tenant {t}")).unwrap_or_default();
        let expires = match &key.expires {
            Some(at) if expired(&key.expires) => format!(" expired {at}"),
            Some(at) => format!(" expires {at}"),
            None => String::new(),
        };
        println!("  {}  groups [{}]{tenant}{expires}", key.name, key.groups.join(", "));
    }
    Ok(())
}

fn revoke(args: &RevokeArgs) -> Result<(), String> {
    let mut keys = apikeys::read_keys_file(&args.file).map_err(|e| e.to_string())?;
    let before = keys.len();
    keys.retain(|k| k.name != args.name);
    if keys.len() == before {
        return Err(format!(
            "{}: no key named {:?} (see `gateway apikey list --file …`)",
            args.file.display(),
            args.name
        ));
    }
    apikeys::write_keys_file(&args.file, keys)?;
    println!(
        "revoked {:?} in {}: a gateway reading this file refuses it from its reload on",
        args.name,
        args.file.display()
    );
    Ok(())
}

fn new(args: &NewArgs) -> Result<(), String> {
    if args.name.trim().is_empty() || args.name.contains(['\n', '"']) {
        return Err("--name must be a non-empty single-line name without quotes".into());
    }
    if let Some(expires) = &args.expires {
        let at = apikeys::parse_expiry(expires).map_err(|e| format!("--expires: {e}"))?;
        let now = process::unix_secs();
        if at <= now {
            return Err(format!("--expires: {expires:?} is in the past: the key would never work"));
        }
    }
    let new = apikeys::generate()?;
    if args.format == Format::Json {
        let mut entry = serde_json::Map::new();
        entry.insert("name".into(), args.name.as_str().into());
        entry.insert("hash".into(), new.hash.as_str().into());
        entry.insert("groups".into(), args.groups.clone().into());
        if let Some(tenant) = &args.tenant {
            entry.insert("tenant".into(), tenant.as_str().into());
        }
        if let Some(expires) = &args.expires {
            entry.insert("expires".into(), expires.as_str().into());
        }
        println!("{}", serde_json::json!({"key": new.key, "entry": entry}));
        return Ok(());
    }
    let groups: Vec<String> = args.groups.iter().map(|g| format!("{g:?}")).collect();
    println!("API key (shown once; the gateway keeps only its hash):\n\n  {}\n", new.key);
    println!("Add to auth.api_keys.keys, or to the keys file under `keys:`:\n");
    println!("  - name: {:?}\n    hash: {}\n    groups: [{}]", args.name, new.hash, groups.join(", "));
    if let Some(tenant) = &args.tenant {
        println!("    tenant: {tenant:?}");
    }
    if let Some(expires) = &args.expires {
        println!("    expires: {expires:?}");
    }
    Ok(())
}
