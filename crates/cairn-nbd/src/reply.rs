//! Transmission-phase replies: simple replies, structured reply chunks and `base:allocation`
//! descriptors.
//!
//! Invariants:
//! - Once structured replies are negotiated, READ and BLOCK_STATUS are answered only with structured
//!   chunks (data, block status or error), each reply ending with a chunk flagged DONE; other
//!   commands get simple replies, as the protocol allows.
//! - Block-status descriptors cover a prefix of the requested range, never more, merge runs of
//!   equal status, and number at most [`limits::BLOCK_STATUS_DESCRIPTORS_MAX`] (one with REQ_ONE).

use bytes::{BufMut, BytesMut};

use crate::limits;
use crate::proto::*;

/// Appends a simple reply header (followed by the data for a successful simple READ).
pub fn simple(out: &mut BytesMut, cookie: u64, error: u32) {
    out.put_u32(SIMPLE_REPLY_MAGIC);
    out.put_u32(error);
    out.put_u64(cookie);
}

fn chunk_header(out: &mut BytesMut, flags: u16, kind: u16, cookie: u64, len: u32) {
    out.put_u32(STRUCTURED_REPLY_MAGIC);
    out.put_u16(flags);
    out.put_u16(kind);
    out.put_u64(cookie);
    out.put_u32(len);
}

/// Appends what precedes `data_len` bytes of READ data: a simple reply, or a final
/// NBD_REPLY_TYPE_OFFSET_DATA chunk header.
pub fn read_data_header(
    out: &mut BytesMut,
    structured: bool,
    cookie: u64,
    offset: u64,
    data_len: u32,
) {
    if structured {
        chunk_header(
            out,
            REPLY_FLAG_DONE,
            REPLY_TYPE_OFFSET_DATA,
            cookie,
            data_len.saturating_add(8),
        );
        out.put_u64(offset);
    } else {
        simple(out, cookie, 0);
    }
}

/// Appends an error reply: a final NBD_REPLY_TYPE_ERROR chunk when `structured_chunk` (READ or
/// BLOCK_STATUS with structured replies), a simple reply otherwise.
pub fn error(out: &mut BytesMut, structured_chunk: bool, cookie: u64, errno: u32, message: &str) {
    if structured_chunk {
        let msg = &message.as_bytes()[..message.len().min(4096)];
        chunk_header(
            out,
            REPLY_FLAG_DONE,
            REPLY_TYPE_ERROR,
            cookie,
            6 + msg.len() as u32,
        );
        out.put_u32(errno);
        out.put_u16(msg.len() as u16);
        out.put_slice(msg);
    } else {
        simple(out, cookie, errno);
    }
}

/// Appends a final NBD_REPLY_TYPE_BLOCK_STATUS chunk.
pub fn block_status(out: &mut BytesMut, cookie: u64, context_id: u32, descriptors: &[Descriptor]) {
    let len = 4 + 8 * descriptors.len();
    chunk_header(
        out,
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        cookie,
        len as u32,
    );
    out.put_u32(context_id);
    for d in descriptors {
        out.put_u32(d.len);
        out.put_u32(d.flags);
    }
}

/// One `base:allocation` run: `len` bytes with status `flags` (STATE_HOLE | STATE_ZERO or 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub len: u32,
    pub flags: u32,
}

/// Builds descriptors for the request range [`offset`, `offset + len`) from runs
/// `(run_offset, run_len, mapped)` sorted by offset. Runs may extend beyond the range (they are
/// clipped) and gaps between them read as holes.
pub fn allocation_descriptors(
    runs: impl IntoIterator<Item = (u64, u64, bool)>,
    offset: u64,
    len: u32,
    req_one: bool,
) -> Vec<Descriptor> {
    let end = offset.saturating_add(u64::from(len));
    let max = if req_one {
        1
    } else {
        limits::BLOCK_STATUS_DESCRIPTORS_MAX
    };
    let mut out: Vec<Descriptor> = Vec::new();
    let mut pos = offset;
    let push = |out: &mut Vec<Descriptor>, run_len: u64, mapped: bool| {
        let flags = if mapped { 0 } else { STATE_HOLE | STATE_ZERO };
        // run_len <= len <= u32::MAX: both ends are clipped to the request range.
        let run_len = run_len as u32;
        match out.last_mut() {
            Some(last) if last.flags == flags => last.len += run_len,
            _ => out.push(Descriptor {
                len: run_len,
                flags,
            }),
        }
    };
    for (run_offset, run_len, mapped) in runs {
        let run_end = run_offset.saturating_add(run_len).min(end);
        let run_start = run_offset.max(pos);
        if run_end <= run_start {
            continue;
        }
        if run_start > pos {
            push(&mut out, run_start - pos, false);
        }
        push(&mut out, run_end - run_start, mapped);
        pos = run_end;
        if out.len() > max || pos >= end {
            break;
        }
    }
    if pos < end && out.len() <= max {
        push(&mut out, end - pos, false);
    }
    out.truncate(max);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLE: u32 = STATE_HOLE | STATE_ZERO;

    #[test]
    fn descriptors_clip_merge_and_fill_gaps() {
        let runs = [
            (0, 8192, true),
            (8192, 4096, true),
            (16384, 4096, false),
            (20480, 1 << 20, true),
        ];
        let d = allocation_descriptors(runs, 4096, 20480, false);
        assert_eq!(
            d,
            vec![
                Descriptor {
                    len: 8192,
                    flags: 0
                },
                Descriptor {
                    len: 8192,
                    flags: HOLE
                },
                Descriptor {
                    len: 4096,
                    flags: 0
                },
            ]
        );
        assert_eq!(d.iter().map(|d| u64::from(d.len)).sum::<u64>(), 20480);
        let one = allocation_descriptors(runs, 0, 20480, true);
        assert_eq!(
            one,
            vec![Descriptor {
                len: 12288,
                flags: 0
            }]
        );
        let empty = allocation_descriptors([], 0, 4096, false);
        assert_eq!(
            empty,
            vec![Descriptor {
                len: 4096,
                flags: HOLE
            }]
        );
    }

    #[test]
    fn descriptor_count_is_bounded() {
        let n = limits::BLOCK_STATUS_DESCRIPTORS_MAX as u64 + 10;
        let runs = (0..n).map(|i| (i * 4096, 4096, i % 2 == 0));
        let len = (n * 4096) as u32;
        let d = allocation_descriptors(runs, 0, len, false);
        assert_eq!(d.len(), limits::BLOCK_STATUS_DESCRIPTORS_MAX);
        assert!(d.iter().map(|d| u64::from(d.len)).sum::<u64>() < u64::from(len));
    }

    #[test]
    fn chunks_have_the_protocol_layout() {
        let mut out = BytesMut::new();
        read_data_header(&mut out, true, 9, 4096, 512);
        assert_eq!(
            &out[..],
            &[
                0x66, 0x8e, 0x33, 0xef, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 2, 8, 0, 0, 0, 0,
                0, 0, 16, 0
            ]
        );
        let mut out = BytesMut::new();
        error(&mut out, false, 3, EIO, "x");
        assert_eq!(
            &out[..],
            &[0x67, 0x44, 0x66, 0x98, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 3]
        );
        let mut out = BytesMut::new();
        error(&mut out, true, 3, EIO, "x");
        assert_eq!(out.len(), 20 + 7);
        assert_eq!(&out[6..8], &REPLY_TYPE_ERROR.to_be_bytes());
    }
}
