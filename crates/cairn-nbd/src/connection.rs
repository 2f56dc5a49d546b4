//! One NBD connection: handshake (with optional STARTTLS), then pipelined transmission.
//!
//! Invariants:
//! - Requests are read in order; each is charged against the connection's and the server's
//!   in-flight byte budgets (and the connection's request count) *before* its payload is read, and
//!   the charge is returned only once its reply has been written, so memory stays bounded however
//!   fast a client sends.
//! - A READ, WRITE without FUA, FLUSH, and TRIM or WRITE_ZEROES without FUA on a volume that
//!   completes asynchronously ([`Volume::asynchronous`], Ceph RBD) is checked and put in flight
//!   from the reader task itself; the volume's completion (on its backend's thread) encodes the
//!   reply and hands it to the writer, with no blocking thread in between. Every other request,
//!   and one the volume declines, runs on tokio's blocking pool, where its reply is also encoded
//!   and handed to the writer: one thread hop per request and no task of its own. Replies go out
//!   in completion order, each whole; the writer sends every reply queued at the time in one
//!   vectored write.
//! - A READ, or a WRITE without FUA, on a volume without an asynchronous side is held back
//!   while the next request can be read without waiting (already received, its budget free);
//!   the requests held go to the blocking pool, reads and writes apart, in jobs of
//!   [`cairn_export::limits::BATCH_REQUESTS_MAX`], one [`Volume::read_many`] or [`Volume::write_many`] each (on a
//!   Cairn pool one lookup or planning pass and one device batch), before the reader waits for
//!   anything: for the socket, for budget, or at the end of transmission. A held request has
//!   no reply yet, so nothing after it (a FLUSH included) is owed its effect.
//! - Handing a reply to the writer never blocks (a backend's completion thread must not wait):
//!   the queue is as deep as the connection's request budget, and every reply holds its
//!   request's budget until written, so the queue is never full.
//! - Write payloads are read into, and read replies produced in, [`AlignedBuf`]s, which the
//!   export layer passes down to an O_DIRECT device without a bounce copy; the connection reuses
//!   them ([`Buffers`]).
//! - On NBD_CMD_DISC, end of stream or server shutdown, the connection stops reading, completes
//!   every request it already accepted, then closes. A bad request magic closes at once.
//! - Export-layer errors are mapped to errno values here, once ([`errno_for`]).

use std::future::Future;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use std::io::IoSlice;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use cairn_export::{
    batches, AlignedBuf, Declined, Exports, Io, IoDone, Run, Volume, VolumeInfo, Zeroing,
};

use crate::buffers::Buffers;
use crate::error::{Error, ErrorKind, Result};
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

/// The handshake's view of an export.
fn export_info(v: &VolumeInfo) -> ExportInfo {
    ExportInfo {
        name: v.name.clone(),
        size_bytes: v.size_bytes,
        read_only: v.read_only,
        block_size_min_bytes: v.logical_block_size,
    }
}

/// An export that cannot be listed, described or opened is unknown to the client; a failure
/// other than "not found" is worth a log line.
fn known<T>(what: &str, name: &str, r: cairn_export::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) if e.kind() == cairn_export::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(export = name, error = %e, "NBD {what} failed");
            None
        }
    }
}

impl Catalog for SessionCatalog {
    fn list(&self) -> Vec<String> {
        let all = known("list", "", self.exports.list()).unwrap_or_default();
        all.into_iter().map(|v| v.name).collect()
    }
    fn info(&self, name: &str) -> Option<ExportInfo> {
        known("info", name, self.exports.info(name)).map(|v| export_info(&v))
    }
    fn open(&mut self, name: &str) -> Option<ExportInfo> {
        let volume = known("open", name, self.exports.open(name))?;
        let info = export_info(&volume.info());
        self.opened = Some(volume);
        Some(info)
    }
}

enum Outcome {
    StartTls,
    Abort,
    Transmission(Negotiated),
}

fn lost(context: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Connection, context).with_source(e)
}

fn ended(context: &str) -> Error {
    Error::new(ErrorKind::Connection, context)
}

