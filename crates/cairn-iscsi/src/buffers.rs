//! The data buffers of commands (read data, kept data-out): aligned for direct I/O and reused.
//!
//! A fresh buffer of a megabyte costs more than the transfer it carries: the allocator maps new
//! pages, the kernel faults and clears each of them, and unmaps them again when it is freed. So
//! buffers come in power-of-two classes from [`BUFFER_CLASS_BYTES_MIN`] up, and a buffer dropped
//! goes back to the free list of its class, where the next command of that size takes it.
//!
//! Invariants:
//! - Idle memory is bounded: at most [`IDLE_BUFFER_BYTES_MAX`] bytes in all and
//!   [`IDLE_BUFFERS_PER_CLASS_MAX`] buffers per class; a buffer beyond is freed.
//! - A reused buffer still holds the bytes of its last command. A [`Buffer`] shows only its first
//!   `len` bytes, and its users expose only what they wrote for their own command: a read fills
//!   the whole of it (the volume fills every byte or fails, and a failed read's buffer is never
//!   sent), data-out shows only the bytes received.

use std::sync::{Arc, Mutex};

use cairn_io::AlignedBuf;

use crate::limits::{
    BUFFER_CLASS_BYTES_MIN, IDLE_BUFFERS_PER_CLASS_MAX, IDLE_BUFFER_BYTES_MAX, TRANSFER_BYTES_MAX,
};
use crate::target::lock;

/// Classes from [`BUFFER_CLASS_BYTES_MIN`] to the largest transfer.
const CLASSES: usize =
    (TRANSFER_BYTES_MAX.ilog2() - (BUFFER_CLASS_BYTES_MIN as u32).ilog2() + 1) as usize;

const _: () = assert!(BUFFER_CLASS_BYTES_MIN.is_power_of_two());
const _: () = assert!(TRANSFER_BYTES_MAX.is_power_of_two());
const _: () = assert!(TRANSFER_BYTES_MAX as usize >= BUFFER_CLASS_BYTES_MIN);

/// The free lists of the whole server.
pub(crate) struct Buffers {
    idle: Mutex<Idle>,
}

struct Idle {
    lists: [Vec<AlignedBuf>; CLASSES],
    bytes: usize,
}

/// A buffer of at least `len` bytes taken from [`Buffers`]; it returns there when dropped.
pub(crate) struct Buffer {
    buf: Option<AlignedBuf>,
    len: usize,
    home: Arc<Buffers>,
}

fn class_of(len: usize) -> usize {
    let size = len.max(BUFFER_CLASS_BYTES_MIN).next_power_of_two();
    (size.ilog2() - BUFFER_CLASS_BYTES_MIN.ilog2()) as usize
}

fn class_bytes(class: usize) -> usize {
    BUFFER_CLASS_BYTES_MIN << class
}

impl Buffers {
    pub fn new() -> Buffers {
        Buffers {
            idle: Mutex::new(Idle {
                lists: std::array::from_fn(|_| Vec::new()),
                bytes: 0,
            }),
        }
    }

    /// A buffer showing `len` bytes (at most the largest transfer); its contents are unspecified.
    pub fn take(self: &Arc<Self>, len: usize) -> Buffer {
        debug_assert!(
            len <= TRANSFER_BYTES_MAX as usize,
            "checked before any buffer"
        );
        let class = class_of(len);
        let reused = {
            let mut idle = lock(&self.idle);
            let buf = idle.lists[class].pop();
            if buf.is_some() {
                idle.bytes -= class_bytes(class);
            }
            buf
        };
        Buffer {
            buf: Some(reused.unwrap_or_else(|| AlignedBuf::zeroed(class_bytes(class)))),
            len,
            home: self.clone(),
        }
    }

    fn give_back(&self, buf: AlignedBuf) {
        let class = class_of(buf.len());
        let mut idle = lock(&self.idle);
        if idle.lists[class].len() < IDLE_BUFFERS_PER_CLASS_MAX
            && idle.bytes + buf.len() <= IDLE_BUFFER_BYTES_MAX
        {
            idle.bytes += buf.len();
            idle.lists[class].push(buf);
        }
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf.as_ref().expect("present until dropped")[..self.len]
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut().expect("present until dropped")[..self.len]
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.home.give_back(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_within_their_class_and_idle_memory_is_bounded() {
        let buffers = Arc::new(Buffers::new());
        let mut a = buffers.take(5000);
        assert_eq!(a.len(), 5000);
        assert_eq!(a.as_ptr() as usize % 4096, 0, "aligned for direct I/O");
        a[4999] = 7;
        let at = a.as_ptr();
        drop(a);
        let b = buffers.take(8192);
        assert_eq!(b.as_ptr(), at, "the same 8 KiB class");
        let c = buffers.take(8192);
        assert_ne!(c.as_ptr(), at);
        drop((b, c));
        let big: Vec<Buffer> = (0..IDLE_BUFFERS_PER_CLASS_MAX + 3)
            .map(|_| buffers.take(1 << 20))
            .collect();
        drop(big);
        let idle = lock(&buffers.idle);
        assert!(idle.bytes <= IDLE_BUFFER_BYTES_MAX);
        // The two idle 8 KiB buffers count against the bound too.
        assert_eq!(
            idle.lists[class_of(1 << 20)].len(),
            (IDLE_BUFFER_BYTES_MAX - 2 * 8192) >> 20
        );
        assert_eq!(idle.lists[class_of(8192)].len(), 2);
    }
}
