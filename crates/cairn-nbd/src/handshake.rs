//! The fixed-newstyle handshake and option haggling as a pure state machine over byte buffers.
//!
//! [`Handshake::step`] consumes at most one complete client message from the input buffer, appends
//! the server's answer to the output buffer and says what the caller must do next. It never touches
//! a socket; exports are looked up through the [`Catalog`] trait.
//!
//! Invariants:
//! - Every option gets exactly one final reply (ACK or an error) except NBD_OPT_EXPORT_NAME, which
//!   the protocol answers without an option reply, and a protocol violation, which ends the
//!   connection (the spec's "clean disconnect").
//! - Unknown or unimplemented options (NBD_OPT_EXTENDED_HEADERS among them) get NBD_REP_ERR_UNSUP and
//!   negotiation goes on.
//! - Option payloads larger than [`limits::OPTION_DATA_BYTES_MAX`] are skipped without buffering
//!   and answered with NBD_REP_ERR_TOO_BIG, so memory per connection stays bounded.
//! - When TLS is required, nothing about exports is revealed before NBD_OPT_STARTTLS succeeds.

use bytes::{Buf, BufMut, BytesMut};

use crate::error::{Error, ErrorKind};
use crate::limits;
use crate::proto::*;
use crate::wire::Reader;

/// What the handshake needs to know about one export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportInfo {
    pub name: String,
    pub size_bytes: u64,
    pub read_only: bool,
    /// The smallest I/O granule: the volume's logical block size (512 or 4096).
    pub block_size_min_bytes: u32,
}

impl ExportInfo {
    /// Transmission flags advertised for this export.
    pub fn transmission_flags(&self) -> u16 {
        let mut flags = TFLAG_HAS_FLAGS
            | TFLAG_SEND_FLUSH
            | TFLAG_SEND_FUA
            | TFLAG_SEND_TRIM
            | TFLAG_SEND_WRITE_ZEROES
            | TFLAG_CAN_MULTI_CONN;
        if self.read_only {
            flags |= TFLAG_READ_ONLY;
        }
        flags
    }

    /// (minimum, preferred, maximum) block sizes of NBD_INFO_BLOCK_SIZE.
    pub fn block_sizes(&self) -> (u32, u32, u32) {
        let min = self.block_size_min_bytes;
        let preferred = min.max(limits::BLOCK_SIZE_PREFERRED_BYTES);
        (min, preferred, limits::PAYLOAD_BYTES_MAX)
    }
}

/// The exports a server offers, as the handshake sees them.
pub trait Catalog {
    /// Names of every export, for NBD_OPT_LIST.
    fn list(&self) -> Vec<String>;
    /// Describes an export without opening it (NBD_OPT_INFO, meta-context options).
    fn info(&self, name: &str) -> Option<ExportInfo>;
    /// Opens an export for transmission (NBD_OPT_GO, NBD_OPT_EXPORT_NAME); `None` if unknown or no
    /// longer available.
    fn open(&mut self, name: &str) -> Option<ExportInfo>;
}

/// Whether the server offers TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS: NBD_OPT_STARTTLS is refused with NBD_REP_ERR_UNSUP.
    Off,
    /// TLS is mandatory: every option but STARTTLS and ABORT is refused until TLS is up.
    Required,
}

/// The outcome of a successful negotiation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub export: ExportInfo,
    pub structured_replies: bool,
    /// Context id under which `base:allocation` was selected, if it was.
    pub base_allocation: Option<u32>,
}

/// What the caller must do after a [`Handshake::step`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The input holds no complete message; read more bytes and call again.
    NeedMore,
    /// One message was handled; send the output and call again.
    Continue,
    /// Send the output, then run the TLS server handshake and call [`Handshake::tls_started`].
    StartTls,
    /// The client aborted: send the output, then close.
    Abort,
    /// Send the output; transmission starts with these parameters.
    Transmission(Negotiated),
}

/// A client's protocol violation, which ends the connection.
fn violation(context: impl Into<String>) -> Error {
    Error::new(ErrorKind::Handshake, context)
}

#[derive(Debug)]
enum Phase {
    ClientFlags,
    Options,
    Skip { option: u32, remaining: u64 },
    Done,
}

#[derive(Debug, Clone)]
struct MetaSelection {
    export: String,
    base_allocation: bool,
}

/// Context id under which `base:allocation` is selected by NBD_OPT_SET_META_CONTEXT.
pub const BASE_ALLOCATION_CONTEXT_ID: u32 = 1;

