//! Deciding recorded calls again: every API Activity event in the files the file sink
//! writes (rotated and gzip-compressed copies alike, told apart by their magic bytes) is read
//! back ([`super::recorded`]) and its Cedar requests asked of a candidate policy set; the
//! calls whose decision would flip are grouped by direction, principal and the refused
//! action and resource, with an example request id each. A line that cannot be replayed
//! (torn, foreign, missing a field) is counted and named by file and line, never skipped in
//! silence. `gateway policy replay` prints what this finds.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::recorded::{self, Line, Recorded, RecordedData};
use crate::authz::data_change::{Decided, compare};
use crate::authz::facts::principal_type;
use crate::authz::{Ask, Authorizer};

/// Lines decided together, spread over the threads.
const BATCH: usize = 8192;
/// Problem lines named in the report (all are counted).
const NAMED_PROBLEMS: usize = 50;
/// A longer line is no event the gateway writes (its SQL is bounded by the body limit): it
/// is counted as a problem and skipped, never held in memory whole.
const MAX_LINE: u64 = 16 * 1024 * 1024;

/// One line of a file: its bytes, or why it was not read.
type ReadLine = Result<Vec<u8>, String>;

/// Which way a decision flips: allow and deny, or, for a call both allow, its rows and
/// columns (see `authz::data_change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Direction {
    AllowToDeny,
    DenyToAllow,
    /// The candidate shows a column the record masked or denied, or masks it less privately.
    DataWidens,
    /// The candidate filters the rows otherwise.
    RowsChange,
    /// The candidate masks or denies more.
    DataNarrows,
}

impl Direction {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::AllowToDeny => "allow_to_deny",
            Self::DenyToAllow => "deny_to_allow",
            Self::DataWidens => "columns_widen",
            Self::RowsChange => "rows_change",
            Self::DataNarrows => "columns_narrow",
        }
    }
}

/// Flipped calls of one kind: who, and what the refusing side refused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FlipKey {
    pub(crate) direction: Direction,
    pub(crate) principal: String,
    pub(crate) action: &'static str,
    pub(crate) resource: String,
}

#[derive(Debug)]
pub(crate) struct FlipGroup {
    pub(crate) requests: u64,
    pub(crate) example: String,
}

/// What one line came to.
enum Outcome {
    Agreed,
    Flipped(FlipKey, String),
    Undecided,
    OutsideWindow,
    /// Not an event of ours: a log line, another program's JSON.
    Skipped,
    Problem(String),
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct Report {
    pub(crate) files: usize,
    /// Calls decided again.
    pub replayed: u64,
    /// Events Cedar was not asked about (sign-ins, refusals before authorization, ...).
    pub undecided: u64,
    pub(crate) outside: u64,
    /// Lines that are not events of ours (log lines, other programs' JSON), skipped.
    pub(crate) skipped: u64,
    pub(crate) flips: BTreeMap<FlipKey, FlipGroup>,
    /// Lines that could not be replayed.
    pub problems: u64,
    pub(crate) named: Vec<String>,
    pub(crate) unreadable: Vec<String>,
}

/// Only calls that arrived in `[since, until)` (Unix milliseconds; either end open).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Report {
    fn add(&mut self, file: &Path, line: usize, outcome: Outcome) {
        match outcome {
            Outcome::Agreed => self.replayed += 1,
            Outcome::Flipped(key, request_id) => {
                self.replayed += 1;
                self.flips.entry(key).or_insert(FlipGroup { requests: 0, example: request_id }).requests += 1;
            }
            Outcome::Undecided => self.undecided += 1,
            Outcome::OutsideWindow => self.outside += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Problem(why) => {
                self.problems += 1;
                if self.named.len() < NAMED_PROBLEMS {
                    self.named.push(format!("{}:{line}: {why}", file.display()));
                }
            }
        }
    }

    /// Calls whose decision flips.
    pub fn flipped(&self) -> u64 {
        self.flips.values().map(|g| g.requests).sum()
    }
}

/// Decides every call recorded in `files` again, on one thread per authorizer (each loaded
/// from the same candidate set).
pub fn replay(authorizers: &[Authorizer], files: &[PathBuf], window: Window) -> Report {
    let mut report = Report { files: files.len(), ..Report::default() };
    for file in files {
        if let Err(error) = replay_file(authorizers, file, window, &mut report) {
            report.unreadable.push(format!("{}: {error}", file.display()));
        }
    }
    report
}

/// What `--events -` reads: standard input (`kubectl logs … | gateway policy replay --events -`).
pub const STDIN: &str = "-";

/// A reader of the file's lines (standard input for [`STDIN`]), gunzipped when it starts
/// with gzip's magic bytes.
fn open(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    let mut file: BufReader<Box<dyn Read>> = if path == Path::new(STDIN) {
        BufReader::new(Box::new(std::io::stdin()))
    } else {
        BufReader::new(Box::new(File::open(path)?))
    };
    let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip { Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(file))) } else { Box::new(file) })
}

