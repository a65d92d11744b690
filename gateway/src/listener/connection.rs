//! One client connection's deadlines, driven beside hyper's connection future:
//!
//! - the head deadline: from accept to the end of the first request's head, and for each
//!   later HTTP/1.1 request from its first byte (`timeouts.client_header_secs`);
//! - the idle deadline: no request in flight for `timeouts.idle_secs` (one second while the
//!   listeners are under pressure, see [`super::limits`]) → a graceful close (HTTP/2
//!   GOAWAY; HTTP/1.1 simply closes, nothing is in flight);
//! - the write deadline: a response frame handed to hyper that the client has not taken for
//!   `timeouts.client_write_secs` (a full socket for HTTP/1.1, an exhausted flow-control
//!   window for h2) → the connection is closed;
//! - the control-frame budget (h2, [`super::frames`]): over it → GOAWAY, then closed.
//!
//! Requests are tracked by a clock each (opened when hyper calls the service, that is when
//! the head is complete; dropped with the response body), the bytes by [`Guarded`], the
//! stream the connection is served over.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::frames::{ControlBudget, Outgoing};
use super::limits::{ConnectionLimits, PRESSURED_IDLE};
use super::refusal::Refusal;
use crate::body::{Body, BoxError};

/// A graceful close (idle, or a flood's GOAWAY) gets this long before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How often a connection with requests in flight checks their write deadlines.
const BUSY_TICK: Duration = Duration::from_millis(500);

/// The deadlines, from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub header: Duration,
    pub idle: Duration,
    pub write: Duration,
}

/// What the connection's requests and bytes tell the driver. Times are milliseconds since
/// accept, plus one (0 means "not set").
#[derive(Debug)]
pub(super) struct Activity {
    accepted: Instant,
    /// Requests whose head has been read and whose response has not ended.
    live: AtomicUsize,
    requests: AtomicU64,
    /// When the connection last went idle.
    idle_since: AtomicU64,
    /// HTTP/1.1: the first byte of the next head, read while nothing was in flight.
    head_started: AtomicU64,
    clocks: Mutex<Vec<Weak<RequestClock>>>,
    /// The control-frame budget is spent (set by [`Guarded`], acted on by the driver).
    flooded: AtomicBool,
    wake: Notify,
}