const OPTION_HEADER_BYTES: usize = 16;

/// The server side of one connection's handshake.
#[derive(Debug)]
pub struct Handshake {
    phase: Phase,
    tls: TlsMode,
    tls_active: bool,
    no_zeroes: bool,
    structured: bool,
    meta: Option<MetaSelection>,
    options_seen: u32,
}

impl Handshake {
    /// A new handshake; the caller sends [`Handshake::greeting`] first.
    pub fn new(tls: TlsMode) -> Self {
        Handshake {
            phase: Phase::ClientFlags,
            tls,
            tls_active: false,
            no_zeroes: false,
            structured: false,
            meta: None,
            options_seen: 0,
        }
    }

    /// Appends the server greeting (NBDMAGIC, IHAVEOPT, handshake flags).
    pub fn greeting(out: &mut BytesMut) {
        out.put_u64(NBDMAGIC);
        out.put_u64(IHAVEOPT);
        out.put_u16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    }

    /// TLS is now up: per the protocol, everything negotiated before it is forgotten.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.structured = false;
        self.meta = None;
    }

    fn tls_pending(&self) -> bool {
        self.tls == TlsMode::Required && !self.tls_active
    }

    /// Handles at most one complete client message from `input`.
    pub fn step(
        &mut self,
        input: &mut BytesMut,
        catalog: &mut dyn Catalog,
        out: &mut BytesMut,
    ) -> Result<Step, Error> {
        match self.phase {
            Phase::ClientFlags => self.client_flags(input),
            Phase::Options => self.option(input, catalog, out),
            Phase::Skip { option, remaining } => Ok(self.skip(input, option, remaining, out)),
            Phase::Done => Err(violation("Handshake already finished")),
        }
    }

    fn client_flags(&mut self, input: &mut BytesMut) -> Result<Step, Error> {
        if input.len() < 4 {
            return Ok(Step::NeedMore);
        }
        let flags = input.get_u32();
        if flags & !CLIENT_FLAGS_KNOWN != 0 {
            return Err(violation(format!(
                "Client flags {flags:#x} carry unknown bits"
            )));
        }
        if flags & FLAG_C_FIXED_NEWSTYLE == 0 {
            return Err(violation("Client does not speak fixed newstyle"));
        }
        self.no_zeroes = flags & FLAG_C_NO_ZEROES != 0;
        self.phase = Phase::Options;
        Ok(Step::Continue)
    }

    fn skip(
        &mut self,
        input: &mut BytesMut,
        option: u32,
        remaining: u64,
        out: &mut BytesMut,
    ) -> Step {
        let n = remaining.min(input.len() as u64);
        input.advance(n as usize);
        let remaining = remaining - n;
        if remaining > 0 {
            self.phase = Phase::Skip { option, remaining };
            return Step::NeedMore;
        }
        self.phase = Phase::Options;
        option_reply(out, option, REP_ERR_TOO_BIG, &[]);
        Step::Continue
    }

    fn option(
        &mut self,
        input: &mut BytesMut,
        catalog: &mut dyn Catalog,
        out: &mut BytesMut,
    ) -> Result<Step, Error> {
        if input.len() < OPTION_HEADER_BYTES {
            return Ok(Step::NeedMore);
        }
        let mut header = Reader::new(&input[..OPTION_HEADER_BYTES]);
        let (magic, option, len) = match (header.u64(), header.u32(), header.u32()) {
            (Some(m), Some(o), Some(l)) => (m, o, l),
            _ => return Ok(Step::NeedMore),
        };
        if magic != IHAVEOPT {
            return Err(violation(format!("Bad option magic {magic:#x}")));
        }
        if len > limits::OPTION_DATA_BYTES_MAX {
            self.count_option()?;
            input.advance(OPTION_HEADER_BYTES);
            self.phase = Phase::Skip {
                option,
                remaining: u64::from(len),
            };
            return Ok(Step::Continue);
        }
        let total = OPTION_HEADER_BYTES + len as usize;
        if input.len() < total {
            return Ok(Step::NeedMore);
        }
        self.count_option()?;
        let message = input.split_to(total);
        let data = &message[OPTION_HEADER_BYTES..];
        self.dispatch(option, data, catalog, out)
    }

    fn count_option(&mut self) -> Result<(), Error> {
        self.options_seen += 1;
        if self.options_seen > limits::OPTIONS_PER_CONNECTION_MAX {
            return Err(violation("Too many options"));
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        option: u32,
        data: &[u8],
        catalog: &mut dyn Catalog,
        out: &mut BytesMut,
    ) -> Result<Step, Error> {
        let gated = matches!(
            option,
            OPT_LIST
                | OPT_INFO
                | OPT_GO
                | OPT_STRUCTURED_REPLY
                | OPT_LIST_META_CONTEXT
                | OPT_SET_META_CONTEXT
        );
        if gated && self.tls_pending() {
            option_reply(out, option, REP_ERR_TLS_REQD, &[]);
            return Ok(Step::Continue);
        }
        match option {
            OPT_EXPORT_NAME => self.export_name(data, catalog, out),
            OPT_ABORT => {
                option_reply(out, option, REP_ACK, &[]);
                self.phase = Phase::Done;
                Ok(Step::Abort)
            }
            OPT_LIST => Ok(self.list(data, catalog, out)),
            OPT_STARTTLS => Ok(self.starttls(data, out)),
            OPT_INFO | OPT_GO => Ok(self.info_or_go(option, data, catalog, out)),
            OPT_STRUCTURED_REPLY => {
                if data.is_empty() {
                    self.structured = true;
                    option_reply(out, option, REP_ACK, &[]);
                } else {
                    option_reply(out, option, REP_ERR_INVALID, &[]);
                }
                Ok(Step::Continue)
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                Ok(self.meta_context(option, data, catalog, out))
            }
            _ => {
                option_reply(out, option, REP_ERR_UNSUP, &[]);
                Ok(Step::Continue)
            }
        }
    }

    fn export_name(
        &mut self,
        data: &[u8],
        catalog: &mut dyn Catalog,
        out: &mut BytesMut,
    ) -> Result<Step, Error> {
        if self.tls_pending() {
            return Err(violation("NBD_OPT_EXPORT_NAME before TLS was negotiated"));
        }
        let name = String::from_utf8_lossy(data).into_owned();
        let export = match std::str::from_utf8(data).ok().and_then(|n| catalog.open(n)) {
            Some(export) => export,
            None => {
                return Err(violation(format!(
                    "Export {name:?} requested by NBD_OPT_EXPORT_NAME does not exist"
                )))
            }
        };
        out.put_u64(export.size_bytes);
        out.put_u16(export.transmission_flags());
        if !self.no_zeroes {
            out.put_bytes(0, 124);
        }
        Ok(self.finish(export))
    }

    fn finish(&mut self, export: ExportInfo) -> Step {
        self.phase = Phase::Done;
        let base_allocation = match &self.meta {
            Some(m) if m.base_allocation && m.export == export.name && self.structured => {
                Some(BASE_ALLOCATION_CONTEXT_ID)
            }
            _ => None,
        };
        Step::Transmission(Negotiated {
            export,
            structured_replies: self.structured,
            base_allocation,
        })
    }

    fn list(&mut self, data: &[u8], catalog: &mut dyn Catalog, out: &mut BytesMut) -> Step {
        if !data.is_empty() {
            option_reply(out, OPT_LIST, REP_ERR_INVALID, &[]);
            return Step::Continue;
        }
        for name in catalog.list() {
            let mut payload = BytesMut::with_capacity(4 + name.len());
            payload.put_u32(name.len() as u32);
            payload.put_slice(name.as_bytes());
            option_reply(out, OPT_LIST, REP_SERVER, &payload);
        }
        option_reply(out, OPT_LIST, REP_ACK, &[]);
        Step::Continue
    }

    fn starttls(&mut self, data: &[u8], out: &mut BytesMut) -> Step {
        let reply = if !data.is_empty() || self.tls_active {
            REP_ERR_INVALID
        } else if self.tls == TlsMode::Off {
            REP_ERR_UNSUP
        } else {
            REP_ACK
        };
        option_reply(out, OPT_STARTTLS, reply, &[]);
        if reply == REP_ACK {
            Step::StartTls
        } else {
            Step::Continue
        }
    }

    fn info_or_go(
        &mut self,
        option: u32,
        data: &[u8],
        catalog: &mut dyn Catalog,
        out: &mut BytesMut,
    ) -> Step {
        let Some((name, requests)) = parse_info_request(data) else {
            option_reply(out, option, REP_ERR_INVALID, &[]);
            return Step::Continue;
        };
        let export = match std::str::from_utf8(name) {
            Ok(n) if option == OPT_GO => catalog.open(n),
            Ok(n) => catalog.info(n),
            Err(_) => None,
        };
        let Some(export) = export else {
            option_reply(out, option, REP_ERR_UNKNOWN, &[]);
            return Step::Continue;
        };
        write_info_replies(out, option, &export, &requests);
        option_reply(out, option, REP_ACK, &[]);
        if option == OPT_GO {
            self.finish(export)
        } else {
            Step::Continue
        }
    }

    fn meta_context(
        &mut self,
        option: u32,
        data: &[u8],
        catalog: &mut dyn Catalog,
        out: &mut BytesMut,
    ) -> Step {
        if option == OPT_SET_META_CONTEXT && !self.structured {
            option_reply(out, option, REP_ERR_INVALID, &[]);
            return Step::Continue;
        }
        let Some((name, queries)) = parse_meta_request(data) else {
            option_reply(out, option, REP_ERR_INVALID, &[]);
            return Step::Continue;
        };
        let export = std::str::from_utf8(name).ok().and_then(|n| catalog.info(n));
        let Some(export) = export else {
            option_reply(out, option, REP_ERR_UNKNOWN, &[]);
            return Step::Continue;
        };
        let list = option == OPT_LIST_META_CONTEXT;
        let matched = if list && queries.is_empty() {
            true
        } else {
            queries
                .iter()
                .any(|q| *q == META_BASE_ALLOCATION.as_bytes() || (list && *q == b"base:"))
        };
        if matched {
            let id = if list { 0 } else { BASE_ALLOCATION_CONTEXT_ID };
            let mut payload = BytesMut::with_capacity(4 + META_BASE_ALLOCATION.len());
            payload.put_u32(id);
            payload.put_slice(META_BASE_ALLOCATION.as_bytes());
            option_reply(out, option, REP_META_CONTEXT, &payload);
        }
        if !list {
            self.meta = Some(MetaSelection {
                export: export.name,
                base_allocation: matched,
            });
        }
        option_reply(out, option, REP_ACK, &[]);
        Step::Continue
    }
}

