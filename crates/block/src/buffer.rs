//! Memory buffers aligned for `O_DIRECT`.

/// Alignment of every buffer: enough for `O_DIRECT` on any logical block size up to 4 KiB.
pub(crate) const BUFFER_ALIGN: usize = 4096;

/// Size of a transparent huge page on x86-64 and the usual arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// A zero-filled byte buffer whose start is aligned to [`BUFFER_ALIGN`].
///
/// It over-allocates a plain `Vec` and starts at the first aligned byte; the zeroed allocation is
/// lazily backed by the kernel, so untouched pages cost nothing. A buffer of at least a huge page
/// starts on a huge-page boundary and asks for transparent huge pages: every `O_DIRECT` request
/// pins the buffer's pages, and with 4 KiB pages pinning a 4 MiB chunk (1024 pages) was the
/// largest single cost of a copy's own CPU time in `perf record`.
pub(crate) struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` zero bytes.
    pub(crate) fn new(len: usize) -> Self {
        let align = if len >= HUGE_PAGE {
            HUGE_PAGE
        } else {
            BUFFER_ALIGN
        };
        let storage = vec![0u8; len + align];
        let addr = storage.as_ptr() as usize;
        let start = (align - addr % align) % align;
        if align == HUGE_PAGE {
            let huge = len / HUGE_PAGE * HUGE_PAGE;
            // SAFETY: the range lies inside `storage`, which this buffer owns; MADV_HUGEPAGE only
            // changes how the kernel backs those pages, never their contents. It is advice: a
            // kernel without transparent huge pages refuses it, which changes nothing.
            unsafe {
                libc::madvise(
                    storage.as_ptr().add(start) as *mut libc::c_void,
                    huge,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    /// The first `len` bytes.
    pub(crate) fn slice(&self, len: usize) -> &[u8] {
        &self.storage[self.start..self.start + len.min(self.len)]
    }

    /// The first `len` bytes, writable.
    pub(crate) fn slice_mut(&mut self, len: usize) -> &mut [u8] {
        let end = self.start + len.min(self.len);
        &mut self.storage[self.start..end]
    }
}

/// Whether every byte of `buf` is zero.
///
/// Comparing the slice with itself shifted by one byte lets `memcmp` do the work at full speed
/// without a second buffer of zeros.
pub(crate) fn is_zero(buf: &[u8]) -> bool {
    match buf.split_first() {
        None => true,
        Some((first, _)) => *first == 0 && buf[..buf.len() - 1] == buf[1..],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        for len in [1usize, 4096, 4 << 20] {
            let b = AlignedBuf::new(len);
            assert_eq!(b.slice(len).as_ptr() as usize % BUFFER_ALIGN, 0);
            assert_eq!(b.slice(len).len(), len);
            assert!(b.slice(len).iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn zero_detection_sees_every_byte() {
        assert!(is_zero(&[]));
        let mut v = vec![0u8; 10_000];
        assert!(is_zero(&v));
        for pos in [0usize, 1, 4095, 9_999] {
            v[pos] = 1;
            assert!(!is_zero(&v), "a 1 at {pos} was missed");
            v[pos] = 0;
        }
        // A run of equal non-zero bytes must not pass as zero.
        assert!(!is_zero(&[7u8; 64]));
    }
}
