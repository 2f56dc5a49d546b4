//! Cairn's iSCSI target (RFC 7143, error recovery level 0): every exported volume and snapshot
//! as a SCSI logical unit (SPC-4 / SBC-3) of one target node per array.
//!
//! Two halves, with dependencies pointing one way:
//! - the **codec** ([`pdu`], [`text`], [`keys`], [`chap`], [`login`], [`scsi`]): PDU framing
//!   with digests, text negotiation, login with CHAP, CDB decoding and the SCSI data-in pages
//!   and sense data, as pure functions and state machines over bytes — no sockets, no storage —
//!   so they can be fuzzed;
//! - the **server** ([`start`], [`IscsiServerConfig`]): tokio, the CmdSN window,
//!   Data-In/Data-Out/R2T sequencing, task management, unit attentions, the LUN table kept in
//!   [`lunmap`] and the mapping of volume errors to sense data, done once at the edge.
//!
//! Invariants: the target never panics on network input (every decoder returns a typed error);
//! memory per connection is bounded by the command window times the largest transfer, and idle
//! data buffers kept for reuse by a fixed amount for the whole server; a volume is
//! reachable only through the LUN the table gives it.
//!
//! Limits live in [`limits`].
#![forbid(unsafe_code)]

mod buffers;
pub mod chap;
mod command;
mod connection;
mod error;
pub mod keys;
pub mod limits;
pub mod login;
mod lu;
pub mod lunmap;
pub mod node;
pub mod pdu;
pub mod pr;
pub mod scsi;
mod server;
mod target;
pub mod text;
pub mod views;
mod writer;

pub use chap::ChapCredential;
pub use error::{Error, ErrorKind, Result};
pub use login::{Auth, LoginConfig};
pub use server::{start, IscsiServerConfig, IscsiServerHandle};