/// The error with its chain of sources, for the log.
fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Serves one accepted socket until it closes or the server shuts down.
pub(crate) async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    match run(socket, &shared, shutdown).await {
        Ok(()) => tracing::debug!(%peer, "NBD connection closed"),
        Err(e) => tracing::info!(%peer, error = %chain(&e), "NBD connection ended"),
    }
}

/// Runs one handshake phase (plain, TLS setup, or under TLS), bounded by the handshake timeout
/// and abandoned when the server shuts down. Transmission is not guarded this way: it drains
/// its accepted requests on shutdown instead.
async fn guarded<T>(
    phase: impl std::future::Future<Output = Result<T>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<T> {
    let deadline = Duration::from_secs(limits::HANDSHAKE_TIMEOUT_SECS);
    tokio::select! {
        r = tokio::time::timeout(deadline, phase) => r.map_err(|_| ended("Handshake timed out"))?,
        _ = shutdown.changed() => Err(ended("Server shutting down during the handshake")),
    }
}

async fn run(
    mut socket: TcpStream,
    shared: &Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
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
    let mut input = BytesMut::with_capacity(limits::HANDSHAKE_INPUT_BYTES);
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
        return Err(Error::new(
            ErrorKind::Handshake,
            "Data arrived before the TLS handshake",
        ));
    }
    let Some(tls) = shared.tls.clone() else {
        return Err(ended("STARTTLS accepted without a TLS configuration"));
    };
    let accept = async {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        acceptor
            .accept(socket)
            .await
            .map_err(lost("TLS handshake failed"))
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
        Outcome::StartTls => Err(Error::new(ErrorKind::Handshake, "Second STARTTLS")),
    }
}

