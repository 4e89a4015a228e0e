//! Weights repacked once at load for the tiled kernels: eight rows interleaved four values at
//! a time, so one 32-byte vector holds values `4i..4i+4` of a sub-block for all eight rows and
//! an integer dot against four broadcast activation bytes leaves row `j`'s partial sum in lane
//! `j`. A sub-block then costs one conversion and one FMA per eight rows instead of one
//! horizontal sum per row, and each unpacked vector serves a whole tile of activation rows.
//!
//! A group-block is the eight rows' blocks of one block column, with the same bits as the
//! file (Q4_K's 6-bit scales and minimums widen to bytes: 1184 bytes instead of 1152), laid
//! out per type as below (`d`, `m` are each row's f16 fields, eight in a row):
//!
//! | type | layout |
//! |------|--------|
//! | Q4_0 | `d` · nibbles |
//! | Q4_1 | `d` · `m` · nibbles |
//! | Q5_0 | `d` · fifth bits · nibbles |
//! | Q5_1 | `d` · `m` · fifth bits · nibbles |
//! | Q8_0 | `d` · bytes |
//! | Q4_K | `d` · `dmin` · 8×8 scales · 8×8 minimums · 8 × nibbles |
//! | Q6_K | `d` · 16×8 scales · 8 × (nibbles · high bits) |
//!
//! Within a sub-block, value `4i+t` of row `j` sits at byte `4j+t` of column `i`: nibbles are
//! four vectors whose low halves are columns 0–3 and high halves columns 4–7; fifth bits are
//! one vector whose bit `i` belongs to column `i`; Q6_K's two high bits are two vectors of four
//! columns each (bits `2(i % 4)`). Rows past the matrix's last (a count not a multiple of 8)
//! are zero blocks.

use rayon::prelude::*;

use super::activations::ActRow;
use super::formats::{Format, Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q6K, Q8_0, half};
use crate::gguf::scale_min_k4;

/// Rows interleaved in one group.
pub(crate) const GROUP: usize = 8;

/// A block type in the interleaved layout.
pub(crate) trait Packed: Format {
    /// Bytes of one group-block.
    const GROUP_BYTES: usize;
    /// Writes the group-block of `blocks` (one file block per row) into `out` (zeroed).
    fn pack(blocks: &[&[u8]; GROUP], out: &mut [u8]);
    /// Row `j`'s values `u` of sub-block `k` (as [`Format::unpack`]).
    fn unpacked(g: &[u8], j: usize, k: usize) -> [u8; 32];
    /// Row `j`'s scale and offset per half of sub-block `k` (as [`Format::scales`]).
    fn scale_offset(g: &[u8], j: usize, k: usize) -> ([f32; 2], [f32; 2]);
}

fn put_nibbles(out: &mut [u8], j: usize, u: &[u8; 32]) {
    for v in 0..4 {
        for t in 0..4 {
            out[32 * v + 4 * j + t] = (u[4 * v + t] & 0xf) | (u[16 + 4 * v + t] << 4);
        }
    }
}

fn nibbles_of(p: &[u8], j: usize) -> [u8; 32] {
    let mut u = [0; 32];
    for v in 0..4 {
        for t in 0..4 {
            let byte = p[32 * v + 4 * j + t];
            u[4 * v + t] = byte & 0xf;
            u[16 + 4 * v + t] = byte >> 4;
        }
    }
    u
}

fn with_fifth(mut u: [u8; 32], h: &[u8], j: usize) -> [u8; 32] {
    for i in 0..8 {
        for t in 0..4 {
            u[4 * i + t] |= ((h[4 * j + t] >> i) & 1) << 4;
        }
    }
    u
}

/// Bits 4–5 of each value into Q6_K's two high-bit vectors.
fn put_high2(out: &mut [u8], j: usize, u: &[u8; 32]) {
    for i in 0..8 {
        for t in 0..4 {
            out[32 * (i / 4) + 4 * j + t] |= ((u[4 * i + t] >> 4) & 3) << (2 * (i % 4));
        }
    }
}

