//! [`AlignedBuf`]: an initialised heap buffer aligned to [`BUFFER_ALIGN_BYTES`] (4096), the
//! memory O_DIRECT requires: zero-filled, or a copy of a slice followed by zeros.
//!
//! Callers that pass such buffers to a direct-I/O [`crate::FileDevice`] avoid a bounce copy; the
//! device also uses them itself as bounce buffers for unaligned caller memory.
//!
//! Invariants: the allocation is never empty (at least one alignment unit, so the layout is never
//! zero-sized), its address is a multiple of [`BUFFER_ALIGN_BYTES`], every byte is initialised, and
//! `len` never exceeds the allocation.

use std::alloc::{alloc, alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::limits::BUFFER_ALIGN_BYTES;

/// A heap buffer of `len` bytes, every byte of its allocation initialised, whose address is a
/// multiple of 4096.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: `AlignedBuf` owns its allocation exclusively (like a `Box<[u8]>`); moving it to another
// thread moves that ownership, and shared references only allow reads.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above; `&AlignedBuf` only gives `&[u8]`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zero-filled buffer of `len` bytes.
    ///
    /// # Panics
    /// If `len` rounded up to 4096 overflows `isize` (no such allocation can exist).
    pub fn zeroed(len: usize) -> AlignedBuf {
        let layout = Self::layout_for(len);
        // SAFETY: `layout` has a non-zero size (at least one alignment unit). The memory is owned by
        // the new `AlignedBuf` until its `Drop` frees it with the same layout.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| handle_alloc_error(layout));
        AlignedBuf { ptr, len, layout }
    }

    /// A buffer holding a copy of `data`, the rest of its allocation zero. The allocation is not
    /// zeroed first: `data` is copied into it and only the tail past `data` (under 4096 bytes) is
    /// zero-filled.
    ///
    /// # Panics
    /// As [`AlignedBuf::zeroed`].
    pub fn copy_of(data: &[u8]) -> AlignedBuf {
        let layout = Self::layout_for(data.len());
        // SAFETY: `layout` has a non-zero size (at least one alignment unit). The memory is owned
        // by the `AlignedBuf` made below until its `Drop` frees it with the same layout.
        let raw = unsafe { alloc(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| handle_alloc_error(layout));
        let tail = layout.size() - data.len();
        // SAFETY: `raw` is a fresh allocation of `layout.size()` bytes that nothing else can
        // reach yet (so it cannot overlap `data`), and `data.len() + tail == layout.size()`: the
        // copy writes `[0, data.len())` and the fill `[data.len(), layout.size())`, both inside
        // it. Together they initialise every byte before the buffer is handed out, which is what
        // `deref` and `set_len` rely on.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), raw, data.len());
            std::ptr::write_bytes(raw.add(data.len()), 0, tail);
        }
        AlignedBuf {
            ptr,
            len: data.len(),
            layout,
        }
    }

    /// The allocation for `len` bytes: rounded up to a whole number of alignment units, at least
    /// one.
    fn layout_for(len: usize) -> Layout {
        let size = len.max(1).next_multiple_of(BUFFER_ALIGN_BYTES);
        Layout::from_size_align(size, BUFFER_ALIGN_BYTES).expect("buffer too large")
    }

    /// Bytes the allocation holds: `len` rounded up to a multiple of 4096 (at least 4096).
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// Makes the buffer `len` bytes long within its allocation, for reuse at another length.
    /// The bytes keep what they held (every byte of the allocation is initialised).
    ///
    /// # Panics
    /// If `len` exceeds [`AlignedBuf::capacity`].
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity(), "length {len} beyond the allocation");
        self.len = len;
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to an initialised allocation of at least `len` bytes owned by `self`,
        // and the shared borrow of `self` keeps it alive and unmodified for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and the exclusive borrow of `self` makes the slice the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc_zeroed(self.layout)` or `alloc(self.layout)` and is
        // freed exactly once, here.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_writable() {
        for len in [0, 1, 512, 4096, 4097, 1 << 20] {
            let mut buf = AlignedBuf::zeroed(len);
            assert_eq!(buf.len(), len);
            assert_eq!(buf.as_ptr() as usize % BUFFER_ALIGN_BYTES, 0);
            assert!(buf.iter().all(|&b| b == 0));
            buf.fill(0xA5);
            assert!(buf.iter().all(|&b| b == 0xA5));
        }
    }

    #[test]
    fn a_copy_is_aligned_and_zero_past_the_data() {
        for len in [0usize, 1, 4095, 4096, 5000, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
            let mut buf = AlignedBuf::copy_of(&data);
            assert_eq!(&*buf, &data[..]);
            assert_eq!(buf.as_ptr() as usize % BUFFER_ALIGN_BYTES, 0);
            assert_eq!(
                buf.capacity(),
                len.max(1).next_multiple_of(BUFFER_ALIGN_BYTES)
            );
            let capacity = buf.capacity();
            buf.set_len(capacity);
            assert!(buf[len..].iter().all(|&b| b == 0), "tail of {len}");
            buf.set_len(0);
            assert!(buf.is_empty());
        }
    }
}
