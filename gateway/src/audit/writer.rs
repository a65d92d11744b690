//! The writer thread: takes records from the bounded queue in batches, formats each once,
//! and writes the batch to every local target: stdout, files, and the spools of network
//! sinks. A dedicated OS thread, because file writes and fsync block; request tasks never
//! wait for it unless the queue is full.
//!
//! A target that fails keeps the lines it could not write (bounded) and retries them first,
//! every batch and at least once a second; while any target fails, [`Health::failing`] is
//! set, which `audit.on_failure: deny` turns into 503s.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::ocsf::Formatter;
use super::record::Record;
use super::spool::SpoolWriter;
use crate::config::FsyncPolicy;

/// Lines kept in memory per failing target before the oldest are dropped (and counted).
const MAX_PENDING_BYTES: usize = 64 << 20;
/// Records formatted and written together.
const MAX_BATCH: usize = 4096;
/// After the first record of a batch, the writer waits this long for more: one wake-up and
/// one write per batch instead of per request (senders do not wake a writer that is not
/// blocked on the queue).
const LINGER: Duration = Duration::from_millis(10);

/// Shared between the writer and the pipeline.
#[derive(Debug, Default)]
pub(crate) struct Health {
    pub failing: AtomicBool,
    /// Records submitted and not yet written.
    pub depth: AtomicUsize,
}

/// Where a batch of lines goes.
#[derive(Debug)]
pub(crate) enum Target {
    Stdout,
    File(RotatingFile),
    Spool { name: String, writer: SpoolWriter, fsync: FsyncPolicy },
}

impl Target {
    pub(crate) fn name(&self) -> &str {
        match self {
            Target::Stdout => "stdout",
            Target::File(file) => &file.name,
            Target::Spool { name, .. } => name,
        }
    }

    fn write(&mut self, lines: &[u8], sync_due: bool) -> io::Result<()> {
        match self {
            Target::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(lines)?;
                out.flush()
            }
            Target::File(file) => file.write(lines, sync_due),
            Target::Spool { writer, fsync, .. } => {
                let sync = *fsync == FsyncPolicy::Batch || (*fsync == FsyncPolicy::Interval && sync_due);
                writer.append(lines, sync)
            }
        }
    }
}

/// A target and what it could not write yet.
struct Guarded {
    target: Target,
    pending: Vec<u8>,
    pending_events: usize,
    failing: bool,
}

impl Guarded {
    /// Writes what is pending, then `lines`; keeps whatever could not be written.
    fn offer(&mut self, lines: &[u8], events: usize, sync_due: bool) {
        if !self.pending.is_empty() {
            match self.target.write(&self.pending, sync_due) {
                Ok(()) => {
                    crate::metrics::audit_events(self.target.name(), "written", self.pending_events);
                    self.pending.clear();
                    self.pending_events = 0;
                }
                Err(error) => {
                    self.fail(&error);
                    self.keep(lines, events);
                    return;
                }
            }
        }
        if lines.is_empty() {
            self.recovered();
            return;
        }
        match self.target.write(lines, sync_due) {
            Ok(()) => {
                crate::metrics::audit_events(self.target.name(), "written", events);
                self.recovered();
            }
            Err(error) => {
                self.fail(&error);
                self.keep(lines, events);
            }
        }
    }

    fn keep(&mut self, lines: &[u8], events: usize) {
        if self.pending.len() + lines.len() > MAX_PENDING_BYTES {
            crate::metrics::audit_dropped(self.target.name(), events);
            tracing::error!(
                target_name = self.target.name(),
                events,
                "audit events dropped: target failing and its buffer is full"
            );
            return;
        }
        self.pending.extend_from_slice(lines);
        self.pending_events += events;
    }

    fn fail(&mut self, error: &io::Error) {
        if !self.failing {
            tracing::error!(target_name = self.target.name(), %error, "audit events cannot be written");
        }
        self.failing = true;
    }

    fn recovered(&mut self) {
        if self.failing && self.pending.is_empty() {
            tracing::info!(target_name = self.target.name(), "audit target recovered");
            self.failing = false;
        }
    }
}

/// Runs until every sender is gone, then writes what is left.
pub(crate) fn run(
    receiver: Receiver<Record>,
    mut formatter: Formatter,
    targets: Vec<Target>,
    health: Arc<Health>,
    slots: Arc<tokio::sync::Semaphore>,
) {
    let mut targets: Vec<Guarded> = targets
        .into_iter()
        .map(|target| Guarded { target, pending: Vec::new(), pending_events: 0, failing: false })
        .collect();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut lines = Vec::with_capacity(1 << 20);
    let mut last_sync = Instant::now();
    loop {
        let open = match receiver.recv_timeout(Duration::from_secs(1)) {
            Ok(record) => {
                batch.push(record);
                std::thread::sleep(LINGER);
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(record) => batch.push(record),
                        Err(_) => break,
                    }
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        };
        lines.clear();
        for record in &batch {
            formatter.write_line(record, &mut lines);
        }
        let sync_due = last_sync.elapsed() >= Duration::from_secs(1);
        if sync_due {
            last_sync = Instant::now();
        }
        for target in &mut targets {
            target.offer(&lines, batch.len(), sync_due);
        }
        health.depth.fetch_sub(batch.len(), Ordering::Relaxed);
        // Written (or kept by a failing target): their places in the queue are free again.
        slots.add_permits(batch.len());
        crate::metrics::audit_queue_depth(health.depth.load(Ordering::Relaxed));
        health.failing.store(targets.iter().any(|t| t.failing), Ordering::Relaxed);
        batch.clear();
        if lines.capacity() > 8 << 20 {
            lines = Vec::with_capacity(1 << 20);
        }
        if !open {
            return;
        }
    }
}

