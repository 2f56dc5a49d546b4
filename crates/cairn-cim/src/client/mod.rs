//! The client half of the CIM-XML codec: requests a management client sends (`encode`) and the
//! responses it reads back (`decode`), and the export request an indication sender posts to a
//! listener (`export`). Pure, like the server half: no sockets, no HTTP.
//!
//! Invariants: every request the encoder writes is one the server decoder accepts (the round-trip
//! tests check it); the response decoder has the server decoder's bounds (body size, XML depth,
//! element and attribute counts, embedded-instance depth) and never panics on any input.

pub mod decode;
pub mod encode;
pub mod export;

pub use decode::{decode_response, IntrinsicReply, MethodReply, Reply, Response, Returned};
pub use encode::{encode_request, EncodedRequest, Operation};
pub use export::{decode_export_response, encode_export_indication, EXPORT_INDICATION};
