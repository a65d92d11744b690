//! The rows a `DoGet` sent, as a trailer ([`identity::ROWS_HEADER`]) beside `grpc-status`,
//! for the gateway's audit event. The handler counts the rows it encodes into a [`RowsSent`]
//! it leaves in the response's extensions; [`add`], a layer over the whole Flight service,
//! writes the count into the trailers once the stream has ended (a handler cannot: tonic
//! writes the trailers of a successful stream itself).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};

/// The rows a response's stream has sent so far (only when the gateway asked for a report).
#[derive(Debug, Clone, Default)]
pub(crate) struct RowsSent(pub Arc<AtomicU64>);

/// Adds the rows trailer to a response whose handler counted its rows.
pub(crate) fn add(mut response: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let Some(sent) = response.extensions_mut().remove::<RowsSent>() else { return response };
    response.map(|inner| tonic::body::Body::new(WithRows { inner, sent: sent.0 }))
}

struct WithRows {
    inner: tonic::body::Body,
    sent: Arc<AtomicU64>,
}

impl Body for WithRows {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let Poll::Ready(Some(Ok(frame))) = polled else { return polled };
        match frame.into_trailers() {
            Ok(mut trailers) => {
                trailers.insert(identity::ROWS_HEADER, HeaderValue::from(self.sent.load(Ordering::Relaxed)));
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Err(frame) => Poll::Ready(Some(Ok(frame))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
