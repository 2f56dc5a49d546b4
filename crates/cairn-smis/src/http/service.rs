//! One HTTP request in, one HTTP response out: the order of checks and the mapping of outcomes
//! to statuses and headers.
//!
//! Order, each step before any later one can run: Basic authentication on the headers (401),
//! method and path (501, 510, 404), declared body size (413, without reading the body), bounded
//! body read (413 once the limit is passed, whatever the framing; 408 on a stalled client), then the
//! CIM handler on a blocking thread, and its outcome as 200/400/501 with the DSP0200 headers; a
//! streamed outcome is sent chunked as it is computed ([`crate::http::stream`]).
//!
//! Invariants: at most `body_bytes_max` body bytes are ever buffered per request; the body is not
//! read (so `Expect: 100-continue` gets no `100`) for a request refused on its headers; an answer
//! sent before the body was fully read closes the connection, since the rest of the body is unread.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_cim::CimStream;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, TE, TRAILER, WWW_AUTHENTICATE,
};
use hyper::{Request, Response, StatusCode};

use crate::http::auth::{is_authorized, WWW_AUTHENTICATE_VALUE};
use crate::http::cim_headers::{classify, CimHeaderValues, HeaderScheme, Refusal, CIM_MAPPING_URI};
use crate::http::credentials::Credentials;
use crate::http::stream::{StreamedBody, TRAILER_FIELDS};
use crate::http::{CimHandler, CimHttpOutcome, HttpCimRequest};

/// `Content-Type` of every CIM-XML answer.
pub const XML_CONTENT_TYPE: &str = "application/xml; charset=\"utf-8\"";

/// Everything a request needs, shared by all connections of one server.
pub(crate) struct ServiceState<H: ?Sized> {
    pub credentials: Credentials,
    pub body_bytes_max: usize,
    pub body_read_timeout: Duration,
    pub cim: Arc<H>,
}

/// The body of every answer: whole, or streamed as it is computed.
pub(crate) type ResponseBody = Either<Full<Bytes>, StreamedBody>;

/// How a response must be framed beyond its status.
struct Answer {
    status: StatusCode,
    cim_error: Option<&'static str>,
    body: Vec<u8>,
    /// The body is this stream instead of `body`.
    stream: Option<CimStream>,
    close: bool,
}

impl Answer {
    fn status(status: StatusCode) -> Answer {
        Answer {
            status,
            cim_error: None,
            body: Vec::new(),
            stream: None,
            close: false,
        }
    }
    fn cim_error(status: StatusCode, cim_error: &'static str) -> Answer {
        Answer {
            cim_error: Some(cim_error),
            ..Answer::status(status)
        }
    }
    fn closing(self) -> Answer {
        Answer {
            close: true,
            ..self
        }
    }
}

/// The hyper service function: never fails, every fault is an HTTP answer.
pub(crate) async fn serve<H, B>(
    state: Arc<ServiceState<H>>,
    req: Request<B>,
) -> Result<Response<ResponseBody>, Infallible>
where
    H: CimHandler + ?Sized,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Ok(respond(&state, req).await)
}

async fn respond<H, B>(state: &ServiceState<H>, req: Request<B>) -> Response<ResponseBody>
where
    H: CimHandler + ?Sized,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !is_authorized(req.headers(), &state.credentials) {
        tracing::debug!(method = %req.method(), "refused request without valid credentials");
        return unauthorized();
    }
    let scheme = match classify(req.method(), req.uri().path(), req.headers()) {
        Ok(scheme) => scheme,
        Err(refusal) => return build(refused(refusal), &HeaderScheme::Plain, false),
    };
    let trailers = accepts_trailers(req.headers());
    let answer = match read_body(state, req, &scheme).await {
        Ok((headers, body)) => call(state, headers, body).await,
        Err(answer) => answer,
    };
    build(answer, &scheme, trailers)
}