fn with_high2(mut u: [u8; 32], h: &[u8], j: usize) -> [u8; 32] {
    for i in 0..8 {
        for t in 0..4 {
            u[4 * i + t] |= ((h[32 * (i / 4) + 4 * j + t] >> (2 * (i % 4))) & 3) << 4;
        }
    }
    u
}

/// Copies the f16 at `block[at..at + 2]` of every row into eight f16s at `out[0..16]`.
fn put_halves(blocks: &[&[u8]; GROUP], at: usize, out: &mut [u8]) {
    for (j, block) in blocks.iter().enumerate() {
        out[2 * j..2 * j + 2].copy_from_slice(&block[at..at + 2]);
    }
}

/// The one-sub-block types: `d` at 0, and an optional `m`, optional fifth bits and the
/// nibbles, each at (file byte, group byte).
struct Simple {
    m: Option<(usize, usize)>,
    fifth: Option<(usize, usize)>,
    qs: (usize, usize),
}

impl Simple {
    fn pack(&self, blocks: &[&[u8]; GROUP], out: &mut [u8]) {
        put_halves(blocks, 0, &mut out[..16]);
        if let Some((file, group)) = self.m {
            put_halves(blocks, file, &mut out[group..group + 16]);
        }
        for (j, block) in blocks.iter().enumerate() {
            // The file's byte `l` holds values `l` and `l + 16`, as columns `l / 4` and
            // `l / 4 + 4` want them: four bytes at a time move unchanged.
            let (file, group) = self.qs;
            for v in 0..4 {
                let at = group + 32 * v + 4 * j;
                out[at..at + 4].copy_from_slice(&block[file + 4 * v..file + 4 * v + 4]);
            }
            if let Some((file, group)) = self.fifth {
                let qh = u32::from_le_bytes([
                    block[file],
                    block[file + 1],
                    block[file + 2],
                    block[file + 3],
                ]);
                for t in 0..4 {
                    let column_bits = (0..8).map(|i| ((qh >> (4 * i + t)) & 1) << i).sum::<u32>();
                    out[group + 4 * j + t] = column_bits.to_le_bytes()[0];
                }
            }
        }
    }

    fn unpacked(&self, g: &[u8], j: usize) -> [u8; 32] {
        let u = nibbles_of(&g[self.qs.1..], j);
        match self.fifth {
            Some((_, at)) => with_fifth(u, &g[at..at + 32], j),
            None => u,
        }
    }

    /// `(d, m)`, or `(d, bias·d)` for the types without `m`.
    fn scale_offset(&self, g: &[u8], j: usize, bias: f32) -> ([f32; 2], [f32; 2]) {
        let d = half(g, 2 * j);
        let offset = self.m.map_or(bias * d, |(_, at)| half(g, at + 2 * j));
        ([d; 2], [offset; 2])
    }
}

macro_rules! simple {
    ($format:ty, $bytes:expr, $layout:expr, $bias:expr) => {
        impl Packed for $format {
            const GROUP_BYTES: usize = $bytes;
            fn pack(blocks: &[&[u8]; GROUP], out: &mut [u8]) {
                $layout.pack(blocks, out);
            }
            fn unpacked(g: &[u8], j: usize, _: usize) -> [u8; 32] {
                $layout.unpacked(g, j)
            }
            fn scale_offset(g: &[u8], j: usize, _: usize) -> ([f32; 2], [f32; 2]) {
                $layout.scale_offset(g, j, $bias)
            }
        }
    };
}

const Q4_0_LAYOUT: Simple = Simple {
    m: None,
    fifth: None,
    qs: (2, 16),
};
const Q4_1_LAYOUT: Simple = Simple {
    m: Some((2, 16)),
    fifth: None,
    qs: (4, 32),
};
const Q5_0_LAYOUT: Simple = Simple {
    m: None,
    fifth: Some((2, 16)),
    qs: (6, 48),
};
const Q5_1_LAYOUT: Simple = Simple {
    m: Some((2, 16)),
    fifth: Some((4, 32)),
    qs: (8, 64),
};
simple!(Q4_0, 144, Q4_0_LAYOUT, -8.0);
simple!(Q4_1, 160, Q4_1_LAYOUT, 0.0);
simple!(Q5_0, 176, Q5_0_LAYOUT, -16.0);
simple!(Q5_1, 192, Q5_1_LAYOUT, 0.0);

