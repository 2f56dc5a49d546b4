//! One NBD connection: handshake (with optional STARTTLS), then pipelined transmission.
//!
//! Invariants:
//! - Requests are read in order; each is charged against the connection's and the server's
//!   in-flight byte budgets (and the connection's request count) *before* its payload is read, and
//!   the charge is returned only once its reply has been written, so memory stays bounded however
//!   fast a client sends.
//! - Requests run concurrently on tokio's blocking pool; replies go out in completion order, each
//!   written whole by the single writer task.
//! - On NBD_CMD_DISC, end of stream or server shutdown, the connection stops reading, completes
//!   every request it already accepted, then closes. A bad request magic closes at once.
//! - Engine errors are mapped to errno values here, once.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::exports::{Exports, Run, Volume, VolumeError, VolumeErrorKind};
use crate::handshake::{Catalog, ExportInfo, Handshake, Negotiated, Step, TlsMode};
use crate::proto::{EINVAL, EIO, ENOSPC, EPERM};
use crate::request::{check, decode_header, Action, Command, RequestHeader, REQUEST_HEADER_BYTES};
use crate::server::Shared;
use crate::{limits, reply};

/// The handshake's view of the exports; remembers the volume opened by GO/EXPORT_NAME.
struct SessionCatalog {
    exports: Arc<dyn Exports>,
    opened: Option<Arc<dyn Volume>>,
}

impl Catalog for SessionCatalog {
    fn list(&self) -> Vec<String> {
        self.exports.list()
    }
    fn info(&self, name: &str) -> Option<ExportInfo> {
        self.exports.info(name)
    }
    fn open(&mut self, name: &str) -> Option<ExportInfo> {
        let (info, volume) = self.exports.open(name)?;
        self.opened = Some(volume);
        Some(info)
    }
}

enum Outcome {
    StartTls,
    Abort,
    Transmission(Negotiated),
}

type ConnResult<T> = std::result::Result<T, String>;

/// Serves one accepted socket until it closes or the server shuts down.
pub(crate) async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    match run(socket, &shared, shutdown).await {
        Ok(()) => tracing::debug!(%peer, "NBD connection closed"),
        Err(e) => tracing::info!(%peer, error = %e, "NBD connection ended"),
    }
}

/// Runs one handshake phase (plain, TLS setup, or under TLS), bounded by the handshake timeout
/// and abandoned when the server shuts down. Transmission is not guarded this way: it drains
/// its accepted requests on shutdown instead.
async fn guarded<T>(
    phase: impl std::future::Future<Output = ConnResult<T>>,
    shutdown: &mut watch::Receiver<bool>,
) -> ConnResult<T> {
    let deadline = Duration::from_secs(limits::HANDSHAKE_TIMEOUT_SECS);
    tokio::select! {
        r = tokio::time::timeout(deadline, phase) => r.map_err(|_| "handshake timed out".to_string())?,
        _ = shutdown.changed() => Err("server shutting down during the handshake".to_string()),
    }
}

async fn run(
    mut socket: TcpStream,
    shared: &Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> ConnResult<()> {
    let mode = if shared.tls.is_some() {
        TlsMode::Required
    } else {
        TlsMode::Off
    };
    let mut hs = Handshake::new(mode);
    let mut catalog = SessionCatalog {
        exports: shared.exports.clone(),
        opened: None,
    };
    let mut input = BytesMut::with_capacity(8 << 10);
    let mut out = BytesMut::new();
    Handshake::greeting(&mut out);
    let plain = negotiate(&mut socket, &mut hs, &mut catalog, &mut input, &mut out);
    match guarded(plain, &mut shutdown).await? {
        Outcome::Abort => return Ok(()),
        Outcome::Transmission(n) => {
            return transmit(socket, n, catalog, input, shared, shutdown).await
        }
        Outcome::StartTls => {}
    }
    if !input.is_empty() {
        return Err("data before the TLS handshake".into());
    }
    let Some(tls) = shared.tls.clone() else {
        return Err("STARTTLS accepted without a TLS configuration".into());
    };
    let accept = async {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        acceptor
            .accept(socket)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))
    };
    let mut stream = guarded(accept, &mut shutdown).await?;
    hs.tls_started();
    let secure = negotiate(&mut stream, &mut hs, &mut catalog, &mut input, &mut out);
    match guarded(secure, &mut shutdown).await? {
        Outcome::Abort => {
            let _ = stream.shutdown().await;
            Ok(())
        }
        Outcome::Transmission(n) => transmit(stream, n, catalog, input, shared, shutdown).await,
        Outcome::StartTls => Err("second STARTTLS".into()),
    }
}

