//! Transmission-phase requests: header decoding, a buffer-driven decoder and request validation.
//!
//! Invariants:
//! - Decoding never panics on any input; a bad magic is the only decode error, and it ends the
//!   connection because the stream can no longer be framed.
//! - A WRITE payload larger than [`limits::PAYLOAD_BYTES_MAX`] is never buffered: the decoder
//!   reports the request without payload and then skips exactly `length` bytes, so framing is kept
//!   and the request is answered with an error.
//! - [`check`] accepts a request only if its range lies inside the export, is aligned to the
//!   export's minimum block size and its flags are meaningful; otherwise it yields the errno the
//!   protocol prescribes (WRITE/WRITE_ZEROES past the end: ENOSPC; READ/TRIM past the end or
//!   misaligned: EINVAL; writes to a read-only export: EPERM).

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, ErrorKind};
use crate::handshake::Negotiated;
use crate::limits;
use crate::proto::*;

/// Size of a compact request header.
pub const REQUEST_HEADER_BYTES: usize = 28;

/// A transmission command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Read,
    Write,
    Disc,
    Flush,
    Trim,
    WriteZeroes,
    BlockStatus,
    /// A command Cairn does not implement (NBD_CMD_CACHE, NBD_CMD_RESIZE, unknown numbers).
    Other(u16),
}

impl Command {
    pub fn from_wire(value: u16) -> Self {
        match value {
            CMD_READ => Command::Read,
            CMD_WRITE => Command::Write,
            CMD_DISC => Command::Disc,
            CMD_FLUSH => Command::Flush,
            CMD_TRIM => Command::Trim,
            CMD_WRITE_ZEROES => Command::WriteZeroes,
            CMD_BLOCK_STATUS => Command::BlockStatus,
            other => Command::Other(other),
        }
    }

    /// Flags this command may carry.
    fn flags_allowed(self) -> u16 {
        match self {
            Command::Read => CMD_FLAG_FUA | CMD_FLAG_DF,
            Command::Write | Command::Trim | Command::Flush => CMD_FLAG_FUA,
            Command::WriteZeroes => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
            Command::BlockStatus => CMD_FLAG_FUA | CMD_FLAG_REQ_ONE,
            Command::Disc | Command::Other(_) => u16::MAX,
        }
    }
}

/// A decoded request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub flags: u16,
    pub command: Command,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

impl RequestHeader {
    /// Bytes of payload that follow this header on the wire.
    pub fn payload_bytes(&self) -> u32 {
        if self.command == Command::Write {
            self.length
        } else {
            0
        }
    }

    /// `true` if the payload is too large to be buffered and must be skipped.
    pub fn payload_oversized(&self) -> bool {
        self.payload_bytes() > limits::PAYLOAD_BYTES_MAX
    }

    pub fn fua(&self) -> bool {
        self.flags & CMD_FLAG_FUA != 0
    }
}

/// Decodes one request header.
/// [`ErrorKind::BadMagic`] means the stream cannot be framed any more.
pub fn decode_header(b: &[u8; REQUEST_HEADER_BYTES]) -> Result<RequestHeader, Error> {
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != REQUEST_MAGIC {
        return Err(Error::new(
            ErrorKind::BadMagic,
            format!("Bad request magic {magic:#x}"),
        ));
    }
    Ok(RequestHeader {
        flags: u16::from_be_bytes([b[4], b[5]]),
        command: Command::from_wire(u16::from_be_bytes([b[6], b[7]])),
        cookie: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        offset: u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
        length: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
    })
}

/// A request with its payload, if it has one that fits the limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub header: RequestHeader,
    pub payload: Option<Bytes>,
}

/// Splits a byte stream into requests (used by tests, fuzzing and any buffer-driven transport).
#[derive(Debug, Default)]
pub struct RequestDecoder {
    skip_bytes: u64,
}

