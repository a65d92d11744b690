//! `gateway policy replay`: decide recorded calls again against a candidate policy set
//! ([`crate::audit::replay`]) and print every call whose decision would flip.
//!
//! Exit codes: 0 nothing flips, 3 something flips, 1 a file could not be read (or, with
//! `--strict`, any line could not be replayed), 2 bad usage.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::exit::Exit;
use crate::audit::replay::{Direction, Report, Window, replay};
use crate::authz::Authorizer;

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Recorded audit files, or folders of them (rotated and gzip files included); `-` reads
    /// standard input (`kubectl logs deploy/portcullis -c gateway | … --events -`). Lines that
    /// are not events of ours (log lines, other programs' JSON) are skipped and counted.
    #[arg(long, required = true, num_args = 1..)]
    pub events: Vec<PathBuf>,
    /// The candidate policy folder.
    #[arg(long, default_value = "policies")]
    pub dir: PathBuf,
    /// The engine's configuration file (see `authorization.engine_config`).
    #[arg(long)]
    pub engine_config: Option<PathBuf>,
    /// Only calls that arrived at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only calls that arrived before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 1 when any line could not be replayed (torn, foreign, incomplete).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

pub(crate) fn run(args: &ReplayArgs) -> Result<Exit, String> {
    // One authorizer per thread: its caches (principals, contexts of one second) are then
    // its own, not shared by threads deciding calls of different seconds.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let authorizers = (0..threads)
        .map(|_| {
            Authorizer::from_dir(&args.dir, args.engine_config.as_deref())
                .map_err(|e| format!("invalid policies:\n{e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let window =
        Window { since: time_ms(args.since.as_deref(), "--since")?, until: time_ms(args.until.as_deref(), "--until")? };
    let files = files(&args.events)?;
    let report = replay(&authorizers, &files, window);
    match args.format {
        Format::Text => print_text(&report, &args.dir),
        Format::Json => println!("{}", json(&report)),
    }
    let failed = !report.unreadable.is_empty() || (args.strict && report.problems > 0);
    Ok(if failed {
        Exit::Failure
    } else if report.flipped() > 0 {
        Exit::Denied
    } else {
        Exit::Success
    })
}

/// Unix milliseconds of an RFC 3339 time.
fn time_ms(text: Option<&str>, flag: &str) -> Result<Option<i64>, String> {
    let Some(text) = text else { return Ok(None) };
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{flag} {text:?}: {e} (expected RFC 3339, like 2026-12-05T00:00:00Z)"))?;
    Ok(Some(i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)))
}

/// The files named, and the files in the folders named (sorted by name; not recursive).
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == crate::audit::replay::STDIN {
            files.push(path.clone());
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        inside.sort();
        if inside.is_empty() {
            return Err(format!("{}: no files in this folder", path.display()));
        }
        files.extend(inside);
    }
    Ok(files)
}

fn print_text(report: &Report, dir: &Path) {
    println!(
        "replayed {} calls from {} files against {}: {} would flip ({} events without a Cedar decision, {} outside the time window, {} other lines skipped)",
        report.replayed,
        report.files,
        dir.display(),
        report.flipped(),
        report.undecided,
        report.outside,
        report.skipped
    );
    for direction in [
        Direction::AllowToDeny,
        Direction::DenyToAllow,
        Direction::DataWidens,
        Direction::RowsChange,
        Direction::DataNarrows,
    ] {
        let groups: Vec<_> = report.flips.iter().filter(|(k, _)| k.direction == direction).collect();
        let total: u64 = groups.iter().map(|(_, g)| g.requests).sum();
        let title = match direction {
            Direction::AllowToDeny => "allow → deny",
            Direction::DenyToAllow => "deny → allow",
            // Allowed either way; only listed when some call's rows or columns change.
            _ if total == 0 => continue,
            Direction::DataWidens => "allowed, but columns shown that were masked or denied",
            Direction::RowsChange => "allowed, with another row filter",
            Direction::DataNarrows => "allowed, with more masked or denied",
        };
        println!("{title}: {total} calls");
        for (key, group) in groups {
            println!(
                "  {} {} on {}: {} calls (e.g. request {})",
                key.principal, key.action, key.resource, group.requests, group.example
            );
        }
    }
    if report.problems > 0 {
        println!("lines that could not be replayed: {}", report.problems);
        for problem in &report.named {
            println!("  {problem}");
        }
        if report.problems > report.named.len() as u64 {
            println!("  ... and {} more", report.problems - report.named.len() as u64);
        }
    }
    for file in &report.unreadable {
        println!("unreadable: {file}");
    }
}

fn json(report: &Report) -> serde_json::Value {
    let flips: Vec<serde_json::Value> = report
        .flips
        .iter()
        .map(|(key, group)| {
            serde_json::json!({
                "direction": key.direction.name(),
                "principal": key.principal,
                "action": key.action,
                "resource": key.resource,
                "requests": group.requests,
                "example_request_id": group.example,
            })
        })
        .collect();
    serde_json::json!({
        "files": report.files,
        "replayed": report.replayed,
        "flipped": report.flipped(),
        "undecided": report.undecided,
        "outside_window": report.outside,
        "skipped": report.skipped,
        "flips": flips,
        "problems": { "count": report.problems, "lines": report.named },
        "unreadable": report.unreadable,
    })
}
