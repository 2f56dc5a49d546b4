//! A volume as a host sees it: the one export layer under every data protocol.
//!
//! This crate owns the traits a data protocol (NBD today, iSCSI next) is written against, and
//! their implementation over Cairn's engine (`impl Exports for cairn_engine::Storage`: every
//! non-hidden volume and snapshot, named after the volume):
//! - [`Exports`]: the set of volumes a host may open, listed and looked up by name, and opened
//!   into a [`Volume`]; a [`Listing`] says whether a backend could not be reached;
//! - [`Volume`]: an opened volume serving read, write (with FUA), flush, trim, write-zeroes and
//!   block status, and telling its size, read-only state, logical block size, 128-bit id and
//!   NAA identity; optionally an [`AsyncVolume`] side that completes [`Io`] requests by
//!   calling back, for backends that complete by themselves (Ceph RBD);
//! - [`Error`]: the one error type, whose [`ErrorKind`] a protocol maps to its own codes (errno,
//!   SCSI sense) once, at its edge;
//! - [`access`]: the host access model (masking views of initiator, target-port and device
//!   groups) and the [`access::HostAccess`] trait through which management changes it;
//! - [`naa_name`] / [`naa_designator`]: the volume's SCSI NAA identity, the same string SMI-S
//!   reports as `StorageVolume.Name`, so a volume has one identity on every protocol;
//! - [`AlignedBuf`]: memory aligned for O_DIRECT (re-exported from the I/O layer), which a
//!   protocol reads write payloads and read replies into, so that the engine hands it to the
//!   device as it is, without a bounce copy;
//! - [`Registry`]: the daemon's one registry of volume names (unique across every pool of every
//!   backend) and leases. It is defined beside the engine's `Storage` (the lowest layer every
//!   backend and both the management and the data path reach, which keeps it exact for engine
//!   pools) and re-exported here, so a data protocol or another backend (Ceph RBD) uses it without
//!   naming the engine.
//!
//! Invariants:
//! - An opened [`Volume`] holds a lease on its volume until it is dropped: the volume cannot be
//!   deleted under a host.
//! - A request larger than [`limits::REQUEST_BYTES_MAX`] is refused with
//!   [`ErrorKind::InvalidArgument`]; a protocol advertises at most that limit.
//! - Data protocols depend on this crate, never on the engine, the management crates or on one
//!   another.
#![forbid(unsafe_code)]

pub mod access;
mod engine;
mod error;
pub mod limits;
mod naa;
#[cfg(test)]
mod suite;
mod volume;

pub use cairn_engine::registry::{Deletion, Lease, NameClaim, Registry};
pub use cairn_io::AlignedBuf;
pub use error::{Error, ErrorKind, Result};
pub use naa::{naa_designator, naa_name, NAA_DESIGNATOR_BYTES};
pub use volume::{
    batches, AsyncVolume, Declined, Exports, Io, IoDone, Listing, OnDone, Run, Volume, VolumeInfo,
    Zeroing,
};