impl RequestDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the next complete request in `input`, or `None` if more bytes are needed.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<Request>, Error> {
        if self.skip_bytes > 0 {
            let n = self.skip_bytes.min(input.len() as u64);
            input.advance(n as usize);
            self.skip_bytes -= n;
            if self.skip_bytes > 0 {
                return Ok(None);
            }
        }
        let Some(head) = input.get(..REQUEST_HEADER_BYTES) else {
            return Ok(None);
        };
        let mut bytes = [0u8; REQUEST_HEADER_BYTES];
        bytes.copy_from_slice(head);
        let header = decode_header(&bytes)?;
        if header.payload_oversized() {
            input.advance(REQUEST_HEADER_BYTES);
            self.skip_bytes = u64::from(header.length);
            return Ok(Some(Request {
                header,
                payload: None,
            }));
        }
        let total = REQUEST_HEADER_BYTES + header.payload_bytes() as usize;
        if input.len() < total {
            return Ok(None);
        }
        input.advance(REQUEST_HEADER_BYTES);
        let payload = (header.command == Command::Write)
            .then(|| input.split_to(total - REQUEST_HEADER_BYTES).freeze());
        Ok(Some(Request { header, payload }))
    }
}

/// A request that passed [`check`]: what the server must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Read {
        offset: u64,
        len: u32,
    },
    Write {
        offset: u64,
        len: u32,
        fua: bool,
    },
    Flush,
    Trim {
        offset: u64,
        len: u32,
        fua: bool,
    },
    WriteZeroes {
        offset: u64,
        len: u32,
        fua: bool,
        no_hole: bool,
    },
    BlockStatus {
        offset: u64,
        len: u32,
        req_one: bool,
        context_id: u32,
    },
    Disconnect,
}

