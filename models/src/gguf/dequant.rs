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
//! | Q5_0 | 32  | 22  | `d`, `qh: u32`, `qs[16]`; as Q4_0 with bit `j` of `qh` as the fifth bit of element `j`; `y = d·(q − 16)` |
//! | Q5_1 | 32  | 24  | `d`, `m`, `qh: u32`, `qs[16]`; as Q5_0 without the offset; `y = d·q + m` |
//! | Q2_K | 256 | 84  | `scales[16]` (4-bit scale, 4-bit min), `qs[64]`, `d`, `dmin`; per 16: `y = d·sc·q − dmin·m`, `q` 2 bits |
//! | Q3_K | 256 | 110 | `hmask[32]`, `qs[64]`, `scales[12]` (sixteen 6-bit scales), `d`; per 16: `y = d·(sc − 32)·(q − 4)`, `q` 3 bits |
//! | Q4_K | 256 | 144 | `d`, `dmin`, `scales[12]` (eight 6-bit scale/min pairs), `qs[128]`; per 32: `y = d·sc·q − dmin·m` |
//! | Q5_K | 256 | 176 | `d`, `dmin`, `scales[12]` as Q4_K, `qh[32]`, `qs[128]`; as Q4_K with a fifth bit from `qh` |
//! | Q6_K | 256 | 210 | `ql[128]`, `qh[64]`, `scales[16]: i8`, `d`; `y = d·sc·(q − 32)`, `q` 6 bits |
//!
//! Within a k-quant super-block the 2-bit (Q2_K, Q3_K) and 4-bit (Q4_K, Q5_K) fields are
//! spread the way ggml's SIMD kernels want them: one byte of `qs` holds elements 32 apart, not
//! neighbours, and the high bits (`hmask`, `qh`) are bit planes. The functions below follow
//! that order element by element.
//!
//! Every type ggml has beyond these (the IQ*, TQ*, MXFP4 families, Q8_1/Q8_K, the repacked
//! Q4_0_x_y) is refused when the file is opened, naming the tensor and the type.
//!
//! Each is checked against the Python `gguf` package's `gguf.quants.dequantize` in
//! `tests/reference/gguf.rs` and `tests/reference/qwen_gguf.rs` (values from
//! `models/scripts/generate_llama_reference.py` and `generate_qwen_gguf_reference.py`), and
//! against hand-built blocks in the unit tests below.

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
    /// 5-bit, 32 per block, one scale (type 6).
    Q5_0,
    /// 5-bit, 32 per block, scale and minimum (type 7).
    Q5_1,
    /// 8-bit, 32 per block, one scale (type 8).
    Q8_0,
    /// 2-bit k-quant, 256 per super-block (type 10).
    Q2K,
    /// 3-bit k-quant, 256 per super-block (type 11).
    Q3K,
    /// 4-bit k-quant, 256 per super-block (type 12).
    Q4K,
    /// 5-bit k-quant, 256 per super-block (type 13).
    Q5K,
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
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// Whether values are stored as floats (f32, f16, bf16) rather than in quantised blocks.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::BF16)
    }

    /// Elements per block.
    pub fn block_len(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => 32,
            Self::Q2K | Self::Q3K | Self::Q4K | Self::Q5K | Self::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
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
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::BF16 => "BF16",
        })
    }
}

/// Name of ggml type `id`, for errors about types this crate cannot read.
pub fn ggml_type_name(id: u32) -> String {
    // ggml's `enum ggml_type` in id order; 4, 5 and 31–33, 36–38 are retired layouts that
    // files written by old converters may still carry.
    const NAMES: [&str; 40] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2",
        "Q4_3",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4",
        "Q4_0_4_8",
        "Q4_0_8_8",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4",
        "IQ4_NL_4_8",
        "IQ4_NL_8_8",
        "MXFP4",
    ];
    usize::try_from(id)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("type {id}"), |name| (*name).to_string())
}

