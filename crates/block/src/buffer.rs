//! Memory buffers aligned for `O_DIRECT`.

/// Alignment of every buffer: enough for `O_DIRECT` on any logical block size up to 4 KiB.
pub(crate) const BUFFER_ALIGN: usize = 4096;

/// A zero-filled byte buffer whose start is aligned to [`BUFFER_ALIGN`].
///
/// It over-allocates a plain `Vec` and starts at the first aligned byte, which needs no unsafe
/// code; the zeroed allocation is lazily backed by the kernel, so untouched pages cost nothing.
pub(crate) struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` zero bytes.
    pub(crate) fn new(len: usize) -> Self {
        let storage = vec![0u8; len + BUFFER_ALIGN];
        let addr = storage.as_ptr() as usize;
        let start = (BUFFER_ALIGN - addr % BUFFER_ALIGN) % BUFFER_ALIGN;
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
