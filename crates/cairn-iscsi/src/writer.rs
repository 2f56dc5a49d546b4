//! The writing half of a connection: PDUs are queued as they are made and written together, in
//! order, when the connection task has handled what was ready (one event and the completions
//! behind it), without a task of its own: a hand-off between threads costs more than the write.
//!
//! Invariants:
//! - PDUs are written whole and in the order they were queued.
//! - Data segments are never copied: each PDU goes out as its header, its data and its tail
//!   (padding, digest), gathered with the PDUs queued beside it into vectored writes; once
//!   [`WRITE_GATHER_BYTES`] are queued the queue is written before anything more is queued.
//! - The in-flight charges a PDU carries (those of the command it ends) are returned only once
//!   it has been handed to the socket, so the budgets bound the queued data too.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::OwnedSemaphorePermit;

use crate::limits::{WRITE_GATHER_BYTES, WRITE_SLICES_MAX};

/// In-flight charges released when the PDU carrying them is written.
pub(crate) type Held = Vec<OwnedSemaphorePermit>;

/// The PDUs a connection has made and not yet written.
pub(crate) struct Outbox {
    wr: OwnedWriteHalf,
    chunks: VecDeque<Bytes>,
    queued_bytes: usize,
    held: Held,
}

impl Outbox {
    pub fn new(wr: OwnedWriteHalf) -> Outbox {
        Outbox {
            wr,
            chunks: VecDeque::new(),
            queued_bytes: 0,
            held: Held::new(),
        }
    }

    /// Queues one PDU's parts (header, data, tail) with the charges it releases; writes the
    /// queue if it has grown to [`WRITE_GATHER_BYTES`].
    pub async fn push(&mut self, parts: [Bytes; 3], held: Held) -> std::io::Result<()> {
        self.held.extend(held);
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            self.queued_bytes += part.len();
            self.chunks.push_back(part);
        }
        if self.queued_bytes >= WRITE_GATHER_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes everything queued, in as few system calls as the socket allows, then returns
    /// the charges of the PDUs written.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        while !self.chunks.is_empty() {
            let slices: Vec<IoSlice<'_>> = self
                .chunks
                .iter()
                .take(WRITE_SLICES_MAX)
                .map(|c| IoSlice::new(c))
                .collect();
            let n = self.wr.write_vectored(&slices).await?;
            drop(slices);
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.consume(n);
        }
        debug_assert_eq!(self.queued_bytes, 0);
        self.held.clear();
        Ok(())
    }

    /// Drops the first `n` queued bytes (written).
    fn consume(&mut self, mut n: usize) {
        self.queued_bytes -= n;
        while n > 0 {
            let front = self.chunks.front_mut().expect("written bytes were queued");
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}