/// Whether the client accepts trailer fields in a chunked answer (`TE: trailers`).
fn accepts_trailers(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

fn refused(refusal: Refusal) -> Answer {
    match refusal {
        Refusal::MethodNotImplemented => Answer::status(StatusCode::NOT_IMPLEMENTED),
        Refusal::NotExtended => Answer::status(StatusCode::NOT_EXTENDED),
        Refusal::NotFound => Answer::status(StatusCode::NOT_FOUND),
    }
}

/// Reads the body within the size and time limits; the CIM headers are extracted on the way.
async fn read_body<H, B>(
    state: &ServiceState<H>,
    req: Request<B>,
    scheme: &HeaderScheme,
) -> Result<(CimHeaderValues, Bytes), Answer>
where
    H: ?Sized,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large =
        || Answer::cim_error(StatusCode::PAYLOAD_TOO_LARGE, "request-not-valid").closing();
    let declared = req.body().size_hint().lower();
    if declared > state.body_bytes_max as u64 {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let headers = CimHeaderValues::extract(&parts.headers, scheme);
    let limited = Limited::new(body, state.body_bytes_max).collect();
    match tokio::time::timeout(state.body_read_timeout, limited).await {
        Ok(Ok(collected)) => Ok((headers, collected.to_bytes())),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(Answer::status(StatusCode::BAD_REQUEST).closing()),
        Err(_) => Err(Answer::status(StatusCode::REQUEST_TIMEOUT).closing()),
    }
}

/// Runs the CIM handler on a blocking thread (decoding and encoding are CPU work).
async fn call<H>(state: &ServiceState<H>, headers: CimHeaderValues, body: Bytes) -> Answer
where
    H: CimHandler + ?Sized,
{
    let cim = Arc::clone(&state.cim);
    let reply = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let outcome = cim.handle(&HttpCimRequest {
            cim_operation: headers.operation.as_deref(),
            cim_method: headers.method.as_deref(),
            cim_object: headers.object.as_deref(),
            cim_protocol_version: headers.protocol_version.as_deref(),
            body: &body,
        });
        tracing::debug!(
            method = headers.method.as_deref().unwrap_or("-"),
            elapsed_us = started.elapsed().as_micros() as u64,
            "CIM request handled"
        );
        outcome
    })
    .await;
    match reply {
        Ok(CimHttpOutcome::Response(body)) => Answer {
            body,
            ..Answer::status(StatusCode::OK)
        },
        Ok(CimHttpOutcome::Stream(stream)) => Answer {
            stream: Some(stream),
            ..Answer::status(StatusCode::OK)
        },
        Ok(CimHttpOutcome::BadRequest { cim_error }) => {
            Answer::cim_error(StatusCode::BAD_REQUEST, cim_error)
        }
        Ok(CimHttpOutcome::NotImplemented { cim_error }) => {
            Answer::cim_error(StatusCode::NOT_IMPLEMENTED, cim_error)
        }
        Err(e) => {
            tracing::error!(error = %e, "CIM handler failed");
            Answer::status(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

fn unauthorized() -> Response<ResponseBody> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::new())));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(WWW_AUTHENTICATE_VALUE),
    );
    resp
}

/// Frames an answer; for `M-POST` the CIM headers (and trailer fields) carry the request's
/// prefix, declared by `Opt`. A streamed answer to a client that accepts trailers (`trailers`)
/// declares the trailer fields an error would be reported in.
fn build(answer: Answer, scheme: &HeaderScheme, trailers: bool) -> Response<ResponseBody> {
    let ok = answer.status == StatusCode::OK;
    let name = |base: &str| match scheme {
        HeaderScheme::Plain => base.to_owned(),
        HeaderScheme::Prefixed(ns) => format!("{ns}-{base}"),
    };
    let trailer_names: Option<Vec<HeaderName>> = (trailers && answer.stream.is_some()).then(|| {
        TRAILER_FIELDS
            .iter()
            .filter_map(|f| HeaderName::from_bytes(name(f).as_bytes()).ok())
            .collect()
    });
    let declared = trailer_names.as_ref().map(|_| {
        let list: Vec<String> = TRAILER_FIELDS.iter().map(|f| name(f)).collect();
        list.join(", ")
    });
    let body = match answer.stream {
        Some(stream) => Either::Right(crate::http::stream::start(stream, trailer_names)),
        None => Either::Left(Full::new(Bytes::from(answer.body))),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = answer.status;
    let headers = resp.headers_mut();
    if let Some(value) = declared.and_then(|d| HeaderValue::from_str(&d).ok()) {
        headers.insert(TRAILER, value);
    }
    if let HeaderScheme::Prefixed(ns) = scheme {
        headers.insert("ext", HeaderValue::from_static(""));
        if let Ok(opt) = HeaderValue::from_str(&format!("{CIM_MAPPING_URI} ; ns={ns}")) {
            headers.insert("opt", opt);
        }
    }
    let mut add = |base: &str, value: HeaderValue| {
        if let Ok(n) = hyper::header::HeaderName::from_bytes(name(base).as_bytes()) {
            headers.insert(n, value);
        }
    };
    if ok {
        add("CIMOperation", HeaderValue::from_static("MethodResponse"));
    }
    if let Some(value) = answer.cim_error.and_then(|e| HeaderValue::from_str(e).ok()) {
        add("CIMError", value);
    }
    if ok {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(XML_CONTENT_TYPE));
    }
    if answer.close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
