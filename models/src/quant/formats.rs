//! Every GGUF block type as 32-element sub-blocks of small unsigned integers with two scales
//! and two offsets each (one per 16-element half): `w = scale·u + offset`. One dot-product
//! kernel then serves every type; only the unpacking of `u` and the per-block scales differ.
//!
//! | type | sub-blocks per block | `u` | scale, offset per half |
//! |------|---:|------|------|
//! | Q4_0 | 1 | nibble | `d`, `−8d` |
//! | Q4_1 | 1 | nibble | `d`, `m` |
//! | Q5_0 | 1 | nibble + fifth bit | `d`, `−16d` |
//! | Q5_1 | 1 | nibble + fifth bit | `d`, `m` |
//! | Q8_0 | 1 | the signed byte itself ([`Format::SIGNED`]) | `d`, 0 |
//! | Q2_K | 8 | 2 bits | `d·sc`, `−dmin·m` (a scale and a minimum per half) |
//! | Q3_K | 8 | 2 bits + the `hmask` bit | `d·sc`, `−4d·sc` (signed 6-bit `sc` per half) |
//! | Q4_K | 8 | nibble | `d·sc`, `−dmin·m` (one pair per sub-block) |
//! | Q5_K | 8 | nibble + `qh` bit | as Q4_K |
//! | Q6_K | 8 | nibble + two `qh` bits | `d·sc`, `−32d·sc` (signed 8-bit `sc` per half) |
//!
//! The element order and bit positions are those of `gguf::dequantize` (whose docs describe
//! each layout); the unit tests check every type against it.

use crate::gguf::{GgmlType, f16_to_f32, scale_k3, scale_min_k4};

/// Scales and offsets of every sub-block of one block, `[sub][half]`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BlockScales {
    pub scale: [[f32; 2]; 8],
    pub offset: [[f32; 2]; 8],
}

impl BlockScales {
    #[inline]
    fn uniform(scale: f32, offset: f32) -> Self {
        let mut s = Self::default();
        s.scale[0] = [scale; 2];
        s.offset[0] = [offset; 2];
        s
    }
}

/// A GGUF block type as the kernels see it.
pub(crate) trait Format {
    const TYPE: GgmlType;
    /// 32-element sub-blocks per block.
    const SUBS: usize;
    /// `u` is a signed byte (Q8_0) rather than an unsigned integer below 64.
    const SIGNED: bool = false;
    /// The scales and offsets of `block`'s sub-blocks.
    fn scales(block: &[u8]) -> BlockScales;
    /// Sub-block `sub`'s 32 values of `u` (bytes; two's complement where [`Self::SIGNED`]).
    fn unpack(block: &[u8], sub: usize) -> [u8; 32];
}

#[inline]
pub(crate) fn half(block: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([block[at], block[at + 1]]))
}

fn nibbles(qs: &[u8]) -> [u8; 32] {
    let mut u = [0; 32];
    for (j, &q) in qs[..16].iter().enumerate() {
        u[j] = q & 0xf;
        u[j + 16] = q >> 4;
    }
    u
}

fn with_fifth_bits(mut u: [u8; 32], qh: &[u8]) -> [u8; 32] {
    let bits = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    for (j, value) in u.iter_mut().enumerate() {
        *value |= u8::from((bits >> j) & 1 == 1) << 4;
    }
    u
}

/// Applies `f` to the 32 bytes at `at`.
fn map32(block: &[u8], at: usize, f: impl Fn(usize, u8) -> u8) -> [u8; 32] {
    let mut u = [0; 32];
    for (l, value) in u.iter_mut().enumerate() {
        *value = f(l, block[at + l]);
    }
    u
}

#[derive(Debug)]
pub(crate) struct Q4_0;
#[derive(Debug)]
pub(crate) struct Q4_1;
#[derive(Debug)]
pub(crate) struct Q5_0;
#[derive(Debug)]
pub(crate) struct Q5_1;
#[derive(Debug)]
pub(crate) struct Q8_0;
#[derive(Debug)]
pub(crate) struct Q2K;
#[derive(Debug)]
pub(crate) struct Q3K;
#[derive(Debug)]
pub(crate) struct Q4K;
#[derive(Debug)]
pub(crate) struct Q5K;
#[derive(Debug)]
pub(crate) struct Q6K;

impl Format for Q4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const SUBS: usize = 1;
    #[inline]
    fn scales(b: &[u8]) -> BlockScales {
        let d = half(b, 0);
        BlockScales::uniform(d, -8.0 * d)
    }
    fn unpack(b: &[u8], _: usize) -> [u8; 32] {
        nibbles(&b[2..18])
    }
}

impl Format for Q4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const SUBS: usize = 1;
    #[inline]
    fn scales(b: &[u8]) -> BlockScales {
        BlockScales::uniform(half(b, 0), half(b, 2))
    }
    fn unpack(b: &[u8], _: usize) -> [u8; 32] {
        nibbles(&b[4..20])
    }
}

