//! A query's response on its way to the client: its rows counted by the gateway
//! ([`RowCounter`]) and charged to the caller's budget as they pass, its slots held until
//! it ends, and a result larger than the cap the engine was told to hold ended here (the
//! engine misreporting is not trusted).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::QueryLimits;
use super::row_counter::RowCounter;
use super::slots::Held;
use crate::body::{Body, BoxError};
use crate::config::RowsPerWindow;

/// What metering found, for the audit event: the rows counted, and the caller limit the
/// engine said ended the query in its trailers (a timeout or memory share while streaming).
#[derive(Debug, Default)]
pub struct Outcome {
    pub rows: AtomicU64,
    pub tripped: std::sync::OnceLock<&'static str>,
}

/// What a metered response needs to know.
pub(crate) struct Metering {
    pub limits: Arc<QueryLimits>,
    pub principal: Arc<str>,
    pub tier: Arc<str>,
    pub budget: Option<RowsPerWindow>,
    /// The rows the engine was told to send at most.
    pub cap: Option<u64>,
    /// Held until the response ends (dropped with it).
    pub _slots: Held,
    /// What metering finds, for the audit event.
    pub outcome: Arc<Outcome>,
}

/// `body` metered; `counter` is `None` for a response the gateway does not count (an error
/// body, a non-result), whose slots are still held until it ends.
pub(crate) fn meter(body: Body, counter: Option<RowCounter>, metering: Metering) -> Body {
    use http_body_util::BodyExt;
    Metered { inner: body, counter, metering, failed: false }.boxed_unsync()
}

struct Metered {
    inner: Body,
    counter: Option<RowCounter>,
    metering: Metering,
    failed: bool,
}

impl Metered {
    /// Counts a data frame's rows; an error ends the response.
    fn count(&mut self, data: &[u8]) -> Result<(), BoxError> {
        let Some(counter) = &mut self.counter else { return Ok(()) };
        let rows = counter.feed(data).map_err(|problem| {
            tracing::error!(problem, "the engine's result could not be counted; response ended");
            BoxError::from(format!("the result could not be counted: {problem}"))
        })?;
        if rows == 0 {
            return Ok(());
        }
        let m = &self.metering;
        let total = m.outcome.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        if let Some(budget) = m.budget {
            m.limits.budget().charge(&m.principal, budget, rows);
        }
        if let Some(cap) = m.cap
            && total > cap
        {
            crate::metrics::query_limit(&m.tier, "engine_overran_cap");
            tracing::error!(rows = total, cap, tier = %m.tier, "the engine sent more rows than the caller's cap; response ended");
            return Err(BoxError::from("the result is larger than the caller's cap"));
        }
        Ok(())
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let Poll::Ready(Some(Ok(mut frame))) = polled else { return polled };
        if let Some(data) = frame.data_ref()
            && let Err(error) = self.count(data)
        {
            self.failed = true;
            return Poll::Ready(Some(Err(error)));
        }
        if let Some(trailers) = frame.trailers_mut() {
            if trailers.contains_key(identity::TRUNCATED_HEADER) {
                crate::metrics::query_limit(&self.metering.tier, "truncated");
            }
            // The engine's word on which limit ended the query stays in the gateway.
            let tripped = trailers.remove(identity::LIMIT_HEADER);
            if let Some(limit) = tripped.and_then(|v| identity::StatementLimits::named(v.as_bytes())) {
                crate::metrics::query_limit(&self.metering.tier, limit);
                let _ = self.metering.outcome.tripped.set(limit);
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
