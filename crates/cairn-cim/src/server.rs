//! `CimServer`: the HTTP-independent front door. Checks the CIM-XML HTTP headers (DSP0200 §7),
//! decodes the body, dispatches, encodes the response.
//!
//! Invariants: protocol-level faults (headers, XML) become `BadRequest`/`NotImplemented` with the
//! DSP0200 `CIMError` value; everything after a successful decode becomes an HTTP 200 response with
//! either a result or an `ERROR`; the response names the method exactly as the request did.

use std::sync::Arc;
use std::time::Instant;

use crate::dispatch::{streamed, CimStream, Core, Enumerated};
use crate::error::{DecodeError, DecodeErrorKind};
use crate::path::{namespace_eq, percent_decode, CimObjectHeader};
use crate::provider::Provider;
use crate::repository::ClassRepository;
use crate::request::{Call, MethodTarget, Request};
use crate::xml::decode::decode_request;
use crate::xml::encode::{imethod_response, method_response, NO_CLASS_OPTIONS};

/// The CIM-relevant parts of one HTTP request, already extracted by the HTTP server.
/// Header values are passed raw (cairn-cim percent-decodes CIMObject/CIMMethod itself).
#[derive(Debug, Clone, Copy)]
pub struct HttpCimRequest<'a> {
    /// `CIMOperation` (or the M-POST `NN-CIMOperation`).
    pub cim_operation: Option<&'a str>,
    /// `CIMMethod`.
    pub cim_method: Option<&'a str>,
    /// `CIMObject`.
    pub cim_object: Option<&'a str>,
    /// `CIMProtocolVersion` (missing = "1.0").
    pub cim_protocol_version: Option<&'a str>,
    pub body: &'a [u8],
}

/// What the HTTP server must send back.
#[derive(Debug)]
pub enum CimHttpOutcome {
    /// HTTP 200 with `Content-Type: application/xml; charset="utf-8"`, header
    /// `CIMOperation: MethodResponse`, this body.
    Response(Vec<u8>),
    /// As `Response`, the body sent as the stream yields it (HTTP chunked transfer coding). An
    /// error the stream ends with comes after part of the body was sent: the answer must not
    /// look complete (DSP0200: the `CIMStatusCode` trailer to a client that accepts trailers;
    /// otherwise the connection is broken off before the last chunk).
    Stream(CimStream),
    /// HTTP 400 with header `CIMError: <cim_error>`.
    BadRequest { cim_error: &'static str },
    /// HTTP 501 with header `CIMError: <cim_error>`.
    NotImplemented { cim_error: &'static str },
}

/// Outcomes compare by what they send; a stream, not yet read, equals nothing.
impl PartialEq for CimHttpOutcome {
    fn eq(&self, other: &CimHttpOutcome) -> bool {
        use CimHttpOutcome::{BadRequest, NotImplemented, Response};
        match (self, other) {
            (Response(a), Response(b)) => a == b,
            (BadRequest { cim_error: a }, BadRequest { cim_error: b })
            | (NotImplemented { cim_error: a }, NotImplemented { cim_error: b }) => a == b,
            _ => false,
        }
    }
}

/// Decoding, dispatch, encoding: one per daemon, shared by all connections (Send + Sync).
pub struct CimServer {
    /// Shared with the streamed answers still being sent.
    core: Arc<Core>,
}

impl std::fmt::Debug for CimServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CimServer")
            .field("classes", &self.core.repo.classes().len())
            .finish()
    }
}

impl CimServer {
    /// A server over `provider`, with the embedded class repository (shared, see
    /// [`ClassRepository::shared`]).
    pub fn new(provider: Arc<dyn Provider>) -> CimServer {
        CimServer::over(provider, ClassRepository::shared())
    }

    /// A server over `provider` with an explicit class repository.
    pub fn with_repository(provider: Arc<dyn Provider>, repo: ClassRepository) -> CimServer {
        CimServer::over(provider, Arc::new(repo))
    }

    fn over(provider: Arc<dyn Provider>, repo: Arc<ClassRepository>) -> CimServer {
        CimServer {
            core: Arc::new(Core::new(repo, provider)),
        }
    }

    /// The class repository in use.
    pub fn repository(&self) -> &ClassRepository {
        &self.core.repo
    }