impl Format for Q5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const SUBS: usize = 1;
    #[inline]
    fn scales(b: &[u8]) -> BlockScales {
        let d = half(b, 0);
        BlockScales::uniform(d, -16.0 * d)
    }
    fn unpack(b: &[u8], _: usize) -> [u8; 32] {
        with_fifth_bits(nibbles(&b[6..22]), &b[2..6])
    }
}

impl Format for Q5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const SUBS: usize = 1;
    #[inline]
    fn scales(b: &[u8]) -> BlockScales {
        BlockScales::uniform(half(b, 0), half(b, 2))
    }
    fn unpack(b: &[u8], _: usize) -> [u8; 32] {
        with_fifth_bits(nibbles(&b[8..24]), &b[4..8])
    }
}

impl Format for Q8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const SUBS: usize = 1;
    const SIGNED: bool = true;
    #[inline]
    fn scales(b: &[u8]) -> BlockScales {
        BlockScales::uniform(half(b, 0), 0.0)
    }
    fn unpack(b: &[u8], _: usize) -> [u8; 32] {
        map32(b, 2, |_, q| q)
    }
}

impl Format for Q2K {
    const TYPE: GgmlType = GgmlType::Q2K;
    const SUBS: usize = 8;
    #[inline]
    fn scales(b: &[u8]) -> BlockScales {
        let (d, dmin) = (half(b, 80), half(b, 82));
        let mut s = BlockScales::default();
        for (i, &sc) in b[..16].iter().enumerate() {
            s.scale[i / 2][i % 2] = d * f32::from(sc & 0xf);
            s.offset[i / 2][i % 2] = -dmin * f32::from(sc >> 4);
        }
        s
    }
    fn unpack(b: &[u8], sub: usize) -> [u8; 32] {
        let shift = 2 * (sub % 4);
        map32(b, 16 + 32 * (sub / 4), |_, q| (q >> shift) & 3)
    }
}

impl Format for Q3K {
    const TYPE: GgmlType = GgmlType::Q3K;
    const SUBS: usize = 8;
    #[inline]
    fn scales(b: &[u8]) -> BlockScales {
        let d = half(b, 108);
        let mut s = BlockScales::default();
        for i in 0..16 {
            let dl = d * scale_k3(i, &b[96..108]);
            s.scale[i / 2][i % 2] = dl;
            s.offset[i / 2][i % 2] = -4.0 * dl;
        }
        s
    }
    fn unpack(b: &[u8], sub: usize) -> [u8; 32] {
        let shift = 2 * (sub % 4);
        map32(b, 32 + 32 * (sub / 4), |l, q| {
            ((q >> shift) & 3) | (((b[l] >> sub) & 1) << 2)
        })
    }
}

fn k4_scales(b: &[u8]) -> BlockScales {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let mut s = BlockScales::default();
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &b[4..16]);
        s.scale[j] = [d * sc; 2];
        s.offset[j] = [-dmin * m; 2];
    }
    s
}

impl Format for Q4K {
    const TYPE: GgmlType = GgmlType::Q4K;
    const SUBS: usize = 8;
    #[inline]
    fn scales(b: &[u8]) -> BlockScales {
        k4_scales(b)
    }
    fn unpack(b: &[u8], sub: usize) -> [u8; 32] {
        let shift = 4 * (sub % 2);
        map32(b, 16 + 32 * (sub / 2), |_, q| (q >> shift) & 0xf)
    }
}

impl Format for Q5K {
    const TYPE: GgmlType = GgmlType::Q5K;
    const SUBS: usize = 8;
    #[inline]
    fn scales(b: &[u8]) -> BlockScales {
        k4_scales(b)
    }
    fn unpack(b: &[u8], sub: usize) -> [u8; 32] {
        let shift = 4 * (sub % 2);
        map32(b, 48 + 32 * (sub / 2), |l, q| {
            ((q >> shift) & 0xf) | (((b[16 + l] >> sub) & 1) << 4)
        })
    }
}

impl Format for Q6K {
    const TYPE: GgmlType = GgmlType::Q6K;
    const SUBS: usize = 8;
    #[inline]
    fn scales(b: &[u8]) -> BlockScales {
        let d = half(b, 208);
        let mut s = BlockScales::default();
        for (i, &sc) in b[192..208].iter().enumerate() {
            // Scale i covers elements 16·i.. of the super-block: sub-block i / 2, half i % 2.
            let dl = d * f32::from(sc.cast_signed());
            s.scale[i / 2][i % 2] = dl;
            s.offset[i / 2][i % 2] = -32.0 * dl;
        }
        s
    }
    fn unpack(b: &[u8], sub: usize) -> [u8; 32] {
        let (half_block, j) = (sub / 4, sub % 4);
        let ql = 64 * half_block + 32 * (j % 2);
        let qh = 128 + 32 * half_block;
        let (nibble_shift, high_shift) = (4 * (j / 2), 2 * j);
        map32(b, ql, |l, q| {
            ((q >> nibble_shift) & 0xf) | (((b[qh + l] >> high_shift) & 3) << 4)
        })
    }
}
