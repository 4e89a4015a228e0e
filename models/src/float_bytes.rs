//! Little-endian float tensors as weight files store them (safetensors, CTranslate2), widened
//! to f32 for the model's layout.

/// A stored float type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredFloat {
    F32,
    F16,
    Bf16,
}

/// `bytes` (whole elements of `kind`, little-endian) as f32 values.
pub(crate) fn widen_to_f32(kind: StoredFloat, bytes: &[u8]) -> Vec<f32> {
    match kind {
        StoredFloat::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        StoredFloat::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        StoredFloat::Bf16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}
