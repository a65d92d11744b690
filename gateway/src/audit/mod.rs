//! The audit stage's machinery: OCSF events for every request, sign-in and finding, to
//! several sinks at once, with no event lost.
//!
//! ```text
//! pipeline ─record→ bounded queue ─→ writer thread ─┬→ stdout
//!                                                   ├→ file (rotation, fsync policy)
//!                                                   └→ spool (disk) ─→ delivery task ─→ syslog / HTTP
//! ```
//!
//! Requests only build a record and queue it; formatting and I/O happen on the writer
//! thread, delivery to the network in a task per sink reading its spool. When the queue is
//! full the request waits for room (back-pressure, never a drop): an async wait on a slot
//! (a semaphore the writer refills), so only that request waits and the runtime's threads
//! go on serving everything else, health checks included. When a local target
//! (file, spool) cannot be written, `on_failure: deny` refuses requests with 503 until it
//! recovers; `allow` keeps serving and keeps the events in memory (bounded) until then.

pub(crate) mod deliver;
mod json;
pub(crate) mod ocsf;
pub(crate) mod plans;
pub(crate) mod record;
pub mod recorded;
pub(crate) mod refusals;
pub mod replay;
pub(crate) mod spool;
pub(crate) mod writer;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use identity::Principal;
use tokio::sync::{Semaphore, watch};

use crate::config::{AuditConfig, ConfigError, ConfigPath, OnAuditFailure, SessionBookkeeping, SinkConfig, SqlInAudit};
use process::unix_millis;
pub(crate) use record::{ApiRecord, Authorization, Decision, FindingRecord, LimitsRecord, Record, SignInRecord};
use writer::{Health, Target};

/// The handle stages use; cheap to share.
#[derive(Debug)]
pub(crate) struct Auditor {
    /// Unbounded itself; `slots` bounds it to `audit.queue_capacity` records.
    queue: Option<Sender<Record>>,
    /// A permit per free place in the queue, taken by a sender, given back by the writer.
    slots: Arc<Semaphore>,
    health: Arc<Health>,
    refusals: refusals::Refusals,
    deny: bool,
    sql: bool,
    signins: SignIns,
    findings: Findings,
    /// Bursts of requests without credentials: [`FLOOD_FACTOR`] × the finding threshold.
    floods: Findings,
    plans: plans::Plans,
    /// `audit.session_bookkeeping: counted`.
    counts_bookkeeping: bool,
}

/// A burst of requests without credentials takes this many times `audit.finding.threshold`
/// in the same window to raise a finding: a client that forgot its key is not an attack, a
/// scanner or a flood is.
pub(crate) const FLOOD_FACTOR: u32 = 10;

/// What starting the audit machinery gave: the handle, the writer thread and delivery tasks.
#[derive(Debug)]
pub(crate) struct Started {
    pub auditor: Arc<Auditor>,
    pub writer: Option<std::thread::JoinHandle<()>>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A network sink, checked, before its spool is opened.
enum Network {
    Http(deliver::HttpReceiver, usize, Duration),
    Syslog(deliver::SyslogReceiver),
}

impl Auditor {
    /// Checks the sinks (files openable, URLs valid, CA files readable) without starting
    /// anything: what `gateway check` runs.
    pub(crate) fn check(config: &AuditConfig) -> Result<(), ConfigError> {
        for (i, sink) in config.sinks.iter().enumerate() {
            network(sink, i)?;
            // What `run` would fail to open, `check` refuses too (it creates no file).
            if let SinkConfig::File { path, .. } = sink {
                let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
                if !folder.is_dir() {
                    return Err(ConfigError::new(
                        format!("audit.sinks[{i}].path"),
                        format!("{}: the folder {} does not exist", path.display(), folder.display()),
                    ));
                }
            }
        }
        if config.sinks.iter().any(SinkConfig::is_network) && config.spool_dir.is_none() {
            return Err(ConfigError::new("audit.spool_dir", "required with a syslog or http sink"));
        }
        if config.queue_capacity == 0 {
            return Err(ConfigError::new("audit.queue_capacity", "must be at least 1"));
        }
        Ok(())
    }

