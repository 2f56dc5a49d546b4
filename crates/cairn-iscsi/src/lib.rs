//! Cairn's iSCSI target (RFC 7143, error recovery level 0): every exported volume and snapshot
//! as a SCSI logical unit (SPC-4 / SBC-3) of one target node per array.
//!
//! Two halves, with dependencies pointing one way:
//! - the **codec** ([`pdu`], [`text`], [`keys`], [`chap`], [`login`], [`scsi`]): PDU framing
//!   with digests, text negotiation, login with CHAP, CDB decoding and the SCSI data-in pages
//!   and sense data, as pure functions and state machines over bytes — no sockets, no storage —
//!   so they can be fuzzed;
//! - the **server**: tokio, the CmdSN window, Data-In/Data-Out/R2T sequencing, task management,
//!   unit attentions and the mapping of volume errors to sense data, done once at the edge.
//!
//! Limits live in [`limits`].
#![forbid(unsafe_code)]

pub mod chap;
mod error;
pub mod keys;
pub mod limits;
pub mod login;
pub mod pdu;
pub mod scsi;
pub mod text;

pub use error::{Error, ErrorKind, Result};
