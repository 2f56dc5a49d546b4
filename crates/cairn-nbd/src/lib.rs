//! Cairn's NBD front end: every non-hidden volume and snapshot served to NBD clients.
//!
//! Two halves, with dependencies pointing one way:
//! - the **codec** ([`handshake`], [`request`], [`reply`], [`proto`]): the fixed-newstyle
//!   handshake, option haggling, request framing and reply encoding as pure state machines over
//!   byte buffers — no sockets, no engine — so they can be fuzzed and replayed from captures;
//! - the **server** ([`start`], [`NbdServerConfig`]): tokio, optional TLS (NBD_OPT_STARTTLS with
//!   the rustls configuration the caller hands in), bounded bytes in flight, each request run,
//!   answered and queued from one blocking thread — or, on a volume that completes
//!   asynchronously (`cairn_export::AsyncVolume`, Ceph RBD), put in flight from the reader task
//!   and answered from the backend's completion — replies sent in vectored batches, payloads
//!   and read data in reused aligned buffers (no bounce copy on an O_DIRECT pool), and the
//!   mapping of export errors to NBD errno values, done once at the edge.
//!
//! The server serves any `cairn_export::Exports` (the export layer: one implementation over
//! Cairn's engine, more to come) and depends on nothing else of Cairn's: not on the engine, not
//! on the management crates, not on any other data protocol.
//!
//! Limits live in [`limits`].
#![forbid(unsafe_code)]

mod buffers;
mod connection;
mod error;
pub mod handshake;
pub mod limits;
pub mod proto;
pub mod reply;
pub mod request;
mod server;
mod wire;

pub use error::{Error, ErrorKind, Result};
pub use handshake::{Catalog, ExportInfo, Handshake, Negotiated, Step, TlsMode};
pub use request::{check, decode_header, Action, Command, Request, RequestDecoder, RequestHeader};
pub use server::{start, NbdServerConfig, NbdServerHandle};