    /// Opens every sink and starts the writer thread and delivery tasks.
    pub(crate) fn start(config: &AuditConfig, stopped: &watch::Receiver<bool>) -> Result<Started, ConfigError> {
        Self::check(config)?;
        let health = Arc::new(Health::default());
        let mut targets = Vec::new();
        let mut tasks = Vec::new();
        for (i, sink) in config.sinks.iter().enumerate() {
            let field = format!("audit.sinks[{i}]");
            match sink {
                SinkConfig::Stdout => targets.push(Target::Stdout),
                SinkConfig::File { path, max_bytes, keep, fsync } => {
                    let file = writer::RotatingFile::open(path.to_path_buf(), *max_bytes, *keep, *fsync)
                        .map_err(|e| ConfigError::new(format!("{field}.path"), format!("{}: {e}", path.display())))?;
                    targets.push(Target::File(file));
                }
                SinkConfig::Syslog { address, .. } | SinkConfig::Http { url: address, .. } => {
                    let receiver = network(sink, i)?.ok_or_else(|| ConfigError::new(&field, "not a network sink"))?;
                    let kind = if matches!(sink, SinkConfig::Http { .. }) { "http" } else { "syslog" };
                    let name = format!("{kind}:{}", sink_label(address));
                    let spool_root =
                        config.spool_dir.as_ref().ok_or_else(|| ConfigError::new("audit.spool_dir", "required"))?;
                    let dir = spool_root.join(format!("{i}-{kind}"));
                    let (spool_writer, reader) = spool::open(&dir, config.spool_max_bytes)
                        .map_err(|e| ConfigError::new("audit.spool_dir", format!("{}: {e}", dir.display())))?;
                    let backlog = spool_writer.shared().backlog.load(Ordering::Relaxed);
                    if backlog > 0 {
                        tracing::info!(
                            sink = name,
                            bytes = backlog,
                            "audit spool has events from before; delivering them"
                        );
                    }
                    // Spools are synced about once a second: a crash loses at most that second's
                    // events still in the page cache, and delivery never waits on the disk.
                    let fsync = crate::config::FsyncPolicy::Interval;
                    targets.push(Target::Spool { name: name.clone(), writer: spool_writer, fsync });
                    let (receiver, batch, backoff) = match receiver {
                        Network::Http(http, batch, backoff) => (deliver::Receiver::Http(http), batch, backoff),
                        Network::Syslog(syslog) => (deliver::Receiver::Syslog(syslog), 200, Duration::from_secs(30)),
                    };
                    tasks.push(tokio::spawn(deliver::run(name, reader, receiver, batch, backoff, stopped.clone())));
                }
            }
        }
        if targets.is_empty() {
            tracing::warn!("audit is off: no audit.sinks configured");
            return Ok(Started { auditor: Arc::new(Self::off()), writer: None, tasks });
        }
        let (queue, receiver) = std::sync::mpsc::channel();
        let slots = Arc::new(Semaphore::new(config.queue_capacity.min(Semaphore::MAX_PERMITS)));
        let formatter = ocsf::Formatter::new(config.sql, env!("CARGO_PKG_VERSION"));
        let (writer_health, writer_slots) = (Arc::clone(&health), Arc::clone(&slots));
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer::run(receiver, formatter, targets, writer_health, writer_slots))
            .map_err(|e| ConfigError::new("audit", format!("cannot start the writer thread: {e}")))?;
        let auditor = Arc::new(Self {
            queue: Some(queue),
            slots,
            health,
            refusals: refusals::Refusals::new(Duration::from_secs(config.refusal_interval_secs)),
            deny: config.on_failure == OnAuditFailure::Deny,
            sql: config.sql != SqlInAudit::Off,
            signins: SignIns::new(Duration::from_secs(config.signin_interval_secs)),
            findings: Findings::new(config.finding.threshold, Duration::from_secs(config.finding.window_secs)),
            floods: Findings::new(
                config.finding.threshold.saturating_mul(FLOOD_FACTOR),
                Duration::from_secs(config.finding.window_secs),
            ),
            plans: plans::Plans::new(),
            counts_bookkeeping: config.session_bookkeeping == SessionBookkeeping::Counted,
        });
        tasks.push(tokio::spawn(flush_refusals(Arc::clone(&auditor), stopped.clone())));
        Ok(Started { auditor, writer: Some(writer), tasks })
    }