/// Runs option haggling until it ends; `out` holds the greeting (or nothing) on entry.
async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    hs: &mut Handshake,
    catalog: &mut SessionCatalog,
    input: &mut BytesMut,
    out: &mut BytesMut,
) -> ConnResult<Outcome> {
    loop {
        let step = hs.step(input, catalog, out).map_err(|e| e.to_string())?;
        if !matches!(step, Step::Continue) {
            stream
                .write_all(out)
                .await
                .map_err(|e| format!("write: {e}"))?;
            stream.flush().await.map_err(|e| format!("write: {e}"))?;
            out.clear();
        }
        match step {
            Step::Continue => {}
            Step::NeedMore => {
                input.reserve(limits::OPTION_DATA_BYTES_MAX as usize);
                let n = stream
                    .read_buf(input)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("client closed during the handshake".into());
                }
            }
            Step::StartTls => return Ok(Outcome::StartTls),
            Step::Abort => return Ok(Outcome::Abort),
            Step::Transmission(n) => return Ok(Outcome::Transmission(n)),
        }
    }
}

/// A reply ready for the writer, with the in-flight charge it releases once written.
struct Reply {
    head: BytesMut,
    data: Option<Vec<u8>>,
    _charge: Charge,
}

/// In-flight budget held by one request until its reply is written.
struct Charge {
    _request: OwnedSemaphorePermit,
    _connection_bytes: OwnedSemaphorePermit,
    _daemon_bytes: OwnedSemaphorePermit,
}

struct Budget {
    requests: Arc<Semaphore>,
    connection_bytes: Arc<Semaphore>,
    daemon_bytes: Arc<Semaphore>,
}

impl Budget {
    async fn charge(&self, bytes: u64) -> Option<Charge> {
        // Every charge is at most the connection budget, itself within u32 (const-asserted).
        let bytes = bytes.min(limits::CONNECTION_IN_FLIGHT_BYTES_MAX) as u32;
        Some(Charge {
            _request: self.requests.clone().acquire_owned().await.ok()?,
            _connection_bytes: self
                .connection_bytes
                .clone()
                .acquire_many_owned(bytes)
                .await
                .ok()?,
            _daemon_bytes: self
                .daemon_bytes
                .clone()
                .acquire_many_owned(bytes)
                .await
                .ok()?,
        })
    }
}

fn charge_bytes(h: &RequestHeader) -> u64 {
    let data = match h.command {
        Command::Read | Command::Write if h.length <= limits::PAYLOAD_BYTES_MAX => {
            u64::from(h.length)
        }
        Command::BlockStatus => (limits::BLOCK_STATUS_DESCRIPTORS_MAX * 8) as u64,
        _ => 0,
    };
    data + limits::REQUEST_CHARGE_BYTES
}

struct Request {
    header: RequestHeader,
    payload: Option<Bytes>,
    charge: Charge,
}

async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    budget: &Budget,
) -> ConnResult<Option<Request>> {
    let mut head = [0u8; REQUEST_HEADER_BYTES];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("read: {e}")),
    }
    let header = decode_header(&head).map_err(|e| e.to_string())?;
    let charge = budget
        .charge(charge_bytes(&header))
        .await
        .ok_or("in-flight budget closed")?;
    let payload = match header.payload_bytes() {
        0 => None,
        _ if header.payload_oversized() => {
            let len = u64::from(header.payload_bytes());
            let skipped = tokio::io::copy(&mut reader.take(len), &mut tokio::io::sink()).await;
            if skipped.map_err(|e| format!("read: {e}"))? != len {
                return Ok(None);
            }
            None
        }
        len => {
            let mut buf = vec![0u8; len as usize];
            reader
                .read_exact(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            Some(Bytes::from(buf))
        }
    };
    Ok(Some(Request {
        header,
        payload,
        charge,
    }))
}

