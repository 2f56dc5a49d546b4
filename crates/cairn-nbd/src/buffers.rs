//! The aligned buffers of one connection (write payloads and read replies), kept for reuse so that
//! a request costs neither an allocation nor the zeroing of a fresh buffer.
//!
//! Invariants:
//! - A buffer is handed out at a capacity of its length rounded up to a power of two (at least
//!   4096), so buffers of one size class serve each other's requests.
//! - A buffer handed out is filled whole before anything reads it: a payload by reading exactly
//!   its length from the socket (or the connection ends), a read reply by `Volume::read`, which
//!   writes every byte or fails (and then no data is sent). So a reused buffer never shows what it
//!   held before, and buffers never move between connections.
//! - At most [`limits::BUFFERS_KEPT_BYTES_MAX`] bytes are kept per connection; a buffer given
//!   back beyond that is freed.

use std::sync::Mutex;

use cairn_export::AlignedBuf;

use crate::limits;

/// Free buffers of one connection, with the bytes they hold.
#[derive(Default)]
pub(crate) struct Buffers {
    free: Mutex<(Vec<AlignedBuf>, usize)>,
}

fn class_bytes(len: usize) -> usize {
    len.next_power_of_two()
        .max(limits::BLOCK_SIZE_PREFERRED_BYTES as usize)
}

impl Buffers {
    /// A buffer of `len` bytes (see the module invariants: the caller fills it whole).
    pub fn take(&self, len: usize) -> AlignedBuf {
        let class = class_bytes(len);
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            let (list, kept) = &mut *free;
            let found = list.iter().rposition(|b| b.capacity() == class);
            found.map(|i| {
                *kept -= class;
                list.swap_remove(i)
            })
        };
        let mut buf = reused.unwrap_or_else(|| AlignedBuf::zeroed(class));
        buf.set_len(len);
        buf
    }

    /// Gives a buffer back for reuse, or frees it when enough are kept.
    pub fn give(&self, buf: AlignedBuf) {
        let size = buf.capacity();
        if size != class_bytes(size) {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let (list, kept) = &mut *free;
        if *kept + size <= limits::BUFFERS_KEPT_BYTES_MAX {
            *kept += size;
            list.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_size_class_within_the_bound() {
        let buffers = Buffers::default();
        let mut a = buffers.take(4096);
        a.fill(1);
        let ptr = a.as_ptr();
        buffers.give(a);
        let b = buffers.take(1000);
        assert_eq!((b.as_ptr(), b.len(), b.capacity()), (ptr, 1000, 4096));
        let c = buffers.take(1 << 20);
        assert_eq!(c.capacity(), 1 << 20);
        buffers.give(c);
        assert_ne!(buffers.take(4096).as_ptr(), ptr, "the 4 KiB buffer is out");
        let many: Vec<_> = (0..limits::BUFFERS_KEPT_BYTES_MAX / (1 << 20) + 2)
            .map(|_| buffers.take(1 << 20))
            .collect();
        many.into_iter().for_each(|b| buffers.give(b));
        assert!(buffers.free.lock().unwrap().1 <= limits::BUFFERS_KEPT_BYTES_MAX);
    }
}
