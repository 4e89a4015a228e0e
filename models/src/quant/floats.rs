//! The unquantised matrix types (f32, f16, bf16): read element by element, multiplied with
//! f32 activations as they are (no activation quantisation).

/// A float element type as the kernels see it.
pub(crate) trait FloatFormat {
    const BYTES: usize;
    /// The value stored in `bytes` (`BYTES` little-endian bytes).
    fn value(bytes: &[u8]) -> f32;
}

#[derive(Debug)]
pub(crate) struct F32;
#[derive(Debug)]
pub(crate) struct F16;
#[derive(Debug)]
pub(crate) struct Bf16;

impl FloatFormat for F32 {
    const BYTES: usize = 4;
    fn value(b: &[u8]) -> f32 {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl FloatFormat for F16 {
    const BYTES: usize = 2;
    fn value(b: &[u8]) -> f32 {
        crate::gguf::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))
    }
}

impl FloatFormat for Bf16 {
    const BYTES: usize = 2;
    fn value(b: &[u8]) -> f32 {
        f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
    }
}