fn replay_file(authorizers: &[Authorizer], path: &Path, window: Window, report: &mut Report) -> std::io::Result<()> {
    let mut reader = open(path)?;
    let mut number = 0usize;
    let mut batch: Vec<(usize, ReadLine)> = Vec::with_capacity(BATCH);
    loop {
        let mut line = Vec::new();
        let read = (&mut reader).take(MAX_LINE + 1).read_until(b'\n', &mut line)?;
        if read > 0 {
            number += 1;
            if line.len() as u64 > MAX_LINE {
                // Skip to the end of this line, a bounded piece at a time.
                while !line.ends_with(b"\n") {
                    line.clear();
                    if (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line)? == 0 {
                        break;
                    }
                }
                batch.push((number, Err(format!("a line over {} MiB: not an audit event", MAX_LINE >> 20))));
            } else if line.iter().any(|b| !b.is_ascii_whitespace()) {
                batch.push((number, Ok(line)));
            }
        }
        if batch.len() == BATCH || (read == 0 && !batch.is_empty()) {
            for (line, outcome) in decide_batch(authorizers, &batch, window) {
                report.add(path, line, outcome);
            }
            batch.clear();
        }
        if read == 0 {
            return Ok(());
        }
    }
}

/// Decides a batch of lines on a thread per authorizer, each a contiguous part; the outcomes
/// come back in line order, so the example of each flip is the first one in the files.
fn decide_batch(authorizers: &[Authorizer], batch: &[(usize, ReadLine)], window: Window) -> Vec<(usize, Outcome)> {
    let part = batch.len().div_ceil(authorizers.len().max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .chunks(part)
            .zip(authorizers)
            .map(|(chunk, authz)| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(number, line)| {
                            let outcome = match line {
                                Ok(line) => decide_line(authz, line, window),
                                Err(why) => Outcome::Problem(why.clone()),
                            };
                            (*number, outcome)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                // A thread that panicked lost its part: say so rather than drop it.
                handle.join().unwrap_or_else(|_| vec![(0, Outcome::Problem("replay failed on this batch".into()))])
            })
            .collect()
    })
}

fn decide_line(authz: &Authorizer, line: &[u8], Window { since, until }: Window) -> Outcome {
    // Events are JSON objects: anything else in the stream is a log line.
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Outcome::Skipped;
    }
    let recorded = match recorded::parse(line) {
        Ok(Line::Decided(recorded)) => recorded,
        Ok(Line::Undecided) => return Outcome::Undecided,
        Ok(Line::Foreign) => return Outcome::Skipped,
        Err(why) => return Outcome::Problem(why),
    };
    if since.is_some_and(|t| recorded.time_ms < t) || until.is_some_and(|t| recorded.time_ms >= t) {
        return Outcome::OutsideWindow;
    }
    let answer = authz.decide_asks(&recorded.facts(), &recorded.asks);
    let was_allowed = recorded.refused.is_none();
    if answer.allowed && was_allowed {
        return rows_and_columns(authz, &recorded);
    }
    if answer.allowed == was_allowed {
        return Outcome::Agreed;
    }
    // The refusing side's refused ask: the candidate's for allow → deny, the record's else.
    let (direction, refused) =
        if was_allowed { (Direction::AllowToDeny, answer.refused) } else { (Direction::DenyToAllow, recorded.refused) };
    let ask = refused.and_then(|i| recorded.asks.get(i));
    let key = FlipKey {
        direction,
        principal: principal_uid(&recorded),
        action: ask.map_or("any action", |a| a.action),
        resource: ask.map_or_else(|| "(the principal)".to_string(), |a| resource_uid(a, &recorded.path)),
    };
    Outcome::Flipped(key, recorded.request_id.clone())
}

/// A call both sets allow: whether the candidate decides its rows and columns otherwise than
/// the record says they were (events without `data_policies` have nothing to compare).
fn rows_and_columns(authz: &Authorizer, recorded: &Recorded) -> Outcome {
    let Some(data) = &recorded.data else { return Outcome::Agreed };
    let mut scope: Vec<String> =
        recorded.asks.iter().filter_map(|a| a.dataset.as_ref().map(ToString::to_string)).collect();
    scope.sort();
    scope.dedup();
    let ours: Vec<Decided> = data.iter().map(RecordedData::decided).collect();
    let theirs: Vec<Decided> = authz.decide_data(&recorded.facts(), &scope).iter().map(Decided::of).collect();
    let Some((change, dataset)) = compare(&ours, &theirs) else { return Outcome::Agreed };
    let direction = match change {
        "widens" => Direction::DataWidens,
        "rows" => Direction::RowsChange,
        _ => Direction::DataNarrows,
    };
    let key = FlipKey {
        direction,
        principal: principal_uid(recorded),
        action: "select",
        resource: format!("Dataset::{dataset:?}"),
    };
    Outcome::Flipped(key, recorded.request_id.clone())
}

/// `User::"alice"`, as Cedar names the principal.
fn principal_uid(recorded: &Recorded) -> String {
    format!("{}::{:?}", principal_type(recorded.principal.kind), recorded.principal.id)
}

fn resource_uid(ask: &Ask, path: &str) -> String {
    match &ask.dataset {
        Some(dataset) => format!("Dataset::{:?}", dataset.to_string()),
        None => format!("Endpoint::{path:?}"),
    }
}
