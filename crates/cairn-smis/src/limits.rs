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

/// Computed parts of a streamed answer (a batch of objects each) that may wait for a slow
/// client; past them the computation waits.
pub const HTTP_STREAM_PARTS_IN_FLIGHT: usize = 1;

const _: () = assert!(HTTP_AUTHORIZATION_BYTES_MAX < HTTP_HEADER_BUFFER_BYTES_MAX);
const _: () = assert!(HTTP_STREAM_PARTS_IN_FLIGHT >= 1, "a channel holds a part");
const _: () = assert!(2 * CREDENTIAL_BYTES_MAX * 4 / 3 + 16 <= HTTP_AUTHORIZATION_BYTES_MAX);
const _: () = assert!(GENERATED_PASSWORD_CHARS <= CREDENTIAL_BYTES_MAX);
const _: () = assert!(HTTP_HEADER_BUFFER_BYTES_MAX < HTTP_BODY_BYTES_MAX);
const _: () = assert!(HTTP_CONNECTIONS_MAX > 0);

// ---- The array model (ArrayProvider): jobs and cross-pool copies ----

/// Largest number of cross-pool copy jobs running at once; a further CreateElementReplica into
/// another pool answers 4 (Failed) until one ends.
pub const COPY_JOBS_RUNNING_MAX: usize = 8;

/// Longest sleep of a bandwidth-limited copy between two looks at Terminate/Kill.
pub const COPY_PACE_SLEEP_MAX: Duration = Duration::from_millis(50);

/// How long a daemon stopping waits for running copies to end (each ends as Exception and
/// removes its target) before it closes the pools anyway.
pub const COPY_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Largest number of finished jobs kept (enumerable, with GetError) before the oldest is dropped,
/// whatever TimeBeforeRemoval says.
pub const JOBS_FINISHED_MAX: usize = 256;

/// Default TimeBeforeRemoval of a finished job.
pub const JOB_TIME_BEFORE_REMOVAL_DEFAULT: Duration = Duration::from_secs(300);

/// Most finding lines a CheckConsistency answer carries (its FindingCount counts them all).
pub const CHECK_FINDING_LINES_MAX: usize = 4096;

/// Longest finding line in a CheckConsistency answer (bytes; a longer one is clipped). An
/// engine line is far shorter: its tree path is bounded by the tree height and the name length.
pub const CHECK_FINDING_LINE_BYTES_MAX: usize = 1024;

// However damaged the pool, the answer fits what a client reads, XML escaping (at most 6 bytes
// for one) included.
const _: () = assert!(
    CHECK_FINDING_LINES_MAX * CHECK_FINDING_LINE_BYTES_MAX * 6
        <= cairn_cim::limits::RESPONSE_BODY_BYTES_MAX
);

/// Largest jobs state file read at start (bytes).
pub const JOBS_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// How long RequestStateChange(Terminate/Kill) waits for the copy to stop and clean up before it
/// answers 4096 (transition started) instead of 0.
pub const JOB_STOP_WAIT: Duration = Duration::from_secs(30);

/// Characters of the source or default name kept at the start of a generated name
/// (`<base>-<kind>-<6 hex digits>`, at most 64 characters with the longest kind).
pub const GENERATED_NAME_BASE_CHARS_MAX: usize = 40;

/// Attempts at a free generated name when ElementName is NULL.
pub const GENERATED_NAME_ATTEMPTS_MAX: u32 = 64;

const _: () = assert!(COPY_PACE_SLEEP_MAX.as_millis() < JOB_STOP_WAIT.as_millis());
const _: () = assert!(COPY_JOBS_RUNNING_MAX > 0 && JOBS_FINISHED_MAX >= COPY_JOBS_RUNNING_MAX);
const _: () = assert!(GENERATED_NAME_BASE_CHARS_MAX + 16 <= 64);

/// Most volumes the model index notes as changed between two requests; past it the index forgets
/// them and reads every pool again at the next request (see `index`).
pub const CHANGED_VOLUMES_MAX: usize = 65_536;

const _: () = assert!(CHANGED_VOLUMES_MAX > 0);

// ---- Indications (SNIA Indications profile, DSP1054) ----

/// Largest number of CIM_IndicationFilter instances; a further CreateInstance answers
/// CIM_ERR_SERVER_LIMITS_EXCEEDED.
pub const INDICATION_FILTERS_MAX: usize = 128;

/// Largest number of CIM_ListenerDestinationCIMXML instances.
pub const INDICATION_DESTINATIONS_MAX: usize = 32;

/// Largest number of CIM_IndicationSubscription instances.
pub const INDICATION_SUBSCRIPTIONS_MAX: usize = 256;

/// Longest filter query (bytes) and most tokens in one.
pub const INDICATION_QUERY_BYTES_MAX: usize = 4096;
pub const INDICATION_QUERY_TOKENS_MAX: usize = 512;

/// Deepest nesting of parentheses and NOT in a filter query.
pub const INDICATION_QUERY_DEPTH_MAX: usize = 16;

/// Longest name, destination URL or other string property of a subscription instance (bytes).
pub const INDICATION_STRING_BYTES_MAX: usize = 1024;

/// Largest subscriptions state file read at start (bytes).
pub const INDICATIONS_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Change events waiting to be turned into indications; past it an event is dropped and counted
/// (listeners see the gap in SequenceNumber).
pub const INDICATION_EVENTS_QUEUED_MAX: usize = 4096;

/// Indications waiting for one destination; past it the newest is dropped and counted.
pub const INDICATION_DESTINATION_QUEUED_MAX: usize = 1024;

/// How long one delivery attempt (connect, TLS, request, answer) may take.
pub const INDICATION_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest listener answer read (bytes).
pub const INDICATION_RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// Shortest time between two RemainingManagedSpace modifications of one pool.
pub const INDICATION_POOL_SPACE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the indication producer reads the pools with no change event (data written by
/// hosts, a pool failing or losing its cluster change no volume, so send none).
pub const INDICATION_POOL_POLL_INTERVAL: Duration = Duration::from_secs(2);
const _: () = assert!(
    INDICATION_POOL_POLL_INTERVAL.as_millis() >= INDICATION_POOL_SPACE_INTERVAL.as_millis()
);

/// LowSpaceWarningThreshold of a pool no client has set it on (percent).
pub const LOW_SPACE_WARNING_PERCENT_DEFAULT: u16 = 10;

/// Defaults of the indication service (DSP1054): DeliveryRetryAttempts, DeliveryRetryInterval,
/// SubscriptionRemovalTimeInterval.
pub const INDICATION_RETRY_ATTEMPTS_DEFAULT: u16 = 3;
pub const INDICATION_RETRY_INTERVAL_DEFAULT: Duration = Duration::from_secs(20);
pub const INDICATION_REMOVAL_INTERVAL_DEFAULT: Duration = Duration::from_secs(2592000);

const _: () = assert!(INDICATION_FILTERS_MAX > 0 && INDICATION_DESTINATIONS_MAX > 0);
const _: () = assert!(INDICATION_SUBSCRIPTIONS_MAX >= INDICATION_DESTINATIONS_MAX);
const _: () = assert!(INDICATION_QUERY_TOKENS_MAX <= INDICATION_QUERY_BYTES_MAX);
const _: () = assert!(INDICATION_DESTINATION_QUEUED_MAX <= INDICATION_EVENTS_QUEUED_MAX);