    /// No sinks: records are not even built.
    pub(crate) fn off() -> Self {
        Self {
            queue: None,
            slots: Arc::new(Semaphore::new(0)),
            health: Arc::new(Health::default()),
            refusals: refusals::Refusals::new(Duration::ZERO),
            deny: false,
            sql: false,
            signins: SignIns::new(Duration::ZERO),
            findings: Findings::new(0, Duration::ZERO),
            floods: Findings::new(0, Duration::ZERO),
            plans: plans::Plans::new(),
            counts_bookkeeping: false,
        }
    }

    /// Whether a successful session-bookkeeping call is counted rather than written
    /// (`audit.session_bookkeeping`).
    pub(crate) fn counts_bookkeeping(&self) -> bool {
        self.counts_bookkeeping
    }

    /// Flight planning calls and the calls that run what they planned (see [`plans`]).
    pub(crate) fn plans(&self) -> &plans::Plans {
        &self.plans
    }

    pub(crate) fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Whether records should carry the SQL text.
    pub(crate) fn wants_sql(&self) -> bool {
        self.sql
    }

    /// `on_failure: deny` and a target cannot be written: refuse requests.
    pub(crate) fn refusing(&self) -> bool {
        self.deny && self.health.failing.load(Ordering::Relaxed)
    }

    /// Queues a record; waits (asynchronously: only this request) for room if the queue is
    /// full. The writer never waits on requests, so this cannot deadlock.
    pub(crate) async fn submit(&self, record: Record) {
        if self.queue.is_none() {
            return;
        }
        match self.slots.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(_) => {
                crate::metrics::audit_queue_full();
                match self.slots.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return self.lost(),
                }
            }
        }
        self.enqueue(record);
    }

    /// Queues a record if there is room now; hands it back otherwise.
    pub(crate) fn try_submit(&self, record: Record) -> Result<(), Record> {
        if self.queue.is_none() {
            return Ok(());
        }
        match self.slots.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.enqueue(record);
                Ok(())
            }
            Err(_) => Err(record),
        }
    }

    /// From where nothing can wait (a response body dropped mid-stream): queued now if there
    /// is room, else by a task that waits for room.
    pub(crate) fn submit_detached(self: &Arc<Self>, record: Record) {
        if let Err(record) = self.try_submit(record) {
            let auditor = Arc::clone(self);
            tokio::spawn(async move { auditor.submit(record).await });
        }
    }

    /// Called with a slot already taken for `record`.
    fn enqueue(&self, record: Record) {
        let Some(queue) = &self.queue else { return };
        self.health.depth.fetch_add(1, Ordering::Relaxed);
        if queue.send(record).is_err() {
            self.lost();
        }
    }

    fn lost(&self) {
        self.health.depth.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::audit_dropped("queue", 1);
        tracing::error!("audit writer has stopped; an event was lost");
    }

    /// A successful authentication: recorded as a sign-in the first time this principal,
    /// method and address are seen in the sign-in interval.
    pub(crate) async fn signed_in(&self, record: impl FnOnce() -> SignInRecord, principal: &Principal, ip: IpAddr) {
        if self.enabled() && self.signins.first(principal, ip) {
            self.submit(Record::SignIn(Box::new(record()))).await;
        }
    }

    /// A connection refused below HTTP (see [`refusals`]): audited at once if it is the first
    /// from this source and reason in the interval, else counted for the interval's event.
    pub(crate) fn connection_refused(
        self: &Arc<Self>,
        listener: &'static str,
        peer: SocketAddr,
        reason: &'static str,
        error: impl Fn() -> String,
    ) {
        if !self.enabled() {
            return;
        }
        if let Some(record) = self.refusals.note(listener, peer, reason, error) {
            self.submit_detached(Record::Connection(record));
        }
    }

    /// A request came with no credentials at all (a probe, a scanner, a flood): `true` while
    /// it is among the first [`refusals::FULL_UNAUTHENTICATED`] from its source in the
    /// interval (audit it in full), else counted into the interval's aggregate event. A burst
    /// raises a finding (see [`FLOOD_FACTOR`]).
    pub(crate) async fn unauthenticated(
        &self,
        listener: &'static str,
        peer: SocketAddr,
        error: impl Fn() -> String,
    ) -> bool {
        if !self.enabled() {
            return false;
        }
        let reason = record::UNAUTHENTICATED;
        let full = self.refusals.count(listener, peer, reason, refusals::FULL_UNAUTHENTICATED, error).is_some();
        if let Some(count) = self.floods.refused(peer.ip()) {
            tracing::warn!(ip = %peer.ip(), count, "burst of requests without credentials from one address");
            let window_secs = self.floods.window.as_secs();
            self.submit(Record::Finding(FindingRecord { time_ms: unix_millis(), ip: peer.ip(), count, window_secs }))
                .await;
        }
        full
    }

    /// A 401 or 403 went to `ip`: a finding when that address crosses the threshold.
    pub(crate) async fn refused(&self, ip: IpAddr) {
        if !self.enabled() {
            return;
        }
        if let Some(count) = self.findings.refused(ip) {
            tracing::warn!(%ip, count, "burst of refused requests from one address");
            self.submit(Record::Finding(FindingRecord {
                time_ms: unix_millis(),
                ip,
                count,
                window_secs: self.findings.window.as_secs(),
            }))
            .await;
        }
    }
}

