//! What a `DoGet` adds beside `grpc-status` once its stream has ended: the rows it sent
//! ([`identity::ROWS_HEADER`], for the gateway's audit event, when asked) and the cap a
//! truncated result hit ([`identity::TRUNCATED_HEADER`], always). The handler leaves a
//! [`ResultTrailers`] in the response's extensions; [`add`], a layer over the whole Flight
//! service, writes them into the trailers once the stream has ended (a handler cannot:
//! tonic writes the trailers of a successful stream itself).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};

use crate::result_cap::Truncation;

/// The rows a response's stream has sent so far (counted only when the gateway asked for a
/// report), and whether its result was cut at a cap.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResultTrailers {
    pub rows: Option<Arc<AtomicU64>>,
    pub truncation: Truncation,
}

/// Adds the trailers to a response whose handler left a [`ResultTrailers`].
pub(crate) fn add(mut response: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let Some(trailers) = response.extensions_mut().remove::<ResultTrailers>() else { return response };
    response.map(|inner| tonic::body::Body::new(WithTrailers { inner, trailers }))
}

struct WithTrailers {
    inner: tonic::body::Body,
    trailers: ResultTrailers,
}

impl Body for WithTrailers {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let Poll::Ready(Some(Ok(frame))) = polled else { return polled };
        match frame.into_trailers() {
            Ok(mut trailers) => {
                if let Some(rows) = &self.trailers.rows {
                    trailers.insert(identity::ROWS_HEADER, HeaderValue::from(rows.load(Ordering::Relaxed)));
                }
                if let Some(cap) = self.trailers.truncation.cap() {
                    trailers.insert(identity::TRUNCATED_HEADER, HeaderValue::from_static(cap));
                }
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
