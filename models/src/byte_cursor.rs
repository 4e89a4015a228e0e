//! A bounds-checked little-endian reader over a weight file's bytes, shared by the GGUF and
//! CTranslate2 readers. Its errors say what was being read and where the file ended.

/// A cursor over `bytes`, at byte `at`.
pub(crate) struct ByteCursor<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> ByteCursor<'a> {
    /// A cursor at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// The next `n` bytes, for reading `what`.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let bytes = self.bytes;
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                format!(
                    "the file is truncated: {what} needs {n} bytes at byte {}, but the file ends at byte {}",
                    self.at,
                    bytes.len()
                )
            })?;
        let slice = &bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, String> {
        self.array::<1>(what).map(|[b]| b)
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, String> {
        self.array(what).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Bytes left after the cursor.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
}