async fn transmit<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    negotiated: Negotiated,
    catalog: SessionCatalog,
    leftover: BytesMut,
    shared: &Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> ConnResult<()> {
    let Some(volume) = catalog.opened else {
        return Err("negotiation ended without an open export".into());
    };
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(256 << 10, Cursor::new(leftover).chain(read_half));
    let (tx, rx) = mpsc::channel::<Reply>(limits::REPLY_QUEUE_DEPTH);
    let writer = tokio::spawn(write_replies(write_half, rx));
    let budget = Budget {
        requests: Arc::new(Semaphore::new(limits::CONNECTION_REQUESTS_MAX as usize)),
        connection_bytes: Arc::new(Semaphore::new(
            limits::CONNECTION_IN_FLIGHT_BYTES_MAX as usize,
        )),
        daemon_bytes: shared.daemon_bytes.clone(),
    };
    let ctx = Arc::new(RequestCtx {
        volume,
        negotiated,
        tx,
    });
    let mut running = JoinSet::new();
    let result = loop {
        let next = tokio::select! {
            r = read_request(&mut reader, &budget) => r,
            _ = shutdown.changed() => break Ok(()),
            _ = ctx.tx.closed() => break Ok(()),
        };
        let request = match next {
            Ok(Some(r)) => r,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        if request.header.command == Command::Disc {
            break Ok(());
        }
        running.spawn(ctx.clone().execute(request));
        while running.try_join_next().is_some() {}
    };
    // Finish what was accepted; a client that stops reading replies cannot hold this up forever.
    let writer_abort = writer.abort_handle();
    let drain = async {
        while running.join_next().await.is_some() {}
        drop(ctx);
        writer.await
    };
    let deadline = Duration::from_secs(limits::DRAIN_TIMEOUT_SECS);
    match tokio::time::timeout(deadline, drain).await {
        Ok(Ok(Ok(()))) => result,
        Ok(Ok(Err(e))) => result.and(Err(e)),
        Ok(Err(e)) => result.and(Err(format!("writer task failed: {e}"))),
        Err(_) => {
            writer_abort.abort();
            result.and(Err("replies not drained in time".into()))
        }
    }
}

async fn write_replies<W: AsyncWrite + Unpin>(
    writer: W,
    mut rx: mpsc::Receiver<Reply>,
) -> ConnResult<()> {
    let mut writer = BufWriter::with_capacity(64 << 10, writer);
    let stall = Duration::from_secs(limits::WRITE_STALL_TIMEOUT_SECS);
    while let Some(reply) = rx.recv().await {
        let io = async {
            writer.write_all(&reply.head).await?;
            if let Some(data) = &reply.data {
                writer.write_all(data).await?;
            }
            if rx.is_empty() {
                writer.flush().await?;
            }
            std::io::Result::Ok(())
        };
        let failure = match tokio::time::timeout(stall, io).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => format!("write: {e}"),
            Err(_) => "client stopped reading replies".to_string(),
        };
        // Nothing more can be sent: refuse further replies (the reader sees the channel close
        // and stops), and drop the queued ones so their in-flight budget is released.
        rx.close();
        while rx.recv().await.is_some() {}
        return Err(failure);
    }
    let _ = writer.shutdown().await;
    Ok(())
}

/// What a request task needs.
struct RequestCtx {
    volume: Arc<dyn Volume>,
    negotiated: Negotiated,
    tx: mpsc::Sender<Reply>,
}

/// The outcome of one request on the engine.
enum Done {
    Empty,
    Data(Vec<u8>),
    Status(Vec<Run>),
}