    /// Handles one request.
    pub fn handle(&self, req: &HttpCimRequest<'_>) -> CimHttpOutcome {
        if let Some(v) = req.cim_protocol_version {
            let v = v.trim();
            if !(v == "1" || v.starts_with("1.")) {
                return CimHttpOutcome::NotImplemented {
                    cim_error: "unsupported-protocol-version",
                };
            }
        }
        if !req
            .cim_operation
            .is_some_and(|op| op.trim().eq_ignore_ascii_case("MethodCall"))
        {
            return CimHttpOutcome::BadRequest {
                cim_error: "unsupported-operation",
            };
        }
        let (Some(method_hdr), Some(object_hdr)) = (req.cim_method, req.cim_object) else {
            return CimHttpOutcome::BadRequest {
                cim_error: "header-mismatch",
            };
        };
        let started = Instant::now();
        let request = match decode_request(req.body) {
            Ok(r) => r,
            Err(e) => return decode_outcome(&e),
        };
        if !headers_match(&request, method_hdr, object_hdr) {
            tracing::debug!(
                method = request.call.method(),
                "CIM headers do not match the body"
            );
            return CimHttpOutcome::BadRequest {
                cim_error: "header-mismatch",
            };
        }
        let outcome = self.outcome(&request);
        let response_bytes = match &outcome {
            CimHttpOutcome::Response(body) => body.len(),
            _ => 0,
        };
        tracing::debug!(
            method = request.call.method(),
            namespace = request.call.namespace(),
            response_bytes,
            streamed = matches!(outcome, CimHttpOutcome::Stream(_)),
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "CIM request handled"
        );
        outcome
    }

    /// The answer to a decoded request: streamed for a plain enumeration longer than a batch,
    /// whole otherwise.
    fn outcome(&self, request: &Request) -> CimHttpOutcome {
        let Call::Intrinsic(c) = &request.call else {
            return CimHttpOutcome::Response(self.respond(request));
        };
        let Some(names) = streamed(&c.method) else {
            return CimHttpOutcome::Response(self.respond(request));
        };
        let result = match self.core.enumerate_streamed(c, names, &request.message_id) {
            Ok(Enumerated::Stream(stream)) => return CimHttpOutcome::Stream(stream),
            Ok(Enumerated::Whole(ret)) => Ok(ret),
            Err(e) => {
                tracing::debug!(method = %c.method, namespace = %c.namespace, error = %e, "intrinsic call failed");
                Err(e)
            }
        };
        CimHttpOutcome::Response(imethod_response(
            &request.message_id,
            &c.method,
            &result,
            NO_CLASS_OPTIONS,
        ))
    }

    /// Dispatches a decoded request and encodes the response body.
    pub fn respond(&self, request: &Request) -> Vec<u8> {
        let id = &request.message_id;
        match &request.call {
            Call::Intrinsic(c) => {
                let r = self.core.intrinsic(c);
                if let Err(e) = &r {
                    tracing::debug!(method = %c.method, namespace = %c.namespace, error = %e, "intrinsic call failed");
                }
                match r {
                    Ok((ret, opts)) => imethod_response(id, &c.method, &Ok(ret), opts),
                    Err(e) => imethod_response(id, &c.method, &Err(e), NO_CLASS_OPTIONS),
                }
            }
            Call::Extrinsic(c) => {
                let r = self.core.extrinsic(c);
                if let Err(e) = &r {
                    tracing::debug!(method = %c.method, namespace = %c.namespace, error = %e, "extrinsic call failed");
                }
                method_response(id, &c.method, &r)
            }
        }
    }
}

fn decode_outcome(e: &DecodeError) -> CimHttpOutcome {
    tracing::debug!(error = %e, "undecodable CIM-XML request");
    match e.kind {
        DecodeErrorKind::NotWellFormed => CimHttpOutcome::BadRequest {
            cim_error: "request-not-well-formed",
        },
        DecodeErrorKind::NotValid => CimHttpOutcome::BadRequest {
            cim_error: "request-not-valid",
        },
        DecodeErrorKind::UnsupportedCimVersion => CimHttpOutcome::BadRequest {
            cim_error: "unsupported-cim-version",
        },
        DecodeErrorKind::UnsupportedDtdVersion => CimHttpOutcome::BadRequest {
            cim_error: "unsupported-dtd-version",
        },
        DecodeErrorKind::UnsupportedProtocolVersion => CimHttpOutcome::NotImplemented {
            cim_error: "unsupported-protocol-version",
        },
        DecodeErrorKind::MultipleRequests => CimHttpOutcome::NotImplemented {
            cim_error: "multiple-requests-unsupported",
        },
    }
}

/// CIMMethod names the body's method; CIMObject names its namespace and, for extrinsic calls, the
/// target's class (key bindings are not compared: clients format them differently).
fn headers_match(request: &Request, method_hdr: &str, object_hdr: &str) -> bool {
    let Some(method) = percent_decode(method_hdr.trim()) else {
        return false;
    };
    if !method.eq_ignore_ascii_case(request.call.method()) {
        return false;
    }
    let Some(obj) = CimObjectHeader::parse(object_hdr) else {
        return false;
    };
    if !namespace_eq(&obj.namespace, request.call.namespace()) {
        return false;
    }
    match &request.call {
        Call::Intrinsic(_) => true,
        Call::Extrinsic(c) => {
            let target_class = match &c.target {
                MethodTarget::Instance(p) => &p.class_name,
                MethodTarget::Class(n) => n,
            };
            obj.class_name
                .is_some_and(|h| h.eq_ignore_ascii_case(target_class))
        }
    }
}

// The HTTP server shares one CimServer across connections and threads.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<CimServer>();
};