impl Packed for Q8_0 {
    const GROUP_BYTES: usize = 272;
    fn pack(blocks: &[&[u8]; GROUP], out: &mut [u8]) {
        put_halves(blocks, 0, &mut out[..16]);
        for (j, block) in blocks.iter().enumerate() {
            for i in 0..8 {
                let at = 16 + 32 * i + 4 * j;
                out[at..at + 4].copy_from_slice(&block[2 + 4 * i..6 + 4 * i]);
            }
        }
    }
    fn unpacked(g: &[u8], j: usize, _: usize) -> [u8; 32] {
        std::array::from_fn(|e| g[16 + 32 * (e / 4) + 4 * j + e % 4])
    }
    fn scale_offset(g: &[u8], j: usize, _: usize) -> ([f32; 2], [f32; 2]) {
        ([half(g, 2 * j); 2], [0.0; 2])
    }
}

/// Q4_K's group-block: where each part starts.
const Q4K_MINS: usize = 96;
const Q4K_QS: usize = 160;

impl Packed for Q4K {
    const GROUP_BYTES: usize = Q4K_QS + 8 * 128;
    fn pack(blocks: &[&[u8]; GROUP], out: &mut [u8]) {
        put_halves(blocks, 0, &mut out[..16]);
        put_halves(blocks, 2, &mut out[16..32]);
        for (j, block) in blocks.iter().enumerate() {
            for k in 0..8 {
                let (sc, m) = scale_min_k4(k, &block[4..16]);
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "6-bit integers read back as f32"
                )]
                {
                    out[32 + 8 * k + j] = sc as u8;
                    out[Q4K_MINS + 8 * k + j] = m as u8;
                }
                put_nibbles(&mut out[Q4K_QS + 128 * k..], j, &Self::unpack(block, k));
            }
        }
    }
    fn unpacked(g: &[u8], j: usize, k: usize) -> [u8; 32] {
        nibbles_of(&g[Q4K_QS + 128 * k..], j)
    }
    fn scale_offset(g: &[u8], j: usize, k: usize) -> ([f32; 2], [f32; 2]) {
        let (d, dmin) = (half(g, 2 * j), half(g, 16 + 2 * j));
        let (sc, m) = (g[32 + 8 * k + j], g[Q4K_MINS + 8 * k + j]);
        ([d * f32::from(sc); 2], [-dmin * f32::from(m); 2])
    }
}

/// Q6_K's group-block: sub-block `k`'s nibbles at `Q6K_SUBS + 192k`, its high bits 128 later.
const Q6K_SUBS: usize = 144;

impl Packed for Q6K {
    const GROUP_BYTES: usize = Q6K_SUBS + 8 * 192;
    fn pack(blocks: &[&[u8]; GROUP], out: &mut [u8]) {
        put_halves(blocks, 208, &mut out[..16]);
        for (j, block) in blocks.iter().enumerate() {
            for i in 0..16 {
                out[16 + 8 * i + j] = block[192 + i];
            }
            for k in 0..8 {
                let u = Self::unpack(block, k);
                let sub = &mut out[Q6K_SUBS + 192 * k..Q6K_SUBS + 192 * (k + 1)];
                put_nibbles(sub, j, &u);
                put_high2(&mut sub[128..], j, &u);
            }
        }
    }
    fn unpacked(g: &[u8], j: usize, k: usize) -> [u8; 32] {
        let sub = &g[Q6K_SUBS + 192 * k..Q6K_SUBS + 192 * (k + 1)];
        with_high2(nibbles_of(sub, j), &sub[128..], j)
    }
    fn scale_offset(g: &[u8], j: usize, k: usize) -> ([f32; 2], [f32; 2]) {
        let d = half(g, 2 * j);
        let scale = [0, 1].map(|h| d * f32::from(g[16 + 8 * (2 * k + h) + j].cast_signed()));
        (scale, scale.map(|s| -32.0 * s))
    }
}