impl RequestCtx {
    async fn execute(self: Arc<Self>, request: Request) {
        let Request {
            header,
            payload,
            charge,
        } = request;
        let mut head = BytesMut::with_capacity(32);
        let structured_chunk = self.negotiated.structured_replies
            && matches!(header.command, Command::Read | Command::BlockStatus);
        let action = match (check(&header, &self.negotiated), &payload) {
            (Ok(Action::Write { .. }), None) => Err(EINVAL),
            (result, _) => result,
        };
        let outcome = match action {
            Err(errno) => Err((errno, "request rejected".to_string())),
            Ok(action) => {
                let volume = self.volume.clone();
                let export = &self.negotiated.export;
                let geometry = (
                    u64::from(export.block_size_min_bytes.max(1)),
                    export.size_bytes,
                );
                let job = tokio::task::spawn_blocking(move || {
                    perform(volume.as_ref(), geometry, action, payload)
                });
                match job.await {
                    Ok(r) => r
                        .map(|done| (action, done))
                        .map_err(|e| (errno_for(action, &e), e.message)),
                    Err(e) => Err((EIO, format!("request task failed: {e}"))),
                }
            }
        };
        let data = match outcome {
            Err((errno, message)) => {
                if errno == EIO {
                    tracing::warn!(cookie = header.cookie, error = %message, "NBD request failed");
                } else {
                    tracing::debug!(cookie = header.cookie, errno, error = %message, "NBD request refused");
                }
                reply::error(&mut head, structured_chunk, header.cookie, errno, &message);
                None
            }
            Ok((_, Done::Empty)) => {
                reply::simple(&mut head, header.cookie, 0);
                None
            }
            Ok((Action::Read { offset, .. }, Done::Data(data))) => {
                let structured = self.negotiated.structured_replies;
                reply::read_data_header(
                    &mut head,
                    structured,
                    header.cookie,
                    offset,
                    data.len() as u32,
                );
                Some(data)
            }
            Ok((
                Action::BlockStatus {
                    offset,
                    len,
                    req_one,
                    context_id,
                },
                Done::Status(runs),
            )) => {
                let runs = runs.into_iter().map(|r| (r.offset, r.len, r.mapped));
                let descriptors = reply::allocation_descriptors(runs, offset, len, req_one);
                reply::block_status(&mut head, header.cookie, context_id, &descriptors);
                None
            }
            Ok(_) => {
                reply::error(
                    &mut head,
                    structured_chunk,
                    header.cookie,
                    EIO,
                    "internal mismatch",
                );
                None
            }
        };
        // A send error means the writer is gone (client disconnected): nothing left to do.
        let _ = self
            .tx
            .send(Reply {
                head,
                data,
                _charge: charge,
            })
            .await;
    }
}

/// Runs one validated request against the volume (on a blocking thread); `(block, size)` is
/// the export's minimum block size and size in bytes.
fn perform(
    volume: &dyn Volume,
    (block, size): (u64, u64),
    action: Action,
    payload: Option<Bytes>,
) -> Result<Done, VolumeError> {
    match action {
        Action::Read { offset, len } => {
            let mut buf = vec![0u8; len as usize];
            volume.read(offset, &mut buf)?;
            Ok(Done::Data(buf))
        }
        Action::Write { offset, fua, .. } => {
            let data = payload.unwrap_or_default();
            volume.write(offset, &data)?;
            flush_if(volume, fua)
        }
        Action::Flush => flush_if(volume, true),
        Action::Trim { offset, len, fua } => {
            volume.trim(offset, u64::from(len))?;
            flush_if(volume, fua)
        }
        Action::WriteZeroes {
            offset,
            len,
            fua,
            no_hole,
        } => {
            if no_hole {
                write_zero_data(volume, offset, u64::from(len))?;
            } else {
                volume.write_zeroes(offset, u64::from(len))?;
            }
            flush_if(volume, fua)
        }
        Action::BlockStatus { offset, len, .. } => {
            // The engine is asked for whole blocks; the reply is clipped back to the request.
            let start = offset - offset % block;
            let end = (offset + u64::from(len)).next_multiple_of(block).min(size);
            Ok(Done::Status(volume.block_status(start, end - start)?))
        }
        Action::Disconnect => Ok(Done::Empty),
    }
}

fn flush_if(volume: &dyn Volume, fua: bool) -> Result<Done, VolumeError> {
    if fua {
        volume.flush()?;
    }
    Ok(Done::Empty)
}

/// WRITE_ZEROES with NO_HOLE: the range must end up allocated, so zeroes are written as data.
fn write_zero_data(volume: &dyn Volume, offset: u64, len: u64) -> Result<(), VolumeError> {
    let zeroes = vec![0u8; limits::ZERO_BUFFER_BYTES.min(len as usize)];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeroes.len() as u64);
        volume.write(offset + done, &zeroes[..n as usize])?;
        done += n;
    }
    Ok(())
}

/// Maps a volume failure to the errno the protocol prescribes for this command.
fn errno_for(action: Action, e: &VolumeError) -> u32 {
    let writes_data = matches!(action, Action::Write { .. } | Action::WriteZeroes { .. });
    match e.kind {
        VolumeErrorKind::NoSpace => ENOSPC,
        VolumeErrorKind::ReadOnly => EPERM,
        VolumeErrorKind::OutOfRange if writes_data => ENOSPC,
        VolumeErrorKind::OutOfRange | VolumeErrorKind::Invalid => EINVAL,
        VolumeErrorKind::Io => EIO,
    }
}