/// Validates a request against the negotiated export; `Err` is the errno to reply with.
pub fn check(h: &RequestHeader, n: &Negotiated) -> Result<Action, u32> {
    let export = &n.export;
    if h.flags & !h.command.flags_allowed() != 0 {
        return Err(EINVAL);
    }
    let writes = matches!(
        h.command,
        Command::Write | Command::Trim | Command::WriteZeroes
    );
    if writes && export.read_only {
        return Err(EPERM);
    }
    let (offset, len) = (h.offset, h.length);
    let end = offset.checked_add(u64::from(len));
    let inside = end.is_some_and(|e| e <= export.size_bytes);
    let block = u64::from(export.block_size_min_bytes.max(1));
    let aligned = offset % block == 0 && u64::from(len) % block == 0;
    let fua = h.fua();
    match h.command {
        Command::Read | Command::Write if len > limits::PAYLOAD_BYTES_MAX => Err(EINVAL),
        Command::Write | Command::WriteZeroes if !inside => Err(ENOSPC),
        Command::Read | Command::Trim | Command::BlockStatus if !inside => Err(EINVAL),
        Command::Read | Command::Write | Command::Trim | Command::WriteZeroes
            if !aligned || len == 0 =>
        {
            Err(EINVAL)
        }
        Command::Read => Ok(Action::Read { offset, len }),
        Command::Write => Ok(Action::Write { offset, len, fua }),
        Command::Trim => Ok(Action::Trim { offset, len, fua }),
        Command::WriteZeroes => Ok(Action::WriteZeroes {
            offset,
            len,
            fua,
            no_hole: h.flags & CMD_FLAG_NO_HOLE != 0,
        }),
        Command::BlockStatus => match n.base_allocation {
            Some(context_id) if len > 0 => Ok(Action::BlockStatus {
                offset,
                len,
                req_one: h.flags & CMD_FLAG_REQ_ONE != 0,
                context_id,
            }),
            _ => Err(EINVAL),
        },
        Command::Flush => Ok(Action::Flush),
        Command::Disc => Ok(Action::Disconnect),
        Command::Other(_) => Err(EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::ExportInfo;
    use bytes::BufMut;

    fn negotiated(read_only: bool) -> Negotiated {
        Negotiated {
            export: ExportInfo {
                name: "v".into(),
                size_bytes: 1 << 20,
                read_only,
                block_size_min_bytes: 4096,
            },
            structured_replies: true,
            base_allocation: Some(1),
        }
    }

    fn header(command: u16, flags: u16, offset: u64, length: u32) -> RequestHeader {
        RequestHeader {
            flags,
            command: Command::from_wire(command),
            cookie: 7,
            offset,
            length,
        }
    }

    fn encode(h: &RequestHeader, cmd: u16, payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32(REQUEST_MAGIC);
        b.put_u16(h.flags);
        b.put_u16(cmd);
        b.put_u64(h.cookie);
        b.put_u64(h.offset);
        b.put_u32(h.length);
        b.put_slice(payload);
        b
    }

    #[test]
    fn refusals_follow_the_protocol() {
        let n = negotiated(false);
        let size = 1u64 << 20;
        // (command, flags, offset, length, errno): writes past the end are out of space, other
        // requests past the end, misaligned, empty, oversized or with a flag that does not fit
        // their command are invalid.
        let refused = [
            (CMD_WRITE, 0, size, 4096, ENOSPC),
            (CMD_WRITE_ZEROES, 0, size - 4096, 8192, ENOSPC),
            (CMD_READ, 0, size, 4096, EINVAL),
            (CMD_TRIM, 0, size - 4096, 8192, EINVAL),
            (CMD_READ, 0, 512, 4096, EINVAL),
            (CMD_WRITE, 0, 0, 100, EINVAL),
            (CMD_READ, 0, u64::MAX - 10, 4096, EINVAL),
            (CMD_WRITE, 0, u64::MAX - 10, 4096, ENOSPC),
            (CMD_READ, 0, 0, limits::PAYLOAD_BYTES_MAX * 2, EINVAL),
            (CMD_WRITE, CMD_FLAG_NO_HOLE, 0, 4096, EINVAL),
            (CMD_WRITE_ZEROES, CMD_FLAG_FAST_ZERO, 0, 4096, EINVAL),
            (5, 0, 0, 4096, EINVAL),
            // Past the end of a 1 MiB export.
            (CMD_BLOCK_STATUS, 0, 0, u32::MAX, EINVAL),
        ];
        for (cmd, flags, offset, len, errno) in refused {
            assert_eq!(
                check(&header(cmd, flags, offset, len), &n),
                Err(errno),
                "command {cmd} flags {flags:#x} at {offset} for {len}"
            );
        }
    }

    #[test]
    fn accepted_requests_become_their_actions() {
        let n = negotiated(false);
        assert_eq!(
            check(&header(CMD_WRITE, CMD_FLAG_FUA, 4096, 4096), &n),
            Ok(Action::Write {
                offset: 4096,
                len: 4096,
                fua: true
            })
        );
        assert_eq!(
            check(&header(CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, 0, 1 << 20), &n),
            Ok(Action::BlockStatus {
                offset: 0,
                len: 1 << 20,
                req_one: true,
                context_id: 1
            })
        );
    }

    #[test]
    fn a_read_only_export_refuses_changes_and_serves_reads() {
        let ro = negotiated(true);
        assert_eq!(check(&header(CMD_WRITE, 0, 0, 4096), &ro), Err(EPERM));
        assert_eq!(check(&header(CMD_TRIM, 0, 0, 4096), &ro), Err(EPERM));
        assert_eq!(
            check(&header(CMD_READ, 0, 0, 4096), &ro),
            Ok(Action::Read {
                offset: 0,
                len: 4096
            })
        );
    }

    #[test]
    fn block_status_needs_a_negotiated_context() {
        let mut plain = negotiated(false);
        plain.base_allocation = None;
        assert_eq!(
            check(&header(CMD_BLOCK_STATUS, 0, 0, 4096), &plain),
            Err(EINVAL)
        );
    }

    #[test]
    fn decoder_frames_writes_and_skips_oversized_payloads() {
        let mut dec = RequestDecoder::new();
        let w = header(CMD_WRITE, 0, 0, 8);
        let mut input = encode(&w, CMD_WRITE, b"abcdefgh");
        let split = input.split_off(30);
        assert!(matches!(dec.decode(&mut input), Ok(None)));
        input.unsplit(split);
        let req = dec.decode(&mut input).unwrap().unwrap();
        assert_eq!(req.payload.as_deref(), Some(&b"abcdefgh"[..]));
        assert!(input.is_empty());

        let big = header(CMD_WRITE, 0, 0, limits::PAYLOAD_BYTES_MAX + 1);
        let mut input = encode(&big, CMD_WRITE, &[1; 100]);
        let req = dec.decode(&mut input).unwrap().unwrap();
        assert_eq!(req.payload, None);
        assert!(matches!(dec.decode(&mut input), Ok(None)));
        assert!(input.is_empty(), "skipped payload bytes are consumed");

        let mut bad = encode(&header(CMD_READ, 0, 0, 1), CMD_READ, &[]);
        bad[0] = 0;
        let mut fresh = RequestDecoder::new();
        let e = fresh.decode(&mut bad).expect_err("bad magic");
        assert_eq!(e.kind(), crate::ErrorKind::BadMagic);
    }
}
