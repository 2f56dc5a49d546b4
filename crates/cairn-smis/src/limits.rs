//! Every limit of cairn-smis in one place, with the relations between them asserted at compile time.
//!
//! Units are last in names. The HTTP server reads these as defaults; [`crate::http::SmisServerConfig`]
//! may lower or raise the per-daemon ones (body size, connection count) but the header limits are fixed.

use std::time::Duration;

/// Default largest request body accepted (bytes); larger requests get `413 Payload Too Large`.
/// The largest real client request seen (a CreateElementReplica from pywbem) is under 4 KiB; class
/// enumerations are small requests with large answers, so 4 MiB leaves room for any batch a client sends.
pub const HTTP_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Largest total size of the request line plus headers hyper buffers for one request (bytes).
pub const HTTP_HEADER_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// Largest number of headers in one request.
pub const HTTP_HEADER_COUNT_MAX: usize = 64;

/// Largest `Authorization` header value inspected (bytes); longer values are refused unparsed.
pub const HTTP_AUTHORIZATION_BYTES_MAX: usize = 4 * 1024;

/// Largest user name or password accepted from configuration, environment or the credentials file (bytes).
pub const CREDENTIAL_BYTES_MAX: usize = 1024;

/// Length of a generated password (alphanumeric characters, ~143 bits of entropy).
pub const GENERATED_PASSWORD_CHARS: usize = 24;

/// Largest credentials, certificate or key file read from the data directory (bytes).
pub const DATA_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Default largest number of connections open at once per daemon (HTTP and HTTPS together).
/// Past it the server stops accepting until a connection closes.
pub const HTTP_CONNECTIONS_MAX: usize = 256;

/// Time a client has to send the complete request headers (also bounds an idle keep-alive connection).
pub const HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a client has to send a complete request body once its headers are in.
pub const HTTP_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Time a client has to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Time a graceful shutdown waits for requests in flight before it drops their connections.
pub const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

const _: () = assert!(HTTP_AUTHORIZATION_BYTES_MAX < HTTP_HEADER_BUFFER_BYTES_MAX);
const _: () = assert!(2 * CREDENTIAL_BYTES_MAX * 4 / 3 + 16 <= HTTP_AUTHORIZATION_BYTES_MAX);
const _: () = assert!(GENERATED_PASSWORD_CHARS <= CREDENTIAL_BYTES_MAX);
const _: () = assert!(HTTP_HEADER_BUFFER_BYTES_MAX < HTTP_BODY_BYTES_MAX);
const _: () = assert!(HTTP_CONNECTIONS_MAX > 0);
