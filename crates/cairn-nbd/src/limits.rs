//! Every size and count limit of the NBD codec and server, in one place.
//!
//! Invariants (checked at compile time below): the largest READ/WRITE payload is the export
//! layer's largest request; it fits both in one connection's in-flight budget and in the
//! daemon-wide budget, so a single request can always make progress; the block sizes advertised
//! are powers of two with min <= preferred <= max.

/// Smallest block size ever advertised (a 512-byte logical-block volume).
pub const BLOCK_SIZE_MIN_BYTES: u32 = 512;
/// Preferred I/O size advertised to clients (the engine's block).
pub const BLOCK_SIZE_PREFERRED_BYTES: u32 = 4096;
/// Largest READ/WRITE payload accepted (NBD_INFO_BLOCK_SIZE maximum): the export layer's
/// largest request.
pub const PAYLOAD_BYTES_MAX: u32 = cairn_export::limits::REQUEST_BYTES_MAX;
/// Largest option payload read during the handshake; longer options are skipped with ERR_TOO_BIG.
pub const OPTION_DATA_BYTES_MAX: u32 = 64 << 10;
/// Longest export name or metadata-context query accepted (the protocol's string limit).
pub const NAME_BYTES_MAX: u32 = 4096;
/// Most options one connection may send before it is dropped (stops option-haggling loops).
pub const OPTIONS_PER_CONNECTION_MAX: u32 = 1024;
/// Most `base:allocation` descriptors in one BLOCK_STATUS reply; the rest of the range is left for
/// the client to ask again.
pub const BLOCK_STATUS_DESCRIPTORS_MAX: usize = 64 << 10;
/// Request and reply bytes one connection may have in flight (payloads plus a fixed charge).
pub const CONNECTION_IN_FLIGHT_BYTES_MAX: u64 = 128 << 20;
/// Requests one connection may have in flight, whatever their size.
pub const CONNECTION_REQUESTS_MAX: u32 = 256;
/// Request and reply bytes the whole daemon may have in flight.
pub const DAEMON_IN_FLIGHT_BYTES_MAX: u64 = 1 << 30;
/// Fixed in-flight charge of a request without a data payload (headers, block-status replies).
pub const REQUEST_CHARGE_BYTES: u64 = 4096;
/// Most NBD connections served at once; further connections are closed right after accept.
pub const CONNECTIONS_MAX: usize = 1024;
/// Time a client has to finish the handshake.
pub const HANDSHAKE_TIMEOUT_SECS: u64 = 60;
/// Time a closing connection has to finish its accepted requests and write their replies.
pub const DRAIN_TIMEOUT_SECS: u64 = 30;
/// Time one reply may take to be written before the client is deemed stuck and dropped (so a
/// client that stops reading cannot pin the daemon-wide in-flight budget).
pub const WRITE_STALL_TIMEOUT_SECS: u64 = 60;
/// Initial capacity of a connection's handshake input buffer (it grows to one option at most).
pub const HANDSHAKE_INPUT_BYTES: usize = 8 << 10;
/// Read buffer of a connection in transmission.
pub const READ_BUFFER_BYTES: usize = 256 << 10;
/// Bytes of free aligned buffers one connection keeps for reuse (eight 1 MiB or 4096 4 KiB ones
/// before any is freed).
pub const BUFFERS_KEPT_BYTES_MAX: usize = 16 << 20;
/// Most replies the writer sends in one vectored write (two slices each: head and data, well
/// within the kernel's 1024 per call).
pub const REPLY_BATCH_MAX: usize = 64;
/// Initial capacity of a reply's head buffer: a structured read chunk header with its offset is
/// 28 bytes; an error message or block-status descriptors grow it.
pub const REPLY_HEADER_BYTES: usize = 32;
/// Depth of the queue of replies waiting for the connection's writer: every request the
/// connection admits, so that handing a reply over never waits (a backend's completion thread
/// must not block).
pub const REPLY_QUEUE_DEPTH: usize = CONNECTION_REQUESTS_MAX as usize;

const _: () = assert!(BLOCK_SIZE_MIN_BYTES.is_power_of_two());
const _: () = assert!(BLOCK_SIZE_PREFERRED_BYTES.is_power_of_two());
const _: () = assert!(PAYLOAD_BYTES_MAX.is_power_of_two());
const _: () = assert!(BLOCK_SIZE_MIN_BYTES <= BLOCK_SIZE_PREFERRED_BYTES);
const _: () = assert!(BLOCK_SIZE_PREFERRED_BYTES <= PAYLOAD_BYTES_MAX);
const _: () = assert!(PAYLOAD_BYTES_MAX >= 32 << 20);
const _: () =
    assert!(PAYLOAD_BYTES_MAX as u64 + REQUEST_CHARGE_BYTES <= CONNECTION_IN_FLIGHT_BYTES_MAX);
const _: () = assert!(CONNECTION_IN_FLIGHT_BYTES_MAX <= DAEMON_IN_FLIGHT_BYTES_MAX);
// Semaphore permits are u32: every single charge must fit.
const _: () = assert!(CONNECTION_IN_FLIGHT_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(DAEMON_IN_FLIGHT_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(NAME_BYTES_MAX < OPTION_DATA_BYTES_MAX);
const _: () =
    assert!(BLOCK_STATUS_DESCRIPTORS_MAX * 8 + 64 <= CONNECTION_IN_FLIGHT_BYTES_MAX as usize);
const _: () = assert!(PAYLOAD_BYTES_MAX <= cairn_export::limits::REQUEST_BYTES_MAX);
const _: () = assert!(HANDSHAKE_INPUT_BYTES <= OPTION_DATA_BYTES_MAX as usize);
const _: () = assert!(READ_BUFFER_BYTES as u64 <= CONNECTION_IN_FLIGHT_BYTES_MAX);
const _: () = assert!(REPLY_HEADER_BYTES >= 28);
const _: () = assert!(REPLY_BATCH_MAX * 2 <= 1024);
const _: () = assert!(REPLY_BATCH_MAX <= REPLY_QUEUE_DEPTH);
const _: () = assert!(REPLY_QUEUE_DEPTH >= CONNECTION_REQUESTS_MAX as usize);
