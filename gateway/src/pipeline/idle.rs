//! A streamed body that yields nothing for `timeouts.stream_idle_secs` is cut off with an
//! error naming who stalled: the client (a request body, forwarded as it arrives) or the
//! engine (a response body). The timer is armed only while the body waits, so a body that
//! keeps flowing costs no timer work per frame.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::{Body, BoxError};

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no data from the {who} for {secs} s (timeouts.stream_idle_secs)")]
pub(super) struct StreamIdle {
    pub who: &'static str,
    pub secs: u64,
}

pub(super) struct IdleBody {
    inner: Body,
    limit: Duration,
    who: &'static str,
    /// Armed when the body last returned `Pending` after yielding something.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl IdleBody {
    /// A request body: the client stalls it.
    pub(super) fn client(inner: Body, limit: Duration) -> Self {
        Self { inner, limit, who: "client", timer: None, armed: false }
    }

    /// A response body: the engine stalls it.
    pub(super) fn engine(inner: Body, limit: Duration) -> Self {
        Self { inner, limit, who: "engine", timer: None, armed: false }
    }
}

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame);
        }
        if !this.armed {
            this.armed = true;
            let deadline = Instant::now() + this.limit;
            match this.timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        match this.timer.as_mut().map(|timer| timer.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                Poll::Ready(Some(Err(Box::new(StreamIdle { who: this.who, secs: this.limit.as_secs() }))))
            }
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// A body whose sender never sends: stalled.
    fn stalled() -> (futures::channel::mpsc::Sender<Result<Frame<Bytes>, BoxError>>, Body) {
        let (sender, frames) = futures::channel::mpsc::channel(1);
        (sender, http_body_util::StreamBody::new(frames).boxed_unsync())
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_off_naming_who_stalled() {
        let (_client, body) = stalled();
        let mut body = IdleBody::client(body, Duration::from_millis(50));
        let error = body.frame().await.expect("an end").expect_err("a stall error");
        let idle = error.downcast_ref::<StreamIdle>().expect("a StreamIdle");
        assert_eq!(idle.who, "client");
        let (_engine, body) = stalled();
        let error = IdleBody::engine(body, Duration::from_millis(50)).frame().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("no data from the engine"), "{error}");
    }

    #[tokio::test]
    async fn a_flowing_body_is_never_cut() {
        let (mut sender, body) = stalled();
        let mut body = IdleBody::client(body, Duration::from_millis(200));
        for _ in 0..5 {
            sender.try_send(Ok(Frame::data(Bytes::from_static(b"x")))).unwrap();
            assert!(body.frame().await.unwrap().unwrap().is_data());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(sender);
        assert!(body.frame().await.is_none(), "the body ends normally");
    }
}