/// Runs option haggling until it ends; `out` holds the greeting (or nothing) on entry.
async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    hs: &mut Handshake,
    catalog: &mut SessionCatalog,
    input: &mut BytesMut,
    out: &mut BytesMut,
) -> Result<Outcome> {
    loop {
        let step = hs.step(input, catalog, out)?;
        if !matches!(step, Step::Continue) {
            stream.write_all(out).await.map_err(lost("Write"))?;
            stream.flush().await.map_err(lost("Write"))?;
            out.clear();
        }
        match step {
            Step::Continue => {}
            Step::NeedMore => {
                input.reserve(limits::OPTION_DATA_BYTES_MAX as usize);
                let n = stream.read_buf(input).await.map_err(lost("Read"))?;
                if n == 0 {
                    return Err(ended("Client closed during the handshake"));
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
    data: Option<AlignedBuf>,
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
    payload: Option<AlignedBuf>,
    charge: Charge,
}

async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    budget: &Budget,
    buffers: &Buffers,
) -> Result<Option<Request>> {
    let mut head = [0u8; REQUEST_HEADER_BYTES];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(lost("Read")(e)),
    }
    let header = decode_header(&head)?;
    let charge = budget
        .charge(charge_bytes(&header))
        .await
        .ok_or_else(|| ended("In-flight budget closed"))?;
    let payload = match header.payload_bytes() {
        0 => None,
        _ if header.payload_oversized() => {
            let len = u64::from(header.payload_bytes());
            let skipped = tokio::io::copy(&mut reader.take(len), &mut tokio::io::sink()).await;
            if skipped.map_err(lost("Read"))? != len {
                return Ok(None);
            }
            None
        }
        len => {
            let mut buf = buffers.take(len as usize);
            reader.read_exact(&mut buf).await.map_err(lost("Read"))?;
            Some(buf)
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
) -> Result<()> {
    let Some(volume) = catalog.opened else {
        return Err(ended("Negotiation ended without an open export"));
    };
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(
        limits::READ_BUFFER_BYTES,
        Cursor::new(leftover).chain(read_half),
    );
    let (tx, rx) = mpsc::channel::<Reply>(limits::REPLY_QUEUE_DEPTH);
    let buffers = Arc::new(Buffers::default());
    let writer = tokio::spawn(write_replies(write_half, rx, buffers.clone()));
    let budget = Budget {
        requests: Arc::new(Semaphore::new(limits::CONNECTION_REQUESTS_MAX as usize)),
        connection_bytes: Arc::new(Semaphore::new(
            limits::CONNECTION_IN_FLIGHT_BYTES_MAX as usize,
        )),
        daemon_bytes: shared.daemon_bytes.clone(),
    };
    let replies = Arc::new(Replies {
        tx,
        buffers,
        structured: negotiated.structured_replies,
    });
    let ctx = Arc::new(RequestCtx {
        volume,
        negotiated,
        replies,
    });
    // READs and WRITEs held back while the next request is already there (see the module doc).
    let mut held: Vec<Held> = Vec::new();
    let result = loop {
        let mut read = std::pin::pin!(read_request(&mut reader, &budget, &ctx.replies.buffers));
        // With requests held, the next one is polled once: if it is not there at once, they go.
        let mut at_once = None;
        if !held.is_empty() {
            match std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
                Poll::Ready(next) => at_once = Some(next),
                Poll::Pending => ctx.launch(&mut held),
            }
        }
        let next = match at_once {
            Some(next) => next,
            None => tokio::select! {
                r = &mut read => r,
                _ = shutdown.changed() => break Ok(()),
                _ = ctx.replies.tx.closed() => break Ok(()),
            },
        };
        let request = match next {
            Ok(Some(r)) => r,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        if request.header.command == Command::Disc {
            break Ok(());
        }
        let request = match ctx.hold(request) {
            Ok(h) => {
                held.push(h);
                continue;
            }
            Err(request) => request,
        };
        if let Err(request) = ctx.submit(request) {
            let ctx = ctx.clone();
            tokio::task::spawn_blocking(move || ctx.execute(request));
        }
    };
    ctx.launch(&mut held);
    // Finish what was accepted: the writer ends once every running request (each holds the
    // reply sender, through the context or its completion) has sent its reply. A client that stops reading replies
    // cannot hold this up forever.
    drop(ctx);
    let writer_abort = writer.abort_handle();
    let drain = writer;
    let deadline = Duration::from_secs(limits::DRAIN_TIMEOUT_SECS);
    match tokio::time::timeout(deadline, drain).await {
        Ok(Ok(Ok(()))) => result,
        Ok(Ok(Err(e))) => result.and(Err(e)),
        Ok(Err(e)) => result.and(Err(
            Error::new(ErrorKind::Server, "Writer task failed").with_source(e)
        )),
        Err(_) => {
            writer_abort.abort();
            result.and(Err(ended("Replies not drained in time")))
        }
    }
}

/// Writes every reply of `batch` (heads and data, in order) with as few vectored writes as the
/// socket takes, then flushes (a TLS stream holds what it encrypted until then).
async fn write_batch<W: AsyncWrite + Unpin>(
    writer: &mut W,
    batch: &[Reply],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len() * 2);
    for reply in batch {
        slices.push(IoSlice::new(&reply.head));
        if let Some(data) = &reply.data {
            slices.push(IoSlice::new(data));
        }
    }
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = writer.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    writer.flush().await
}

async fn write_replies<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::Receiver<Reply>,
    buffers: Arc<Buffers>,
) -> Result<()> {
    let stall = Duration::from_secs(limits::WRITE_STALL_TIMEOUT_SECS);
    let mut batch = Vec::with_capacity(limits::REPLY_BATCH_MAX);
    while rx.recv_many(&mut batch, limits::REPLY_BATCH_MAX).await > 0 {
        let io = write_batch(&mut writer, &batch);
        let written = tokio::time::timeout(stall, io).await;
        // The written replies release their in-flight charges here.
        for reply in batch.drain(..) {
            if let Some(data) = reply.data {
                buffers.give(data);
            }
        }
        let failure = match written {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => lost("Write")(e),
            Err(_) => ended("Client stopped reading replies"),
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
    replies: Arc<Replies>,
}

/// The way to the connection's writer, shared by the requests in flight. It holds no volume: a
/// completion that outlives the connection drops nothing but replies and buffers.
struct Replies {
    tx: mpsc::Sender<Reply>,
    buffers: Arc<Buffers>,
    /// Structured replies were negotiated.
    structured: bool,
}

/// The outcome of one request on the volume.
enum Done {
    Empty,
    Data(AlignedBuf),
    Status(Vec<Run>),
}

/// A failed request: the errno for its reply and a message.
type Failure = (u32, String);

/// A valid READ, or WRITE without FUA, for a volume without an asynchronous side, held back so
/// that the ones already received go to the volume together ([`Volume::read_many`],
/// [`Volume::write_many`]).
struct Held {
    header: RequestHeader,
    action: Action,
    offset: u64,
    /// A write's data.
    payload: Option<AlignedBuf>,
    charge: Charge,
}

impl RequestCtx {
    /// Takes `request` as [`Held`] if it is a valid READ, or WRITE without FUA, for a volume
    /// that completes on blocking threads; hands it back otherwise.
    fn hold(&self, request: Request) -> std::result::Result<Held, Request> {
        if self.volume.asynchronous().is_some() {
            return Err(request);
        }
        match (check(&request.header, &self.negotiated), &request.payload) {
            (Ok(action @ Action::Read { offset, .. }), _)
            | (
                Ok(
                    action @ Action::Write {
                        offset, fua: false, ..
                    },
                ),
                Some(_),
            ) => Ok(Held {
                header: request.header,
                action,
                offset,
                payload: request.payload,
                charge: request.charge,
            }),
            _ => Err(request),
        }
    }

    /// Sends the requests held back to the blocking pool, in the jobs [`batches`] makes.
    fn launch(self: &Arc<Self>, held: &mut Vec<Held>) {
        if held.is_empty() {
            return;
        }
        let held = std::mem::take(held);
        for batch in batches(held, |h| matches!(h.action, Action::Read { .. })) {
            let ctx = self.clone();
            tokio::task::spawn_blocking(move || ctx.execute_held(batch));
        }
    }

    /// Runs requests handed over together (on a blocking thread, all reads or all writes) as
    /// one [`Volume::read_many`] or [`Volume::write_many`] and answers each with its own data
    /// or error. A panic below fails them all with EIO.
    fn execute_held(&self, batch: Vec<Held>) {
        let buffers = &self.replies.buffers;
        let reading = matches!(batch.first().map(|h| h.action), Some(Action::Read { .. }));
        // A read's buffer for its data.
        let mut bufs: Vec<Option<AlignedBuf>> = batch
            .iter()
            .map(|h| match h.action {
                Action::Read { len, .. } => Some(buffers.take(len as usize)),
                _ => None,
            })
            .collect();
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if reading {
                let mut reads: Vec<(u64, &mut [u8])> = batch
                    .iter()
                    .zip(&mut bufs)
                    .filter_map(|(h, b)| Some((h.offset, &mut b.as_mut()?[..])))
                    .collect();
                self.volume.read_many(&mut reads)
            } else {
                let writes: Vec<(u64, &[u8])> = batch
                    .iter()
                    .map(|h| (h.offset, h.payload.as_deref().unwrap_or_default()))
                    .collect();
                self.volume.write_many(&writes)
            }
        }));
        let results = results.unwrap_or_else(|_| {
            let failed = || cairn_export::Error::new(cairn_export::ErrorKind::Io, "internal error");
            batch.iter().map(|_| Err(failed())).collect()
        });
        for ((h, buf), result) in batch.into_iter().zip(bufs).zip(results) {
            if let Some(payload) = h.payload {
                buffers.give(payload);
            }
            let outcome = match (result, buf) {
                (Ok(()), Some(buf)) => Ok((h.action, Done::Data(buf))),
                (Ok(()), None) => Ok((h.action, Done::Empty)),
                (Err(e), buf) => {
                    if let Some(buf) = buf {
                        buffers.give(buf);
                    }
                    Err((errno_for(h.action, &e), e.to_string()))
                }
            };
            self.replies.answer(&h.header, outcome, h.charge);
        }
    }

    /// Runs one request (on a blocking thread), encodes its reply and queues it for the writer.
    fn execute(&self, request: Request) {
        let Request {
            header,
            payload,
            charge,
        } = request;
        let outcome = self.run(&header, payload.as_deref());
        if let Some(payload) = payload {
            self.replies.buffers.give(payload);
        }
        self.replies.answer(&header, outcome, charge);
    }

    /// Puts `request` in flight on the volume's asynchronous side if it has one and the request
    /// is one it takes (see the module doc); hands it back otherwise, for [`RequestCtx::execute`].
    /// A request the volume declines runs on a blocking thread, completing the same way.
    fn submit(self: &Arc<Self>, mut request: Request) -> std::result::Result<(), Request> {
        let Some(target) = self.volume.asynchronous() else {
            return Err(request);
        };
        let action = match (check(&request.header, &self.negotiated), &request.payload) {
            (Ok(action @ Action::Write { fua: false, .. }), Some(_)) => action,
            (Ok(action @ (Action::Read { .. } | Action::Flush)), _) => action,
            (Ok(action @ Action::Trim { fua: false, .. }), _) => action,
            (Ok(action @ Action::WriteZeroes { fua: false, .. }), _) => action,
            _ => return Err(request),
        };
        let io = match action {
            Action::Read { offset, len } => Io::Read {
                offset,
                buf: self.replies.buffers.take(len as usize),
            },
            Action::Write { offset, .. } => Io::Write {
                offset,
                data: request.payload.take().expect("a write has its payload"),
            },
            Action::Trim { offset, len, .. } => Io::Trim {
                offset,
                len: u64::from(len),
            },
            Action::WriteZeroes {
                offset,
                len,
                no_hole,
                ..
            } => Io::WriteZeroes {
                offset,
                len: u64::from(len),
                how: zeroing(no_hole),
            },
            _ => Io::Flush,
        };
        let Request { header, charge, .. } = request;
        let replies = self.replies.clone();
        let done = Box::new(move |d: IoDone| replies.complete(&header, action, d, charge));
        if let Err(Declined { io, done }) = target.submit(io, done) {
            let ctx = self.clone();
            tokio::task::spawn_blocking(move || {
                let volume = ctx.volume.as_ref();
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| io.run(volume)));
                done(run.unwrap_or_else(|_| IoDone::internal_error()));
            });
        }
        Ok(())
    }

    /// Validates the request and runs it on the volume. A panic in the layers below (a broken
    /// invariant) fails this request with EIO rather than leaving it unanswered.
    fn run(
        &self,
        header: &RequestHeader,
        payload: Option<&[u8]>,
    ) -> std::result::Result<(Action, Done), Failure> {
        let action = match (check(header, &self.negotiated), &payload) {
            (Ok(Action::Write { .. }), None) => Err(EINVAL),
            (result, _) => result,
        };
        let action = action.map_err(|errno| (errno, "request rejected".to_string()))?;
        let export = &self.negotiated.export;
        let geometry = (
            u64::from(export.block_size_min_bytes.max(1)),
            export.size_bytes,
        );
        let volume = self.volume.as_ref();
        let job = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            perform(volume, &self.replies.buffers, geometry, action, payload)
        }));
        match job {
            Ok(r) => r
                .map(|done| (action, done))
                .map_err(|e| (errno_for(action, &e), e.to_string())),
            Err(_) => Err((EIO, "request failed: internal error".to_string())),
        }
    }
}

