//! Cairn's NBD front end: every non-hidden volume and snapshot served to NBD clients.
//!
//! Two halves, with dependencies pointing one way:
//! - the **codec** ([`handshake`], [`request`], [`reply`], [`proto`]): the fixed-newstyle
//!   handshake, option haggling, request framing and reply encoding as pure state machines over
//!   byte buffers — no sockets, no engine — so they can be fuzzed and replayed from captures;
//! - the **server** ([`start`], [`NbdServerConfig`], [`exports`]): tokio, optional TLS (NBD_OPT_STARTTLS with rustls),
//!   bounded bytes in flight, and the mapping of engine errors to NBD errno values, done once at
//!   the edge.
//!
//! Limits live in [`limits`].
#![forbid(unsafe_code)]

mod connection;
mod engine;
mod error;
pub mod exports;
pub mod handshake;
pub mod limits;
pub mod proto;
pub mod reply;
pub mod request;
mod server;
mod wire;

pub use engine::start;
pub use error::{Error, ErrorKind, Result};
pub use exports::{Exports, Run, Volume, VolumeError, VolumeErrorKind, VolumeResult};
pub use handshake::{Catalog, ExportInfo, Handshake, HandshakeError, Negotiated, Step, TlsMode};
pub use request::{check, decode_header, Action, Command, Request, RequestDecoder, RequestHeader};
pub use server::{start_exports, NbdServerConfig, NbdServerHandle};
