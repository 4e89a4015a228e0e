//! ggml tensor types and their dequantisation to f32.
//!
//! Block layouts follow ggml (`ggml-common.h`, `ggml-quants.c`); every scale is an IEEE half
//! (`d`, `m`, `dmin`), little-endian:
//!
//! | type | block | bytes | layout and value |
//! |------|-------|-------|------------------|
//! | F32  | 1   | 4   | `f32` |
//! | F16  | 1   | 2   | `f16` |
//! | BF16 | 1   | 2   | `bf16` |
//! | Q8_0 | 32  | 34  | `d`, `qs[32]: i8`; `y = d·q` |
//! | Q4_0 | 32  | 18  | `d`, `qs[16]`; `y[j] = d·(lo(qs[j]) − 8)`, `y[j+16] = d·(hi(qs[j]) − 8)` |
//! | Q4_1 | 32  | 20  | `d`, `m`, `qs[16]`; `y[j] = d·lo(qs[j]) + m`, `y[j+16] = d·hi(qs[j]) + m` |
//! | Q4_K | 256 | 144 | `d`, `dmin`, `scales[12]` (eight 6-bit scale/min pairs), `qs[128]`; per 32: `y = d·sc·q − dmin·m` |
//! | Q6_K | 256 | 210 | `ql[128]`, `qh[64]`, `scales[16]: i8`, `d`; `y = d·sc·(q − 32)`, `q` 6 bits |
//!
//! Each is checked against the Python `gguf` package's `gguf.quants.dequantize` in
//! `tests/reference/gguf.rs` (values from `models/scripts/generate_llama_reference.py`).

use std::fmt;

/// A ggml tensor element type this crate can dequantise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float (type 0).
    F32,
    /// 16-bit IEEE float (type 1).
    F16,
    /// 4-bit, 32 per block, one scale (type 2).
    Q4_0,
    /// 4-bit, 32 per block, scale and minimum (type 3).
    Q4_1,
    /// 8-bit, 32 per block, one scale (type 8).
    Q8_0,
    /// 4-bit k-quant, 256 per super-block (type 12).
    Q4K,
    /// 6-bit k-quant, 256 per super-block (type 14).
    Q6K,
    /// bfloat16 (type 30).
    BF16,
}

impl GgmlType {
    /// The type for ggml's numeric id, or `None` for a type this crate does not dequantise.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// Elements per block.
    pub fn block_len(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q6K => 210,
        }
    }

    /// Bytes taken by `elements` values, or `None` if `elements` is not a whole number of blocks.
    pub fn bytes_for(self, elements: usize) -> Option<usize> {
        elements
            .is_multiple_of(self.block_len())
            .then(|| elements / self.block_len() * self.block_bytes())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q6K => "Q6_K",
            Self::BF16 => "BF16",
        })
    }
}

/// Name of ggml type `id`, for errors about types this crate cannot read.
pub fn ggml_type_name(id: u32) -> String {
    const NAMES: [&str; 31] = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
        "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
    ];
    usize::try_from(id)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("type {id}"), |name| (*name).to_string())
}

/// IEEE 754 half to f32 (exact, subnormals and infinities included).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match (exponent, mantissa) {
        (0, 0) => 0,
        // Subnormal: mantissa · 2^-24, exact in f32.
        #[allow(clippy::cast_precision_loss, reason = "mantissa < 1024")]
        (0, m) => (m as f32 * f32::from_bits(0x3380_0000)).to_bits(),
        (0x1f, m) => 0x7f80_0000 | (m << 13),
        (e, m) => ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(sign | magnitude)
}

fn half(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// Dequantises `data`, which must hold exactly `elements` values of type `ty` (the caller
/// checks the length with [`GgmlType::bytes_for`]).
pub fn dequantize(ty: GgmlType, data: &[u8], elements: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(elements);
    let blocks = data.chunks_exact(ty.block_bytes());
    match ty {
        GgmlType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => out.extend(blocks.map(|b| half(b, 0))),
        GgmlType::BF16 => out.extend(
            blocks.map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)),
        ),
        GgmlType::Q8_0 => blocks.for_each(|b| {
            let d = half(b, 0);
            out.extend(b[2..34].iter().map(|&q| d * f32::from(q.cast_signed())));
        }),
        GgmlType::Q4_0 => blocks.for_each(|b| {
            let d = half(b, 0);
            let qs = &b[2..18];
            out.extend(qs.iter().map(|&q| d * (f32::from(q & 0xf) - 8.0)));
            out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
        }),
        GgmlType::Q4_1 => blocks.for_each(|b| {
            let (d, m) = (half(b, 0), half(b, 2));
            let qs = &b[4..20];
            out.extend(qs.iter().map(|&q| d * f32::from(q & 0xf) + m));
            out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
        }),
        GgmlType::Q4K => blocks.for_each(|b| dequantize_q4k(b, &mut out)),
        GgmlType::Q6K => blocks.for_each(|b| dequantize_q6k(b, &mut out)),
    }
    out
}

/// Scale and minimum `j` (0..8) of a Q4_K super-block, 6 bits each, packed in 12 bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (f32::from(sc), f32::from(m))
}

fn dequantize_q4k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let scales = &b[4..16];
    for (chunk, q) in b[16..144].chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        out.extend(q.iter().map(|&x| d1 * f32::from(x & 0xf) - m1));
        out.extend(q.iter().map(|&x| d2 * f32::from(x >> 4) - m2));
    }
}

fn dequantize_q6k(b: &[u8], out: &mut Vec<f32>) {
    let d = half(b, 208);
    for half_block in 0..2 {
        let ql = &b[64 * half_block..64 * half_block + 64];
        let qh = &b[128 + 32 * half_block..128 + 32 * half_block + 32];
        let sc = &b[192 + 8 * half_block..192 + 8 * half_block + 8];
        let mut y = [0.0f32; 128];
        for l in 0..32 {
            let is = l / 16;
            let q = |low: u8, shift: u32| {
                f32::from((low | (((qh[l] >> shift) & 3) << 4)).cast_signed() - 32)
            };
            let scale = |k: usize| d * f32::from(sc[is + k].cast_signed());
            y[l] = scale(0) * q(ql[l] & 0xf, 0);
            y[l + 32] = scale(2) * q(ql[l + 32] & 0xf, 2);
            y[l + 64] = scale(4) * q(ql[l] >> 4, 4);
            y[l + 96] = scale(6) * q(ql[l + 32] >> 4, 6);
        }
        out.extend_from_slice(&y);
    }
}