impl Activity {
    pub(super) fn new(accepted: Instant) -> Arc<Self> {
        Arc::new(Self {
            accepted,
            live: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            clocks: Mutex::new(Vec::new()),
            flooded: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.accepted.elapsed().as_millis() as u64 + 1
    }

    fn at(&self, ms: u64) -> Instant {
        self.accepted + Duration::from_millis(ms.saturating_sub(1))
    }

    /// A request's head is complete: its clock runs until its response body is dropped.
    pub(super) fn open(self: &Arc<Self>) -> Arc<RequestClock> {
        self.live.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        let clock = Arc::new(RequestClock { activity: Arc::clone(self), handed: AtomicU64::new(0) });
        let mut clocks = self.clocks.lock().unwrap_or_else(PoisonError::into_inner);
        if clocks.len() >= 64 {
            clocks.retain(|clock| clock.strong_count() > 0);
        }
        clocks.push(Arc::downgrade(&clock));
        clock
    }

    /// The oldest response frame waiting for the client, if any.
    fn oldest_handed(&self) -> Option<u64> {
        let mut clocks = self.clocks.lock().unwrap_or_else(PoisonError::into_inner);
        clocks.retain(|clock| clock.strong_count() > 0);
        clocks.iter().filter_map(Weak::upgrade).map(|c| c.handed.load(Ordering::Relaxed)).filter(|&h| h > 0).min()
    }
}

/// One request in flight.
#[derive(Debug)]
pub(super) struct RequestClock {
    activity: Arc<Activity>,
    /// When the response body last yielded a frame that has not been taken since.
    handed: AtomicU64,
}

impl Drop for RequestClock {
    fn drop(&mut self) {
        self.activity.idle_since.store(self.activity.now_ms(), Ordering::Relaxed);
        self.activity.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The response body, telling its clock when a frame waits for the client.
pub(super) struct Tracked {
    inner: Body,
    clock: Arc<RequestClock>,
}

impl Tracked {
    pub(super) fn new(inner: Body, clock: Arc<RequestClock>) -> Self {
        Self { inner, clock }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Polled again: the client took the last frame (hyper polls only when it can send).
        self.clock.handed.store(0, Ordering::Relaxed);
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            self.clock.handed.store(self.clock.activity.now_ms(), Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The stream a connection is served over: notes when an HTTP/1.1 head starts and feeds the
/// h2 control-frame budget. Once the budget is spent, reads stop (the GOAWAY still goes out,
/// with ENHANCE_YOUR_CALM as its error code).
pub(super) struct Guarded<T> {
    inner: T,
    activity: Arc<Activity>,
    /// HTTP/1.1: bytes read while nothing is in flight start a head.
    h1: bool,
    budget: Option<ControlBudget>,
    /// h2: the frames written, to give a flood's GOAWAY its error code.
    outgoing: Option<Outgoing>,
}

impl<T> Guarded<T> {
    pub(super) fn new(inner: T, activity: Arc<Activity>, h1: bool, control_frames_per_sec: u32) -> Self {
        let budget = (!h1).then(|| ControlBudget::new(control_frames_per_sec));
        let outgoing = (!h1).then(Outgoing::default);
        Self { inner, activity, h1, budget, outgoing }
    }

    /// Notes the first `n` bytes of `bufs` as written.
    fn wrote<'a>(&mut self, bufs: impl Iterator<Item = &'a [u8]>, n: usize) {
        if let Some(budget) = self.budget.as_mut() {
            budget.wrote(n, self.activity.now_ms());
        }
        if let Some(outgoing) = self.outgoing.as_mut() {
            let mut left = n;
            for buf in bufs {
                let take = left.min(buf.len());
                outgoing.advance(buf.get(..take).unwrap_or_default());
                left -= take;
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.activity.flooded.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = buf.filled().get(before..).unwrap_or_default();
        if read.is_empty() {
            return polled;
        }
        let activity = &this.activity;
        if this.h1 && activity.live.load(Ordering::Acquire) == 0 && activity.head_started.load(Ordering::Relaxed) == 0 {
            activity.head_started.store(activity.now_ms(), Ordering::Relaxed);
        }
        if let Some(budget) = this.budget.as_mut()
            && !budget.read(read, activity.now_ms())
        {
            activity.flooded.store(true, Ordering::Relaxed);
            activity.wake.notify_one();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let flooded = this.activity.flooded.load(Ordering::Relaxed);
        let calmed = this.outgoing.as_ref().filter(|_| flooded).and_then(|outgoing| outgoing.calm(buf));
        let polled = Pin::new(&mut this.inner).poll_write(cx, calmed.as_deref().unwrap_or(buf));
        if let Poll::Ready(Ok(n)) = &polled {
            this.wrote(std::iter::once(buf), *n);
        }
        polled
    }

    /// hyper writes head and body (and h2 frames) as one vectored write when it can.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.outgoing.is_some() && self.activity.flooded.load(Ordering::Relaxed) {
            // A GOAWAY's code may need setting: one buffer at a time through `poll_write`.
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &**b);
            return self.poll_write(cx, first);
        }
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            this.wrote(bufs.iter().map(|b| &**b), *n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the driver decides at a deadline.
enum Verdict {
    /// Nothing due: look again then.
    Wait(Instant),
    Refuse(Refusal),
    Idle,
    /// Idle past the shorter deadline of a listener under pressure.
    Shed,
}

fn verdict(activity: &Activity, deadlines: Deadlines, pressured: bool, now: Instant) -> Verdict {
    if activity.live.load(Ordering::Acquire) == 0 {
        let idle = if pressured { deadlines.idle.min(PRESSURED_IDLE) } else { deadlines.idle };
        let (from, limit, refusal) = if activity.requests.load(Ordering::Relaxed) == 0 {
            (activity.accepted, deadlines.header, Some(Refusal::HeaderTimeout))
        } else {
            match activity.head_started.load(Ordering::Relaxed) {
                0 => (activity.at(activity.idle_since.load(Ordering::Relaxed)), idle, None),
                started => (activity.at(started), deadlines.header, Some(Refusal::HeaderTimeout)),
            }
        };
        let due = from + limit;
        return match (due <= now, refusal) {
            (false, _) => Verdict::Wait(due),
            (true, Some(refusal)) => Verdict::Refuse(refusal),
            (true, None) if limit < deadlines.idle => Verdict::Shed,
            (true, None) => Verdict::Idle,
        };
    }
    match activity.oldest_handed() {
        Some(handed) if activity.at(handed) + deadlines.write <= now => Verdict::Refuse(Refusal::WriteTimeout),
        _ => Verdict::Wait(now + BUSY_TICK.min(deadlines.write)),
    }
}

/// Serves `conn` until it ends or a deadline closes it; the refusal, if it was one. On
/// shutdown (`stopped`) the connection is closed gracefully and left to finish.
pub(super) async fn drive<C>(
    conn: C,
    activity: Arc<Activity>,
    deadlines: Deadlines,
    limits: &ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
) -> Option<Refusal>
where
    C: GracefulConnection<Error = hyper::Error>,
{
    let mut conn = std::pin::pin!(conn);
    let mut closing: Option<Instant> = None;
    let mut stopping = false;
    let mut refusal = None;
    loop {
        let now = Instant::now();
        let next = match closing {
            Some(at) => Verdict::Wait(at),
            None if stopping => Verdict::Wait(now + Duration::from_secs(3600)),
            None => verdict(&activity, deadlines, limits.under_pressure(), now),
        };
        let next = match next {
            Verdict::Wait(at) => at,
            Verdict::Refuse(why) => return Some(why),
            Verdict::Idle => {
                conn.as_mut().graceful_shutdown();
                closing = Some(now + CLOSE_GRACE);
                continue;
            }
            Verdict::Shed => {
                refusal = Some(Refusal::IdleUnderPressure);
                conn.as_mut().graceful_shutdown();
                closing = Some(now + CLOSE_GRACE);
                continue;
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                return refusal.or_else(|| result.err().and_then(|error| classify(&error)));
            }
            () = activity.wake.notified(), if closing.is_none() && !stopping => {
                if activity.flooded.load(Ordering::Relaxed) {
                    refusal = Some(Refusal::ControlFrameFlood);
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_GRACE);
                }
            }
            // Under pressure an idle connection's deadline is nearer: look again.
            () = limits.pressure(), if closing.is_none() && !stopping => {}
            _ = stopped.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(next) => {
                if closing.is_some_and(|at| at <= Instant::now()) {
                    return refusal;
                }
            }
        }
    }
}

/// The refusal a connection error stands for; `None` for a client that just went away (or
/// an h2 peer that stopped answering keep-alive PINGs: dead, not hostile). Head deadlines
/// are the driver's own, not hyper's.
fn classify(error: &hyper::Error) -> Option<Refusal> {
    if error.is_parse_too_large() {
        return Some(Refusal::HeaderTooLarge);
    }
    if error.is_parse() || error.is_parse_version_h2() {
        return Some(Refusal::ProtocolError);
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            // The gateway's h2 sent GOAWAY for what the client did wrong.
            return (h2.is_go_away() && h2.is_library() && h2.reason() != Some(h2::Reason::NO_ERROR))
                .then_some(Refusal::ProtocolError);
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadlines() -> Deadlines {
        Deadlines { header: Duration::from_secs(10), idle: Duration::from_secs(60), write: Duration::from_secs(30) }
    }

    /// Milliseconds since accept as the fields store them.
    fn ms(secs: u64) -> u64 {
        secs * 1000 + 1
    }

    #[tokio::test]
    async fn deadlines_follow_what_the_connection_does() {
        let activity = Activity::new(Instant::now());
        let at = |secs| activity.accepted + Duration::from_secs(secs);
        // No request yet: the head deadline from accept.
        assert!(matches!(verdict(&activity, deadlines(), false, at(9)), Verdict::Wait(due) if due == at(10)));
        assert!(matches!(verdict(&activity, deadlines(), false, at(10)), Verdict::Refuse(Refusal::HeaderTimeout)));
        // A request in flight: its write deadline only counts once a frame waits for the client.
        let clock = activity.open();
        assert!(matches!(verdict(&activity, deadlines(), false, at(100)), Verdict::Wait(_)));
        clock.handed.store(ms(5), Ordering::Relaxed);
        assert!(matches!(verdict(&activity, deadlines(), false, at(34)), Verdict::Wait(_)));
        assert!(matches!(verdict(&activity, deadlines(), false, at(35)), Verdict::Refuse(Refusal::WriteTimeout)));
        // Done: idle from when the response ended.
        drop(clock);
        activity.idle_since.store(ms(10), Ordering::Relaxed);
        assert!(matches!(verdict(&activity, deadlines(), false, at(69)), Verdict::Wait(due) if due == at(70)));
        assert!(matches!(verdict(&activity, deadlines(), false, at(70)), Verdict::Idle));
        // Under pressure, a second of idleness is enough.
        assert!(matches!(verdict(&activity, deadlines(), true, at(10)), Verdict::Wait(due) if due == at(11)));
        assert!(matches!(verdict(&activity, deadlines(), true, at(11)), Verdict::Shed));
        // An HTTP/1.1 head started after that: the head deadline from its first byte.
        activity.head_started.store(ms(20), Ordering::Relaxed);
        assert!(matches!(verdict(&activity, deadlines(), false, at(29)), Verdict::Wait(due) if due == at(30)));
        assert!(matches!(verdict(&activity, deadlines(), false, at(30)), Verdict::Refuse(Refusal::HeaderTimeout)));
    }
}
