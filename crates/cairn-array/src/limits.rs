//! Every limit of cairn-array in one place, with the relations between them asserted.
//!
//! Units are last in names.

/// Bytes read from the source and written to the target per step of a copy into another pool.
/// Progress and cancellation are looked at between steps.
pub const COPY_CHUNK_BYTES: u64 = 1024 * 1024;

/// Bytes of a volume's address space asked about in one mapping query while measuring or copying it.
pub const COPY_STATUS_WINDOW_BYTES: u64 = 1024 * 1024 * 1024;

/// Largest replica record a backend stores with a volume (bytes, encoded).
pub const REPLICA_RECORD_BYTES_MAX: usize = 64;

/// Largest number of change-event subscribers of one backend.
pub const LISTENERS_MAX: usize = 16;

const _: () = assert!(LISTENERS_MAX > 0);
const _: () = assert!(COPY_CHUNK_BYTES % 4096 == 0 && COPY_CHUNK_BYTES > 0);
const _: () = assert!(COPY_STATUS_WINDOW_BYTES % COPY_CHUNK_BYTES == 0);
const _: () = assert!(COPY_CHUNK_BYTES <= usize::MAX as u64);
