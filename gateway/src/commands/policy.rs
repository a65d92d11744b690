//! `gateway policy validate | test | check | lint | replay`: for policy authors. The decisions come from the
//! same code the gateway runs per request ([`crate::authz::Authorizer`]), so a test that
//! passes here passes in production.
//!
//! Exit codes: 0 valid / all tests pass / allowed / nothing flips; 1 invalid, a test failed,
//! or an error; 3 denied (`check`) or a decision flipped (`replay`); 2 bad usage.
//!
//! With `--engine-config`, the datasets the engine's file defines are entities as they are
//! for the gateway (`authorization.engine_config`), and `validate` and `test` warn about a
//! policy, entity or test naming a dataset the engine does not serve.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use identity::Principal;

use super::exit::Exit;
use crate::authz::Authorizer;
use crate::authz::cases::{Case, ContextInput, decide, decide_data, principal, reasons, run_case, split_uid};
use crate::authz::sql::DatasetName;

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Parse the schema, policies and entities and validate the policies (strict mode).
    Validate(DirArgs),
    /// Run the request → expected-decision cases in DIR/tests/*.json.
    Test(TestArgs),
    /// Decide one request and say why.
    Check(CheckArgs),
    /// What an author wants to hear before review: unconstrained permits, policies that can
    /// never apply, permit/forbid pairs with the same scope, expired time bounds, admin
    /// grants without an @id. Exit 1 when there is any finding.
    Lint(LintArgs),
    /// Decide recorded calls (audit files) again against a candidate set and report every
    /// decision that would flip. Exit 3 when one does.
    Replay(super::replay::ReplayArgs),
}

#[derive(Debug, Args)]
pub(crate) struct LintArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Judge time bounds as of this RFC 3339 time instead of now.
    #[arg(long)]
    pub now: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DirArgs {
    #[arg(default_value = "policies")]
    pub dir: PathBuf,
    /// The engine's configuration file (see `authorization.engine_config`).
    #[arg(long)]
    pub engine_config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Also report which policies no test case exercised as determining, and which test
    /// files cover each policy.
    #[arg(long)]
    pub coverage: bool,
    /// With --coverage: fail (exit 1) when fewer than PERCENT of the policies determined a
    /// test decision.
    #[arg(long, value_name = "PERCENT", requires = "coverage", value_parser = percent)]
    pub min_coverage: Option<f64>,
}

fn percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(value) if (0.0..=100.0).contains(&value) => Ok(value),
        _ => Err(format!("{text:?} is not a percentage from 0 to 100")),
    }
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[arg(long, default_value = "policies")]
    pub dir: PathBuf,
    /// The engine's configuration file (see `authorization.engine_config`).
    #[arg(long)]
    pub engine_config: Option<PathBuf>,
    /// `User::"alice"`, `Service::"etl"` or `Workload::"spiffe://..."`.
    #[arg(long)]
    pub principal: String,
    /// The principal's groups (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
    /// `query`, `describe`, `write`, `admin` (endpoints) or `select`, `insert`, `update`,
    /// `delete`, `ddl` (datasets).
    #[arg(long, required_unless_present = "sql", conflicts_with = "sql", requires = "resource")]
    pub action: Option<String>,
    /// `Endpoint::"/v1/sql"` or `Dataset::"datafusion.demo.orders"`.
    #[arg(long, requires = "action")]
    pub resource: Option<String>,
    /// A statement, decided as `POST /v1/sql` would be: the endpoint action, then each
    /// dataset it touches.
    #[arg(long)]
    pub sql: Option<String>,
    /// Context as JSON: `source_ip`, `now` (RFC 3339), `mfa`, `client_cert`, `method`.
    #[arg(long)]
    pub context: Option<String>,
}

pub(crate) fn run(command: PolicyCommand) -> Result<Exit, String> {
    match command {
        PolicyCommand::Validate(args) => {
            let authz = load(&args.dir, args.engine_config.as_deref())?;
            let warnings = authz.warnings();
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            let note = if warnings.is_empty() { String::new() } else { format!(", {} warnings", warnings.len()) };
            println!("{}: valid ({} files{note})", args.dir.display(), authz.files().len());
            Ok(Exit::Success)
        }
        PolicyCommand::Test(args) => test(&args),
        PolicyCommand::Check(args) => check(&args),
        PolicyCommand::Lint(args) => lint(&args),
        PolicyCommand::Replay(args) => super::replay::run(&args),
    }
}

fn lint(args: &LintArgs) -> Result<Exit, String> {
    let authz = load(&args.dir.dir, args.dir.engine_config.as_deref())?;
    let now = match &args.now {
        Some(text) => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("--now {text:?}: {e}"))?
            .unix_timestamp(),
        None => time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let findings = authz.lint(now);
    for finding in &findings {
        println!("warning[{}]: policy {:?}: {}", finding.lint, finding.policy, finding.message);
    }
    let policies = authz.policy_ids().len();
    if findings.is_empty() {
        println!("{}: {policies} policies, no lint findings", args.dir.dir.display());
        return Ok(Exit::Success);
    }
    println!("{}: {policies} policies, {} lint findings", args.dir.dir.display(), findings.len());
    Ok(Exit::Failure)
}

fn load(dir: &Path, engine_config: Option<&Path>) -> Result<Authorizer, String> {
    Authorizer::from_dir(dir, engine_config).map_err(|e| format!("invalid policies:\n{e}"))
}