/// `rows` rows of `F` blocks (`row_bytes` each) as groups of eight interleaved rows.
pub(crate) fn pack<F: Packed>(bytes: &[u8], rows: usize, row_bytes: usize) -> Vec<u8> {
    let block = F::TYPE.block_bytes();
    let blocks = row_bytes / block;
    let zero = vec![0u8; block];
    let groups = rows.div_ceil(GROUP);
    let mut out = vec![0u8; groups * blocks * F::GROUP_BYTES];
    // A whole file is repacked at load: on every core.
    out.par_chunks_mut(blocks * F::GROUP_BYTES)
        .enumerate()
        .for_each(|(g, group)| {
            for (b, gb) in group.chunks_exact_mut(F::GROUP_BYTES).enumerate() {
                let row_blocks: [&[u8]; GROUP] = std::array::from_fn(|j| {
                    let r = GROUP * g + j;
                    if r < rows {
                        &bytes[r * row_bytes + b * block..r * row_bytes + (b + 1) * block]
                    } else {
                        &zero[..]
                    }
                });
                F::pack(&row_blocks, gb);
            }
        });
    out
}

/// Row `j` of a group (`blocks` group-blocks) as f32: `scale·u + offset` per value.
pub(crate) fn dequantize_row<F: Packed>(group: &[u8], j: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(group.len() / F::GROUP_BYTES * 32 * F::SUBS);
    for g in group.chunks_exact(F::GROUP_BYTES) {
        for k in 0..F::SUBS {
            let u = F::unpacked(g, j, k);
            let (scale, offset) = F::scale_offset(g, j, k);
            out.extend(u.iter().enumerate().map(|(l, &u)| {
                let u = if F::SIGNED {
                    f32::from(u.cast_signed())
                } else {
                    f32::from(u)
                };
                scale[l / 16] * u + offset[l / 16]
            }));
        }
    }
    out
}

/// The portable kernel on groups: `out[(g·m + r)·8 + j]` is row `8g + j` of `w` (whole
/// groups) times activation row `r`; the same sums in the same order as `scalar::dot_row`.
pub(crate) fn dot_groups<F: Packed>(w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
    let Some(first) = acts.first() else { return };
    let group_bytes = first.d.len() / F::SUBS * F::GROUP_BYTES;
    let m = acts.len();
    for (group, out) in w
        .chunks_exact(group_bytes)
        .zip(out.chunks_exact_mut(GROUP * m))
    {
        out.fill(0.0);
        for (b, g) in group.chunks_exact(F::GROUP_BYTES).enumerate() {
            for k in 0..F::SUBS {
                let a = b * F::SUBS + k;
                for j in 0..GROUP {
                    let u = F::unpacked(g, j, k);
                    let (scale, offset) = F::scale_offset(g, j, k);
                    for (r, row) in acts.iter().enumerate() {
                        let p = &row.q[32 * a..32 * a + 32];
                        let mut dots = [0i32; 2];
                        for (l, (&u, &p)) in u.iter().zip(p).enumerate() {
                            let weight = if F::SIGNED {
                                i32::from(u.cast_signed())
                            } else {
                                i32::from(u)
                            };
                            dots[l / 16] += weight * i32::from(p);
                        }
                        #[allow(clippy::cast_precision_loss, reason = "|dot| ≤ 16·255·127")]
                        let integer = scale[0] * dots[0] as f32 + scale[1] * dots[1] as f32;
                        out[r * GROUP + j] += row.d[a] * integer
                            + offset[0] * row.half_sums[2 * a]
                            + offset[1] * row.half_sums[2 * a + 1];
                    }
                }
            }
        }
    }
}
