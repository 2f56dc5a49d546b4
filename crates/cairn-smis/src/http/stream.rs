//! Streamed answers (`CimHttpOutcome::Stream`): the body is sent with HTTP chunked transfer
//! coding as a blocking task computes it part by part, and an error met midway is reported as
//! DSP0200 prescribes for a chunked answer, in the trailer: `CIMStatusCode`,
//! `CIMStatusCodeDescription` (percent-encoded UTF-8) and `CIMError` (the percent-encoded CIM-XML
//! INSTANCE of a `CIM_Error` with the same two properties).
//!
//! Invariants: at most [`HTTP_STREAM_PARTS_IN_FLIGHT`] computed parts wait for the connection, so
//! a slow client holds the computation back instead of the server buffering the answer; a
//! client gone stops the computation at its next part; an answer ended by an error never looks
//! complete: to a client that sent `TE: trailers` it ends with the trailer, to any other the
//! connection is broken off before the last chunk (trailers it did not ask for would be dropped,
//! and the chunked body would then end as if the answer were whole).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use cairn_cim::{CimError, CimStream, Instance, Value};
use hyper::body::{Body, Frame};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;

use crate::limits::HTTP_STREAM_PARTS_IN_FLIGHT;

/// The trailer fields of an answer ended by an error, by their base names (an `M-POST` answer
/// prefixes them like its other CIM headers).
pub(crate) const TRAILER_FIELDS: [&str; 3] =
    ["CIMStatusCode", "CIMStatusCodeDescription", "CIMError"];

/// The body of a streamed answer: the frames its computing task sends.
pub(crate) struct StreamedBody {
    frames: mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
}

impl Body for StreamedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.get_mut().frames.poll_recv(cx)
    }
}

/// Starts computing `stream` on a blocking thread; the body it feeds. `trailers` holds the
/// trailer field names (as the answer's scheme spells them) when the client accepts trailers,
/// `None` when it does not. Must run inside a tokio runtime.
pub(crate) fn start(stream: CimStream, trailers: Option<Vec<HeaderName>>) -> StreamedBody {
    let (tx, frames) = mpsc::channel(HTTP_STREAM_PARTS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || pump(stream, &tx, trailers.as_deref()));
    StreamedBody { frames }
}

fn pump(
    stream: CimStream,
    tx: &mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
    trailers: Option<&[HeaderName]>,
) {
    for part in stream {
        let frame = match part {
            Ok(bytes) => Ok(Frame::data(Bytes::from(bytes))),
            Err(e) => {
                tracing::debug!(error = %e, trailers = trailers.is_some(), "streamed answer failed midway");
                match trailers {
                    Some(names) => Ok(Frame::trailers(error_trailers(&e, names))),
                    None => Err(std::io::Error::other(format!("Answer failed midway: {e}"))),
                }
            }
        };
        if tx.blocking_send(frame).is_err() {
            tracing::debug!("client went away during a streamed answer");
            return;
        }
    }
}

/// The trailer reporting `e`, its fields named `names` (in [`TRAILER_FIELDS`] order).
fn error_trailers(e: &CimError, names: &[HeaderName]) -> HeaderMap {
    let error = Instance::new("CIM_Error")
        .with("CIMStatusCode", Value::Uint32(e.status.code()))
        .with(
            "CIMStatusCodeDescription",
            Value::string(e.description.clone()),
        );
    let values = [
        e.status.code().to_string(),
        percent_encode(&e.description),
        percent_encode(&cairn_cim::xml::encode::instance_xml(&error)),
    ];
    let mut map = HeaderMap::new();
    for (name, value) in names.iter().zip(values) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            map.insert(name.clone(), v);
        }
    }
    map
}

/// `text` with every byte outside printable ASCII, and `%`, percent-encoded (a header value).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_percent_encoded_utf8() {
        assert_eq!(
            percent_encode("Pool \"p\" 100% — gone"),
            "Pool \"p\" 100%25 %E2%80%94 gone"
        );
    }

    #[test]
    fn the_trailer_names_the_status_and_its_description() {
        let names: Vec<HeaderName> = TRAILER_FIELDS
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).expect("name"))
            .collect();
        let e = CimError::failed("Pool is failed");
        let map = error_trailers(&e, &names);
        assert_eq!(map["cimstatuscode"], "1");
        assert_eq!(map["cimstatuscodedescription"], "Pool is failed");
        let error = map["cimerror"].to_str().expect("ASCII");
        assert!(error.contains("CLASSNAME=\"CIM_Error\""), "{error}");
        assert!(error.contains("Pool is failed"), "{error}");
    }
}
