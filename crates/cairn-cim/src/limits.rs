//! Every bound cairn-cim enforces, in one place.
//!
//! Invariant: each queue, buffer or recursion in the crate is bounded by one of these constants, and the
//! relations between them are checked at compile time below.

/// Largest request body the decoder accepts (the HTTP server may enforce a smaller one).
pub const REQUEST_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest response body the client decoder accepts (a pull response holds at most
/// `PULL_OBJECT_COUNT_MAX` objects; clients ask for far fewer).
pub const RESPONSE_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Deepest element nesting accepted in a request document.
pub const XML_DEPTH_MAX: usize = 48;
/// Most elements accepted in one request document.
pub const XML_ELEMENT_COUNT_MAX: usize = 200_000;
/// Most attributes accepted on one element.
pub const XML_ATTRIBUTE_COUNT_MAX: usize = 16;
/// How deep embedded instances (an INSTANCE escaped inside a VALUE) may nest inside each other.
pub const EMBEDDED_INSTANCE_DEPTH_MAX: usize = 4;
/// Most enumeration contexts open at once (across all clients).
pub const ENUMERATION_CONTEXTS_OPEN_MAX: usize = 256;
/// Longest OperationTimeout a client may ask for, and the one used when it asks for none.
pub const OPERATION_TIMEOUT_SECONDS_MAX: u32 = 600;
/// OperationTimeout used when the client does not send one.
pub const OPERATION_TIMEOUT_SECONDS_DEFAULT: u32 = 60;
/// Most objects returned by one Open*/Pull* response, whatever MaxObjectCount asks for.
pub const PULL_OBJECT_COUNT_MAX: u32 = 10_000;
/// Most provider pages one Open*/Pull* batch is computed from (pages may come back empty, e.g.
/// a page of volumes none of which is a replica); past it the batch is answered as it is, short
/// but not the last, and the next pull goes on.
pub const PULL_PAGES_PER_BATCH_MAX: usize = 64;
/// Most objects one batch of a plain EnumerateInstances or EnumerateInstanceNames answer holds:
/// an answer longer than this is streamed (HTTP chunked transfer), a batch at a time.
pub const STREAM_BATCH_OBJECT_COUNT: usize = 500;

const _: () = assert!(
    PULL_PAGES_PER_BATCH_MAX >= 1,
    "a batch reads at least one page"
);
const _: () = assert!(STREAM_BATCH_OBJECT_COUNT >= 1, "a batch holds an object");
const _: () = assert!(XML_DEPTH_MAX >= 16, "CIM-XML requests nest about 12 deep");
const _: () = assert!(OPERATION_TIMEOUT_SECONDS_DEFAULT <= OPERATION_TIMEOUT_SECONDS_MAX);
const _: () = assert!(RESPONSE_BODY_BYTES_MAX >= REQUEST_BODY_BYTES_MAX);
const _: () = assert!(
    XML_ELEMENT_COUNT_MAX <= REQUEST_BODY_BYTES_MAX / 4,
    "an element takes at least 4 bytes"
);