impl Replies {
    /// Encodes the reply for `outcome` and hands it to the writer.
    fn answer(
        &self,
        header: &RequestHeader,
        outcome: std::result::Result<(Action, Done), Failure>,
        charge: Charge,
    ) {
        let mut head = BytesMut::with_capacity(limits::REPLY_HEADER_BYTES);
        let data = self.encode(&mut head, header, outcome);
        self.send(Reply {
            head,
            data,
            _charge: charge,
        });
    }

    /// Answers a request the volume completed asynchronously (on whichever thread completed
    /// it): its read data, or its error mapped like a blocking request's.
    fn complete(&self, header: &RequestHeader, action: Action, done: IoDone, charge: Charge) {
        let outcome = match (done.result, done.buf) {
            (Ok(()), Some(buf)) if matches!(action, Action::Read { .. }) => {
                Ok((action, Done::Data(buf)))
            }
            (result, buf) => {
                if let Some(buf) = buf {
                    self.buffers.give(buf);
                }
                match result {
                    Ok(()) => Ok((action, Done::Empty)),
                    Err(e) => Err((errno_for(action, &e), e.to_string())),
                }
            }
        };
        self.answer(header, outcome, charge);
    }

    /// Queues `reply` for the writer without waiting (see the module doc); a closed queue means
    /// the writer is gone (the client disconnected) and the reply is dropped.
    fn send(&self, reply: Reply) {
        match self.tx.try_send(reply) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => {
                unreachable!("the reply queue holds every request the budget admits")
            }
        }
    }

    /// Writes the reply head for `outcome` into `head`; returns the data that follows it.
    fn encode(
        &self,
        head: &mut BytesMut,
        header: &RequestHeader,
        outcome: std::result::Result<(Action, Done), Failure>,
    ) -> Option<AlignedBuf> {
        let cookie = header.cookie;
        let structured = self.structured;
        let structured_chunk =
            structured && matches!(header.command, Command::Read | Command::BlockStatus);
        match outcome {
            Err((errno, message)) => {
                if errno == EIO {
                    tracing::warn!(cookie, error = %message, "NBD request failed");
                } else {
                    tracing::debug!(cookie, errno, error = %message, "NBD request refused");
                }
                reply::error(head, structured_chunk, cookie, errno, &message);
                None
            }
            Ok((_, Done::Empty)) => {
                reply::simple(head, cookie, 0);
                None
            }
            Ok((Action::Read { offset, .. }, Done::Data(data))) => {
                let len = data.len() as u32;
                reply::read_data_header(head, structured, cookie, offset, len);
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
                reply::block_status(head, cookie, context_id, &descriptors);
                None
            }
            Ok(_) => {
                reply::error(head, structured_chunk, cookie, EIO, "internal mismatch");
                None
            }
        }
    }
}