fn test(args: &TestArgs) -> Result<Exit, String> {
    let dir = args.dir.dir.as_path();
    let authz = load(dir, args.dir.engine_config.as_deref())?;
    // Policy id → the test files in which it determined a decision.
    let mut coverage: BTreeMap<String, BTreeSet<String>> =
        authz.policy_ids().into_iter().map(|id| (id, BTreeSet::new())).collect();
    let tests = dir.join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&tests)
        .map_err(|e| format!("{}: {e}", tests.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let cases: Vec<Case> = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        for case in cases {
            let unserved = (case.resource.kind == "Dataset")
                .then(|| DatasetName::parse_id(&case.resource.id))
                .flatten()
                .is_some_and(|d| authz.serves(&d) == Some(false));
            if unserved {
                eprintln!(
                    "warning: {}: {}: Dataset::{:?} is not served by the engine",
                    file.display(),
                    case.name,
                    case.resource.id
                );
            }
            let (outcome, determining) = run_case(&authz, &case);
            let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            for id in determining {
                coverage.entry(id).or_default().insert(file_name.clone());
            }
            match outcome {
                Ok(()) => passed += 1,
                Err(why) => {
                    failed += 1;
                    println!("FAIL {}: {}\n  {why}", file.display(), case.name);
                }
            }
        }
    }
    println!("policy tests: {passed} passed, {failed} failed ({} files)", files.len());
    if passed + failed == 0 {
        return Err(format!("{}: no test cases", tests.display()));
    }
    let covered_enough = !args.coverage || report_coverage(&coverage, args.min_coverage);
    Ok(if failed == 0 && covered_enough { Exit::Success } else { Exit::Failure })
}

/// Prints which policies determined a test decision, in which files, and which never did;
/// false when the share covered is below `min` (percent).
fn report_coverage(coverage: &BTreeMap<String, BTreeSet<String>>, min: Option<f64>) -> bool {
    let total = coverage.len();
    let covered = coverage.values().filter(|files| !files.is_empty()).count();
    let share = if total == 0 { 100.0 } else { covered as f64 * 100.0 / total as f64 };
    println!("policy coverage: {covered} of {total} policies determined a test decision ({share:.1}%)");
    let width = coverage.keys().map(String::len).max().unwrap_or(0);
    for (id, files) in coverage {
        if files.is_empty() {
            println!("  {id:width$}  NOT COVERED: no test case has it as a determining policy");
        } else {
            println!("  {id:width$}  {}", files.iter().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    match min {
        Some(min) if share < min => {
            println!("policy coverage {share:.1}% is below --min-coverage {min}%");
            false
        }
        _ => true,
    }
}

fn check(args: &CheckArgs) -> Result<Exit, String> {
    let authz = load(&args.dir, args.engine_config.as_deref())?;
    let (kind, id) = split_uid(&args.principal).ok_or("--principal: expected Type::\"id\"")?;
    let principal = principal(&kind, &id, &args.groups)?;
    let principal = Principal { tenant: args.tenant.clone(), email: args.email.clone(), ..principal };
    let context: ContextInput = match &args.context {
        Some(json) => serde_json::from_str(json).map_err(|e| format!("--context: {e}"))?,
        None => ContextInput::default(),
    };
    // (action, resource type, resource id) to decide, in order.
    let requests: Vec<(String, String, String)> = match (&args.sql, &args.action, &args.resource) {
        (Some(sql), _, _) => {
            let accesses = crate::authz::sql::analyze(sql, authz.defaults()).map_err(|e| format!("--sql: {e}"))?;
            let mut requests = Vec::new();
            for access in accesses {
                requests.push((access.endpoint.as_str().to_string(), "Endpoint".to_string(), "/v1/sql".to_string()));
                for (action, dataset) in access.datasets {
                    requests.push((action.as_str().to_string(), "Dataset".to_string(), dataset.to_string()));
                }
            }
            requests.dedup();
            requests
        }
        (None, Some(action), Some(resource)) => {
            let (kind, id) = split_uid(resource).ok_or("--resource: expected Type::\"id\"")?;
            vec![(action.clone(), kind, id)]
        }
        _ => return Err("give --action and --resource, or --sql".into()),
    };
    let mut allowed = true;
    for (action, kind, id) in &requests {
        let evaluation = decide(&authz, principal.clone(), action, kind, id, &context)?;
        allowed &= evaluation.allowed;
        let verdict = if evaluation.allowed { "ALLOW" } else { "DENY" };
        if args.sql.is_some() {
            let served = match DatasetName::parse_id(id).filter(|_| kind == "Dataset").and_then(|d| authz.serves(&d)) {
                Some(false) => " (not served by the engine)",
                _ => "",
            };
            println!("{verdict} {action} on {kind}::{id:?}{served}{}", reasons(&evaluation));
        } else {
            println!("{verdict}{}", reasons(&evaluation));
        }
    }
    if allowed && args.sql.is_some() {
        let scope: Vec<String> =
            requests.iter().filter(|(_, kind, _)| kind == "Dataset").map(|(_, _, id)| id.clone()).collect();
        for policy in decide_data(&authz, principal.clone(), &scope, &context)? {
            print_data_policy(&policy);
        }
    }
    Ok(if allowed { Exit::Success } else { Exit::Denied })
}

/// What the engine will enforce on one dataset: its row filter as SQL, each masked column
/// with its mask, each denied column.
fn print_data_policy(policy: &identity::DatasetPolicy) {
    let rows = policy.rows.as_ref().map_or_else(|| "every row".to_string(), identity::RowFilter::to_sql);
    println!("ROWS of {}: {rows}", policy.dataset);
    for mask in &policy.masks {
        let detail = match &mask.mask {
            identity::Mask::Constant { value } => format!(" {value:?}"),
            identity::Mask::Bucket { width } => format!(" of width {width}"),
            _ => String::new(),
        };
        println!("MASK {}.{}: {}{detail}", policy.dataset, mask.column, mask.mask.name());
    }
    for column in &policy.denied {
        println!("DENY column {}.{column}", policy.dataset);
    }
}