/// IEEE 754 half to f32, exact for every value (subnormals, infinities and NaNs included).
///
/// Branch-free on finite values, and inlined: the quantised kernels convert two halves per
/// 32 weights, so a call (or the `half` crate's run-time F16C check) per scale costs more than
/// the dot product it scales. Shifted into f32's place, a half's exponent and mantissa read as
/// the value times 2^−112 (the exponent biases are 15 and 127), subnormal halves too, so one
/// exact multiply by 2^112 rescales them.
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    let bits = u32::from(bits);
    let magnitude = (bits & 0x7fff) << 13;
    let value = if magnitude >= 0x0f80_0000 {
        f32::from_bits(magnitude | 0x7f80_0000)
    } else {
        f32::from_bits(magnitude) * f32::from_bits(0x7780_0000)
    };
    f32::from_bits(value.to_bits() | ((bits & 0x8000) << 16))
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
        GgmlType::Q5_0 => blocks.for_each(|b| {
            let d = half(b, 0);
            for q in five_bit(&b[2..6], &b[6..22]) {
                out.push(d * (f32::from(q) - 16.0));
            }
        }),
        GgmlType::Q5_1 => blocks.for_each(|b| {
            let (d, m) = (half(b, 0), half(b, 2));
            for q in five_bit(&b[4..8], &b[8..24]) {
                out.push(d * f32::from(q) + m);
            }
        }),
        GgmlType::Q2K => blocks.for_each(|b| dequantize_q2k(b, &mut out)),
        GgmlType::Q3K => blocks.for_each(|b| dequantize_q3k(b, &mut out)),
        GgmlType::Q4K => blocks.for_each(|b| dequantize_q4k(b, &mut out)),
        GgmlType::Q5K => blocks.for_each(|b| dequantize_q5k(b, &mut out)),
        GgmlType::Q6K => blocks.for_each(|b| dequantize_q6k(b, &mut out)),
    }
    out
}

/// The 32 five-bit values of a Q5_0/Q5_1 block, in element order: element `j < 16` is the low
/// nibble of `qs[j]`, element `j + 16` its high nibble, and bit `j` of the little-endian `qh`
/// is element `j`'s fifth bit.
fn five_bit(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let high = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let fifth = |j: usize| u8::from((high >> j) & 1 == 1) << 4;
    let mut q = [0u8; 32];
    for (j, &byte) in qs.iter().enumerate() {
        q[j] = (byte & 0xf) | fifth(j);
        q[j + 16] = (byte >> 4) | fifth(j + 16);
    }
    q
}

/// Q2_K: for each half (128 elements, 32 bytes of `qs`) and each bit pair `shift` of those
/// bytes, two runs of 16 elements (bytes 0–15, then 16–31), each with its own 4-bit scale and
/// minimum from `scales`, in that order.
fn dequantize_q2k(b: &[u8], out: &mut Vec<f32>) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (half(b, 80), half(b, 82));
    let mut is = 0;
    for q in qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for run in q.chunks_exact(16) {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * f32::from(sc & 0xf), dmin * f32::from(sc >> 4));
                out.extend(run.iter().map(|&x| dl * f32::from((x >> shift) & 3) - ml));
            }
        }
    }
}

/// Scale `j` (0..16) of a Q3_K super-block: its low four bits are nibble `j / 8` of byte
/// `j % 8`, its high two bits are bit pair `j / 4` of byte `8 + j % 4`; stored offset by 32.
pub(crate) fn scale_k3(j: usize, scales: &[u8]) -> f32 {
    let low = if j < 8 {
        scales[j] & 0xf
    } else {
        scales[j - 8] >> 4
    };
    let high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    f32::from((low | (high << 4)).cast_signed() - 32)
}

/// Q3_K: the order of Q2_K, with the signed 6-bit scales of [`scale_k3`] and no minimum; the
/// third bit of each value is a bit plane of `hmask` (plane `p` covers the 32 elements of the
/// `p`-th bit pair, `hmask[l]` for element `l` of a run pair), and a clear bit means −4.
fn dequantize_q3k(b: &[u8], out: &mut Vec<f32>) {
    let (hmask, qs, scales) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = half(b, 108);
    let (mut is, mut plane) = (0, 0);
    for q in qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for (run, h) in q.chunks_exact(16).zip(hmask.chunks_exact(16)) {
                let dl = d * scale_k3(is, scales);
                is += 1;
                out.extend(run.iter().zip(h).map(|(&x, &hm)| {
                    let low = i16::from((x >> shift) & 3);
                    let minus = if (hm >> plane) & 1 == 1 { 0 } else { 4 };
                    dl * f32::from(low - minus)
                }));
            }
            plane += 1;
        }
    }
}

/// Scale and minimum `j` (0..8) of a Q4_K super-block, 6 bits each, packed in 12 bytes.
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
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

/// Q5_K: Q4_K's order and scales; the fifth bit of the `k`-th 32-element run is bit `k` of
/// `qh[l]` for its element `l`.
fn dequantize_q5k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (scales, qh) = (&b[4..16], &b[16..48]);
    for (chunk, q) in b[48..176].chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let fifth = |h: u8, bit: usize| if (h >> bit) & 1 == 1 { 16.0 } else { 0.0 };
        out.extend(
            q.iter()
                .zip(qh)
                .map(|(&x, &h)| d1 * (f32::from(x & 0xf) + fifth(h, 2 * chunk)) - m1),
        );
        out.extend(
            q.iter()
                .zip(qh)
                .map(|(&x, &h)| d2 * (f32::from(x >> 4) + fifth(h, 2 * chunk + 1)) - m2),
        );
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

#[cfg(test)]
mod tests;
