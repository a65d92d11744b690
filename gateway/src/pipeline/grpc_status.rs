//! The gRPC status a Flight call ended with, for metrics: known from the response head
//! for trailers-only answers (the gateway's refusals, most engine errors), else from the
//! trailers after the data, which this body wrapper watches for.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::{Body, BoxError};
use crate::grpc_code::GrpcCode;

/// A status number's name; `other` for a number outside the specification.
pub(super) fn name(code: u16) -> &'static str {
    GrpcCode::from_number(code).map_or("other", GrpcCode::name)
}

pub(super) fn code(headers: &HeaderMap) -> Option<u16> {
    GrpcCode::number_in(headers)
}

/// Counts the call's gRPC status in `gateway_grpc_responses_total` once it is known.
pub(super) fn observe(route: &'static str, response: Response<Body>) -> Response<Body> {
    if let Some(code) = code(response.headers()) {
        crate::metrics::grpc_response(route, name(code));
        return response;
    }
    response.map(|inner| Watched { inner, route, counted: false }.boxed_unsync())
}

struct Watched {
    inner: Body,
    route: &'static str,
    counted: bool,
}

impl Watched {
    fn count(&mut self, status: &'static str) {
        if !self.counted {
            self.counted = true;
            crate::metrics::grpc_response(self.route, status);
        }
    }
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let status = code(trailers).map_or("none", name);
                    self.count(status);
                }
            }
            // The stream broke off or ended without a status: the client saw no OK.
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.count("none"),
            Poll::Pending => {}
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

impl Drop for Watched {
    fn drop(&mut self) {
        // The client went away before the trailers.
        self.count("cancelled");
    }
}