/// A file sink: appends, rotates by size (`PATH.1` newest ... `PATH.N`), and reopens the
/// path if it was moved or deleted under it (external rotation, a remounted volume).
#[derive(Debug)]
pub(crate) struct RotatingFile {
    name: String,
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    fsync: FsyncPolicy,
    file: Option<File>,
    size: u64,
    inode: (u64, u64),
}

impl RotatingFile {
    pub(crate) fn open(path: PathBuf, max_bytes: u64, keep: usize, fsync: FsyncPolicy) -> io::Result<Self> {
        let mut file = Self {
            name: format!("file:{}", path.display()),
            path,
            max_bytes,
            keep,
            fsync,
            file: None,
            size: 0,
            inode: (0, 0),
        };
        file.reopen()?;
        Ok(file)
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        // Audit events name principals, addresses and SQL: readable by the gateway's user only.
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path)?;
        let meta = file.metadata()?;
        (self.size, self.inode) = (meta.len(), (meta.dev(), meta.ino()));
        self.file = Some(file);
        Ok(())
    }

    fn write(&mut self, lines: &[u8], sync_due: bool) -> io::Result<()> {
        // Still the file at the path? (One stat per batch.)
        let same = fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode);
        if !same || self.file.is_none() {
            self.reopen()?;
        }
        if self.size > 0 && self.size + lines.len() as u64 > self.max_bytes {
            let discarded = self.rotate()?;
            // Rotation deletes the oldest file: never silently. Events under an hour old
            // going means the files are too small for the rate (or a flood): alerted on.
            crate::metrics::audit_events(&self.name, "rotated_away", discarded.events);
            if discarded.within_hour {
                crate::metrics::audit_events(&self.name, "rotated_away_within_hour", discarded.events);
                tracing::warn!(
                    sink = %self.name,
                    events = discarded.events,
                    "audit rotation deleted events less than an hour old: raise max_bytes or keep, or add a network sink"
                );
            }
        }
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("audit file not open"))?;
        file.write_all(lines)?;
        self.size += lines.len() as u64;
        if self.fsync == FsyncPolicy::Batch || (self.fsync == FsyncPolicy::Interval && sync_due) {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Shifts the files by one and starts a new one; says what the file that fell off held.
    fn rotate(&mut self) -> io::Result<Discarded> {
        if let Some(file) = self.file.take() {
            file.sync_data()?;
        }
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        let discarded = Discarded::of(&if self.keep == 0 { self.path.clone() } else { numbered(self.keep) });
        if self.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    fs::rename(&from, numbered(n + 1))?;
                }
            }
            fs::rename(&self.path, numbered(1))?;
        }
        self.reopen()?;
        Ok(discarded)
    }
}

/// The events in a file rotation is about to delete, and whether the newest of them (the
/// file's last write) is under an hour old.
struct Discarded {
    events: usize,
    within_hour: bool,
}

impl Discarded {
    fn of(path: &std::path::Path) -> Self {
        let Ok(file) = File::open(path) else { return Self { events: 0, within_hour: false } };
        let within_hour = file
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age < Duration::from_secs(3600)));
        let mut reader = io::BufReader::with_capacity(64 * 1024, file);
        let mut events = 0;
        while let Ok(chunk) = io::BufRead::fill_buf(&mut reader)
            && !chunk.is_empty()
        {
            events += chunk.iter().filter(|b| **b == b'\n').count();
            let n = chunk.len();
            io::BufRead::consume(&mut reader, n);
        }
        Self { events, within_hour }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_files_are_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let _sink = RotatingFile::open(path.clone(), 1 << 20, 2, FsyncPolicy::Never).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = RotatingFile::open(path.clone(), 100, 2, FsyncPolicy::Never).unwrap();
        for i in 0..10 {
            file.write(format!("{{\"n\":{i:040}}}\n").as_bytes(), false).unwrap();
        }
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
        // 48-byte lines, 100-byte files: two lines per file; newest in PATH, older in .1, .2.
        assert_eq!(read(&path).lines().count(), 2);
        assert!(read(&dir.path().join("audit.log.1")).contains(&format!("{:040}", 7)));
        assert!(read(&dir.path().join("audit.log.2")).contains(&format!("{:040}", 5)));
        assert!(!dir.path().join("audit.log.3").exists());
        // Lines 0 to 3 fell off the end: counted, and (written just now) under an hour old.
        let metrics = crate::metrics::render(0);
        let sink = format!("file:{}", path.display());
        for outcome in ["rotated_away", "rotated_away_within_hour"] {
            let line = format!("gateway_audit_events_total{{sink=\"{sink}\",outcome=\"{outcome}\"}} 4");
            assert!(metrics.contains(&line), "{line} not in\n{metrics}");
        }
    }

    #[test]
    fn a_deleted_file_is_recreated_and_a_missing_folder_fails() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("audit.log");
        let mut file = RotatingFile::open(path.clone(), 1 << 20, 1, FsyncPolicy::Batch).unwrap();
        file.write(b"{}\n", false).unwrap();
        std::fs::remove_file(&path).unwrap();
        file.write(b"{\"after\":1}\n", false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"after\":1}\n");
        std::fs::remove_dir_all(&sub).unwrap();
        assert!(file.write(b"{}\n", false).is_err());
    }
}