/// Writes each interval's aggregated connection refusals, and the last ones at shutdown.
async fn flush_refusals(auditor: Arc<Auditor>, mut stopped: watch::Receiver<bool>) {
    let mut done = false;
    while !done {
        tokio::select! {
            _ = tokio::time::sleep(auditor.refusals.interval()) => {}
            _ = stopped.changed() => done = true,
        }
        for record in auditor.refusals.flush() {
            auditor.submit(Record::Connection(record)).await;
        }
    }
}

/// Builds the network receiver for a sink (None for local sinks); reads CA files and
/// resolves the token.
fn network(sink: &SinkConfig, i: usize) -> Result<Option<Network>, ConfigError> {
    let field = format!("audit.sinks[{i}]");
    let roots = |path: &Option<ConfigPath>, name: &str| match path {
        Some(path) => crate::outbound::ca_file(path, &format!("{field}.{name}")),
        None => Ok(Vec::new()),
    };
    match sink {
        SinkConfig::Stdout => Ok(None),
        SinkConfig::File { keep, max_bytes, .. } => {
            if *max_bytes == 0 {
                return Err(ConfigError::new(format!("{field}.max_bytes"), "must be more than 0"));
            }
            if *keep > 1000 {
                return Err(ConfigError::new(format!("{field}.keep"), "at most 1000"));
            }
            Ok(None)
        }
        SinkConfig::Http { url, format, token, ca_file, batch_events, max_backoff_secs } => {
            let token = token.as_ref().map(|t| t.resolve(&format!("{field}.token"))).transpose()?;
            let receiver = deliver::HttpReceiver::new(url, *format, token.as_deref(), roots(ca_file, "ca_file")?)
                .map_err(|e| ConfigError::new(format!("{field}.{}", e.field()), e.to_string()))?;
            if *batch_events == 0 {
                return Err(ConfigError::new(format!("{field}.batch_events"), "must be at least 1"));
            }
            Ok(Some(Network::Http(receiver, *batch_events, Duration::from_secs((*max_backoff_secs).max(1)))))
        }
        SinkConfig::Syslog { address, tls_ca_file, tls_server_name, facility, app_name } => {
            let tls = match tls_ca_file {
                Some(_) => Some((roots(tls_ca_file, "tls_ca_file")?, tls_server_name.clone())),
                None if tls_server_name.is_some() => {
                    return Err(ConfigError::new(format!("{field}.tls_server_name"), "needs tls_ca_file"));
                }
                None => None,
            };
            let receiver = deliver::SyslogReceiver::new(address, tls, *facility, app_name)
                .map_err(|e| ConfigError::new(format!("{field}.{}", e.field()), e.to_string()))?;
            Ok(Some(Network::Syslog(receiver)))
        }
    }
}

/// A sink's label for metrics and logs: the host and port, never a URL's path or query
/// (which could carry a token).
fn sink_label(address: &str) -> String {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    host.rsplit('@').next().unwrap_or(host).to_string()
}

/// Which (principal, method, address) signed in recently.
#[derive(Debug)]
struct SignIns {
    interval: Duration,
    hasher: RandomState,
    seen: Mutex<HashMap<u64, Instant>>,
}

impl SignIns {
    fn new(interval: Duration) -> Self {
        Self { interval, hasher: RandomState::new(), seen: Mutex::new(HashMap::new()) }
    }