/// Parses the payload of NBD_OPT_INFO/NBD_OPT_GO: name, then the requested information types.
fn parse_info_request(data: &[u8]) -> Option<(&[u8], Vec<u16>)> {
    let mut r = Reader::new(data);
    let name = r.string32(limits::NAME_BYTES_MAX)?;
    let count = r.u16()?;
    let mut requests = Vec::with_capacity(usize::from(count).min(16));
    for _ in 0..count {
        requests.push(r.u16()?);
    }
    r.is_empty().then_some((name, requests))
}

/// Parses the payload of the meta-context options: export name, then the queries.
fn parse_meta_request(data: &[u8]) -> Option<(&[u8], Vec<&[u8]>)> {
    let mut r = Reader::new(data);
    let name = r.string32(limits::NAME_BYTES_MAX)?;
    let count = r.u32()?;
    let mut queries = Vec::new();
    for _ in 0..count {
        queries.push(r.string32(limits::NAME_BYTES_MAX)?);
    }
    r.is_empty().then_some((name, queries))
}

fn write_info_replies(out: &mut BytesMut, option: u32, export: &ExportInfo, requests: &[u16]) {
    let mut payload = BytesMut::with_capacity(12);
    payload.put_u16(INFO_EXPORT);
    payload.put_u64(export.size_bytes);
    payload.put_u16(export.transmission_flags());
    option_reply(out, option, REP_INFO, &payload);
    if requests.contains(&INFO_NAME) {
        let mut payload = BytesMut::with_capacity(2 + export.name.len());
        payload.put_u16(INFO_NAME);
        payload.put_slice(export.name.as_bytes());
        option_reply(out, option, REP_INFO, &payload);
    }
    // Sent whether asked for or not (the protocol allows it): the engine needs aligned requests.
    let (min, preferred, max) = export.block_sizes();
    let mut payload = BytesMut::with_capacity(14);
    payload.put_u16(INFO_BLOCK_SIZE);
    payload.put_u32(min);
    payload.put_u32(preferred);
    payload.put_u32(max);
    option_reply(out, option, REP_INFO, &payload);
}

/// Appends one option reply.
pub fn option_reply(out: &mut BytesMut, option: u32, reply_type: u32, payload: &[u8]) {
    out.reserve(20 + payload.len());
    out.put_u64(OPTION_REPLY_MAGIC);
    out.put_u32(option);
    out.put_u32(reply_type);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
}