/// Runs one validated request against the volume (on a blocking thread); `(block, size)` is
/// the export's minimum block size and size in bytes. FUA on a write goes to the volume's own FUA
/// write; on a trim or zeroing it is a flush after it.
fn perform(
    volume: &dyn Volume,
    buffers: &Buffers,
    (block, size): (u64, u64),
    action: Action,
    payload: Option<&[u8]>,
) -> cairn_export::Result<Done> {
    match action {
        Action::Read { offset, len } => {
            let mut buf = buffers.take(len as usize);
            match volume.read(offset, &mut buf) {
                Ok(()) => Ok(Done::Data(buf)),
                Err(e) => {
                    buffers.give(buf);
                    Err(e)
                }
            }
        }
        Action::Write { offset, fua, .. } => {
            let data = payload.unwrap_or_default();
            volume.write(offset, data, fua)?;
            Ok(Done::Empty)
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
            volume.write_zeroes(offset, u64::from(len), zeroing(no_hole))?;
            flush_if(volume, fua)
        }
        Action::BlockStatus { offset, len, .. } => {
            // The volume is asked for whole blocks; the reply is clipped back to the request.
            let start = offset - offset % block;
            let end = (offset + u64::from(len)).next_multiple_of(block).min(size);
            Ok(Done::Status(volume.block_status(start, end - start)?))
        }
        Action::Disconnect => Ok(Done::Empty),
    }
}

/// How NBD_CMD_WRITE_ZEROES stores its zeroes: allocated with `NO_HOLE`, unmapped otherwise.
fn zeroing(no_hole: bool) -> Zeroing {
    if no_hole {
        Zeroing::Allocate
    } else {
        Zeroing::Unmap
    }
}

fn flush_if(volume: &dyn Volume, fua: bool) -> cairn_export::Result<Done> {
    if fua {
        volume.flush()?;
    }
    Ok(Done::Empty)
}

/// Maps a volume failure to the errno the protocol prescribes for this command.
fn errno_for(action: Action, e: &cairn_export::Error) -> u32 {
    use cairn_export::ErrorKind as K;
    let writes_data = matches!(action, Action::Write { .. } | Action::WriteZeroes { .. });
    match e.kind() {
        K::NoSpace => ENOSPC,
        K::ReadOnly => EPERM,
        K::OutOfRange if writes_data => ENOSPC,
        K::OutOfRange | K::InvalidArgument => EINVAL,
        _ => EIO,
    }
}