    fn first(&self, principal: &Principal, ip: IpAddr) -> bool {
        if self.interval.is_zero() {
            return true;
        }
        let key = self.hasher.hash_one((&principal.id, principal.kind, principal.auth_method, &principal.issuer, ip));
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() > 100_000 {
            seen.retain(|_, at| now.duration_since(*at) < self.interval);
        }
        match seen.get(&key) {
            Some(at) if now.duration_since(*at) < self.interval => false,
            _ => {
                seen.insert(key, now);
                true
            }
        }
    }
}

/// 401/403 counts per address in fixed windows.
#[derive(Debug)]
struct Findings {
    threshold: u32,
    window: Duration,
    counts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Findings {
    fn new(threshold: u32, window: Duration) -> Self {
        Self { threshold, window, counts: Mutex::new(HashMap::new()) }
    }

    /// The count, when this refusal makes the address reach the threshold (once per window).
    fn refused(&self, ip: IpAddr) -> Option<u32> {
        if self.threshold == 0 {
            return None;
        }
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.len() > 100_000 {
            counts.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let entry = counts.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        (entry.1 == self.threshold).then_some(entry.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_once_per_window_at_the_threshold() {
        let findings = Findings::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(findings.refused(ip), None);
        assert_eq!(findings.refused(other), None);
        assert_eq!(findings.refused(ip), None);
        assert_eq!(findings.refused(ip), Some(3));
        assert_eq!(findings.refused(ip), None, "one finding per window");
        assert_eq!(Findings::new(0, Duration::from_secs(1)).refused(ip), None);
    }

    #[test]
    fn sign_ins_are_deduplicated_per_interval() {
        let signins = SignIns::new(Duration::from_secs(60));
        let p = Principal::new(identity::PrincipalKind::Service, "svc", "svc", identity::AuthMethod::ApiKey);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(signins.first(&p, ip));
        assert!(!signins.first(&p, ip));
        assert!(signins.first(&p, "192.0.2.9".parse().unwrap()), "another address is another sign-in");
        assert!(SignIns::new(Duration::ZERO).first(&p, ip));
    }

    fn config(yaml: &str) -> AuditConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn unsafe_or_incomplete_sinks_are_refused_at_startup() {
        let check = |yaml: &str| Auditor::check(&config(yaml)).unwrap_err().to_string();
        // Events carry principals and SQL: never in the clear off the machine.
        let err = check("spool_dir: s\nsinks: [{type: http, url: 'http://10.1.2.3/events'}]");
        assert!(err.contains("audit.sinks[0].url") && err.contains("https"), "{err}");
        let err = check("sinks: [{type: http, url: 'https://siem.example/events'}]");
        assert!(err.contains("audit.spool_dir"), "{err}");
        let err = check("spool_dir: s\nsinks: [{type: syslog, address: 'siem:6514', tls_server_name: siem}]");
        assert!(err.contains("tls_server_name") && err.contains("tls_ca_file"), "{err}");
        let err = check("spool_dir: s\nsinks: [{type: syslog, address: 'siem:6514', facility: 24}]");
        assert!(err.contains("facility"), "{err}");
        let err = check("sinks: [{type: file, path: a.log, max_bytes: 0}]");
        assert!(err.contains("max_bytes"), "{err}");
        // `gateway check` refuses what `run` could not open.
        let err = check("sinks: [{type: file, path: /portcullis-surely-missing/audit.log}]");
        assert!(err.contains("sinks[0].path") && err.contains("does not exist"), "{err}");
        let err =
            check("spool_dir: s\nsinks: [{type: http, url: 'https://h/e', token: '${env:PORTCULLIS_SURELY_UNSET}'}]");
        assert!(err.contains("sinks[0].token") && err.contains("PORTCULLIS_SURELY_UNSET"), "{err}");
        assert!(Auditor::check(&config("spool_dir: s\nsinks: [{type: http, url: 'http://127.0.0.1:9/e'}]")).is_ok());
    }

    #[test]
    fn a_sink_token_never_shows_in_debug_output() {
        let audit = config("spool_dir: s\nsinks: [{type: http, url: 'https://h/e', token: TOPSECRET-HEC}]");
        let debug = format!("{audit:?}");
        assert!(!debug.contains("TOPSECRET") && debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn sink_labels_never_carry_paths_or_userinfo() {
        assert_eq!(sink_label("https://user:pw@hec.example:8088/services/collector?token=x"), "hec.example:8088");
        assert_eq!(sink_label("127.0.0.1:6514"), "127.0.0.1:6514");
    }
}
