//! The tiled x86-64 kernels on interleaved weights (`packed.rs`): a tile of eight weight rows
//! (one vector's lanes) × up to eight (AVX-512 VNNI) or four (AVX2) activation rows, each
//! column of a weight sub-block unpacked once per tile and met by every activation row of the
//! tile as four broadcast bytes. Per sub-block and activation row that leaves one conversion
//! and two FMAs (scale, offset) for eight weight rows, and no horizontal sums at all.
#![allow(
    unsafe_code,
    reason = "SIMD intrinsics: unaligned loads from slices whose length is checked by the \
              slicing next to each load, and calls into `#[target_feature]` functions that \
              `Kernels::detect` only selects when the CPU reports the feature"
)]

use std::arch::x86_64::{
    __m128i, __m256, __m256i, _mm_cvtsi32_si128, _mm_loadl_epi64, _mm256_add_epi32,
    _mm256_and_si256, _mm256_cvtepi8_epi32, _mm256_cvtepi32_ps, _mm256_cvtepu8_epi32,
    _mm256_cvtph_ps, _mm256_dpbusd_epi32, _mm256_fmadd_ps, _mm256_madd_epi16, _mm256_maddubs_epi16,
    _mm256_mul_ps, _mm256_or_si256, _mm256_set1_epi8, _mm256_set1_epi16, _mm256_set1_epi32,
    _mm256_set1_ps, _mm256_setzero_ps, _mm256_setzero_si256, _mm256_sign_epi8, _mm256_sll_epi16,
    _mm256_srl_epi16, _mm256_storeu_ps, _mm256_xor_si256,
};

use super::activations::ActRow;
use super::formats::{Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q6K, Q8_0};
use super::packed::{GROUP, Packed};
use super::x86::{bits, load128, load256};

/// A packed type's columns and scales as vectors of eight rows.
pub(crate) trait PackedAvx2: Packed {
    /// Scales per 16 values (two flushes per sub-block) rather than per 32.
    const HALVES: bool = false;
    /// What a group-block's sub-blocks share (its rows' `d`, `m` as f32).
    type Block: Copy;

    /// # Safety
    /// The CPU must have AVX2 and F16C; `g` must hold one whole group-block.
    unsafe fn block(g: &[u8]) -> Self::Block;

    /// The eight rows' scales and offsets of sub-block `k`'s half `h` (0 unless `HALVES`).
    ///
    /// # Safety
    /// As [`Self::block`].
    unsafe fn row_scales(g: &[u8], block: Self::Block, k: usize, h: usize) -> (__m256, __m256);

    /// Values `4i..4i+4` of sub-block `k` of the eight rows (row `j` in bytes `4j..4j+4`).
    ///
    /// # Safety
    /// As [`Self::block`].
    unsafe fn column(g: &[u8], k: usize, i: usize) -> __m256i;
}

/// `(v << left) & mask` per byte for `left` in −7..=7 (a negative `left` shifts right): 16-bit
/// shifts, whose bits that cross into the next byte the mask drops.
#[inline]
#[target_feature(enable = "avx2")]
fn shifted(v: __m256i, left: i32, mask: i8) -> __m256i {
    let v = if left >= 0 {
        _mm256_sll_epi16(v, _mm_cvtsi32_si128(left))
    } else {
        _mm256_srl_epi16(v, _mm_cvtsi32_si128(-left))
    };
    _mm256_and_si256(v, _mm256_set1_epi8(mask))
}

/// Column `i` of four nibble vectors at `nibbles`.
#[inline]
#[target_feature(enable = "avx2")]
fn nibble_column(nibbles: &[u8], i: usize) -> __m256i {
    bits(load256(&nibbles[32 * (i % 4)..]), 4 * (i / 4), 0xf)
}

/// 16 where column `i`'s fifth bit is set.
#[inline]
#[target_feature(enable = "avx2")]
fn fifth_column(fifth: &[u8], i: usize) -> __m256i {
    #[allow(
        clippy::cast_possible_wrap,
        clippy::cast_possible_truncation,
        reason = "i < 8"
    )]
    shifted(load256(fifth), 4 - i as i32, 0x10)
}

/// Column `i`'s two Q6_K high bits, as bits 4–5.
#[inline]
#[target_feature(enable = "avx2")]
fn high2_column(high: &[u8], i: usize) -> __m256i {
    #[allow(
        clippy::cast_possible_wrap,
        clippy::cast_possible_truncation,
        reason = "i < 8"
    )]
    shifted(load256(&high[32 * (i / 4)..]), 4 - 2 * (i % 4) as i32, 0x30)
}

#[inline]
#[target_feature(enable = "avx2")]
fn load64(bytes: &[u8]) -> __m128i {
    let bytes = &bytes[..8];
    // SAFETY: 8 readable bytes (sliced above); unaligned load.
    unsafe { _mm_loadl_epi64(bytes.as_ptr().cast()) }
}

/// Eight f16 at `bytes[..16]` as f32.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn halves8(bytes: &[u8]) -> __m256 {
    _mm256_cvtph_ps(load128(bytes))
}

macro_rules! simple {
    ($format:ty, d_only: $bias:expr, $column:expr) => {
        impl PackedAvx2 for $format {
            type Block = (__m256, __m256);
            #[inline]
            #[target_feature(enable = "avx2,f16c")]
            unsafe fn block(g: &[u8]) -> Self::Block {
                let d = halves8(g);
                (d, _mm256_mul_ps(d, _mm256_set1_ps($bias)))
            }
            #[inline]
            #[target_feature(enable = "avx2")]
            unsafe fn row_scales(_: &[u8], b: Self::Block, _: usize, _: usize) -> (__m256, __m256) {
                b
            }
            #[inline]
            #[target_feature(enable = "avx2")]
            unsafe fn column(g: &[u8], _: usize, i: usize) -> __m256i {
                $column(g, i)
            }
        }
    };
    ($format:ty, with_m, $column:expr) => {
        impl PackedAvx2 for $format {
            type Block = (__m256, __m256);
            #[inline]
            #[target_feature(enable = "avx2,f16c")]
            unsafe fn block(g: &[u8]) -> Self::Block {
                (halves8(g), halves8(&g[16..]))
            }
            #[inline]
            #[target_feature(enable = "avx2")]
            unsafe fn row_scales(_: &[u8], b: Self::Block, _: usize, _: usize) -> (__m256, __m256) {
                b
            }
            #[inline]
            #[target_feature(enable = "avx2")]
            unsafe fn column(g: &[u8], _: usize, i: usize) -> __m256i {
                $column(g, i)
            }
        }
    };
}

simple!(Q4_0, d_only: -8.0, |g: &[u8], i| nibble_column(&g[16..], i));
simple!(Q4_1, with_m, |g: &[u8], i| nibble_column(&g[32..], i));
simple!(Q5_0, d_only: -16.0, |g: &[u8], i| _mm256_or_si256(
    nibble_column(&g[48..], i),
    fifth_column(&g[16..48], i)
));
simple!(Q5_1, with_m, |g: &[u8], i| _mm256_or_si256(
    nibble_column(&g[64..], i),
    fifth_column(&g[32..64], i)
));
simple!(Q8_0, d_only: 0.0, |g: &[u8], i| load256(&g[16 + 32 * i..]));

impl PackedAvx2 for Q4K {
    type Block = (__m256, __m256);
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn block(g: &[u8]) -> Self::Block {
        (halves8(g), halves8(&g[16..]))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn row_scales(g: &[u8], (d, dmin): Self::Block, k: usize, _: usize) -> (__m256, __m256) {
        let sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(load64(&g[32 + 8 * k..])));
        let m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(load64(&g[96 + 8 * k..])));
        (
            _mm256_mul_ps(d, sc),
            _mm256_mul_ps(_mm256_mul_ps(dmin, _mm256_set1_ps(-1.0)), m),
        )
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn column(g: &[u8], k: usize, i: usize) -> __m256i {
        nibble_column(&g[160 + 128 * k..], i)
    }
}

impl PackedAvx2 for Q6K {
    const HALVES: bool = true;
    type Block = __m256;
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn block(g: &[u8]) -> Self::Block {
        halves8(g)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn row_scales(g: &[u8], d: Self::Block, k: usize, h: usize) -> (__m256, __m256) {
        let sc = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load64(&g[16 + 8 * (2 * k + h)..])));
        let scale = _mm256_mul_ps(d, sc);
        (scale, _mm256_mul_ps(scale, _mm256_set1_ps(-32.0)))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn column(g: &[u8], k: usize, i: usize) -> __m256i {
        let sub = &g[144 + 192 * k..];
        _mm256_or_si256(nibble_column(sub, i), high2_column(&sub[128..], i))
    }
}

/// Four activation bytes `4i..4i+4` in every 32-bit lane.
#[inline]
#[target_feature(enable = "avx2")]
fn broadcast4(q: &[i8; 32], i: usize) -> __m256i {
    let b = &q[4 * i..4 * i + 4];
    _mm256_set1_epi32(i32::from_le_bytes([
        b[0].cast_unsigned(),
        b[1].cast_unsigned(),
        b[2].cast_unsigned(),
        b[3].cast_unsigned(),
    ]))
}

/// `acc + Σ u·p` per group of four bytes (`maddubs` pairs, then `madd` into 32 bits).
#[inline]
#[target_feature(enable = "avx2")]
fn dot_avx2(acc: __m256i, u: __m256i, p: __m256i) -> __m256i {
    _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, p), _mm256_set1_epi16(1)),
    )
}

#[inline]
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
fn dot_vnni(acc: __m256i, u: __m256i, p: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, u, p)
}

macro_rules! tiled_kernel {
    ($tile:ident, $groups:ident, $features:literal, $dot:ident, vnni: $vnni:literal,
     tiles: [$($r:literal),*]) => {
        /// `R` activation rows against one group of eight weight rows: `out[8r + j]`.
        #[inline]
        #[target_feature(enable = $features)]
        fn $tile<F: PackedAvx2, const R: usize>(w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
            let acts: &[ActRow<'_>; R] = acts.try_into().expect("a tile of R rows");
            let blocks = w.len() / F::GROUP_BYTES;
            let q: [&[[i8; 32]]; R] = std::array::from_fn(|r| acts[r].q.as_chunks::<32>().0);
            let subs = blocks * F::SUBS;
            for r in 0..R {
                // Checked once here so the loops below index without checks.
                assert!(
                    q[r].len() == subs
                        && acts[r].d.len() == subs
                        && acts[r].sums.len() == subs
                        && acts[r].half_sums.len() == 2 * subs,
                    "activation rows of {subs} sub-blocks"
                );
            }
            let halves = if F::HALVES { 2 } else { 1 };
            let columns = 8 / halves;
            // Q8_0's signed bytes: VNNI wants unsigned weights, so they are biased by 128
            // (`q ^ 0x80`) and the bias comes back as an offset; AVX2's `maddubs` would
            // saturate on those, so it moves the sign onto the activations instead.
            let bias = F::SIGNED && $vnni;
            let mut acc = [_mm256_setzero_ps(); R];
            for (b, g) in w.chunks_exact(F::GROUP_BYTES).enumerate() {
                // SAFETY: the features are enabled here; `g` is one group-block.
                let block = unsafe { F::block(g) };
                for k in 0..F::SUBS {
                    let a = b * F::SUBS + k;
                    for h in 0..halves {
                        // SAFETY: as above.
                        let (scale, mut offset) = unsafe { F::row_scales(g, block, k, h) };
                        if bias {
                            offset = _mm256_mul_ps(scale, _mm256_set1_ps(-128.0));
                        }
                        let mut dots = [_mm256_setzero_si256(); R];
                        for i in h * columns..(h + 1) * columns {
                            // SAFETY: as above.
                            let mut u = unsafe { F::column(g, k, i) };
                            if bias {
                                u = _mm256_xor_si256(u, _mm256_set1_epi8(-128));
                            }
                            let magnitude = if F::SIGNED && !bias {
                                _mm256_sign_epi8(u, u)
                            } else {
                                u
                            };
                            for r in 0..R {
                                let mut p = broadcast4(&q[r][a], i);
                                if F::SIGNED && !bias {
                                    p = _mm256_sign_epi8(p, u);
                                }
                                dots[r] = $dot(dots[r], magnitude, p);
                            }
                        }
                        for r in 0..R {
                            let d = _mm256_mul_ps(scale, _mm256_set1_ps(acts[r].d[a]));
                            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[r]), d, acc[r]);
                            if !F::SIGNED || bias {
                                let sum = if F::HALVES {
                                    acts[r].half_sums[2 * a + h]
                                } else {
                                    acts[r].sums[a]
                                };
                                acc[r] = _mm256_fmadd_ps(offset, _mm256_set1_ps(sum), acc[r]);
                            }
                        }
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let out = &mut out[GROUP * r..GROUP * (r + 1)];
                // SAFETY: eight writable floats (sliced above); unaligned store.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), *acc) };
            }
        }

        /// Every activation row against whole groups `w`: `out[(g·m + r)·8 + j]`. Tiles of
        /// activation rows are the outer loop, so a tile stays in L1 across the groups.
        #[target_feature(enable = $features)]
        fn $groups<F: PackedAvx2>(w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
            let Some(first) = acts.first() else { return };
            let m = acts.len();
            let group_bytes = first.d.len() / F::SUBS * F::GROUP_BYTES;
            let groups = w.len() / group_bytes;
            let mut start = 0;
            while start < m {
                let left = m - start;
                let rows = [$($r),*].into_iter().find(|&r| r <= left).unwrap_or(1);
                for g in 0..groups {
                    let w = &w[g * group_bytes..(g + 1) * group_bytes];
                    let at = (g * m + start) * GROUP;
                    let out = &mut out[at..at + rows * GROUP];
                    let acts = &acts[start..start + rows];
                    match rows {
                        $($r => $tile::<F, $r>(w, acts, out),)*
                        _ => $tile::<F, 1>(w, acts, out),
                    }
                }
                start += rows;
            }
        }
    };
}

tiled_kernel!(
    tile_avx2,
    groups_avx2,
    "avx2,fma,f16c",
    dot_avx2,
    vnni: false,
    tiles: [4, 2]
);
tiled_kernel!(
    tile_vnni,
    groups_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    dot_vnni,
    vnni: true,
    tiles: [8, 4, 2]
);

/// The AVX2 kernel on groups of `F` (callers check AVX2, FMA and F16C first).
pub(crate) fn dot_groups_avx2<F: PackedAvx2>(w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
    // SAFETY: selected by `Kernels::detect` only where the CPU has these features.
    unsafe { groups_avx2::<F>(w, acts, out) }
}

/// The AVX-512 VNNI kernel on groups of `F` (callers check its features first).
pub(crate) fn dot_groups_vnni<F: PackedAvx2>(w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
    // SAFETY: selected by `Kernels::detect` only where the CPU has these features.
    unsafe { groups_vnni::<F>(w, acts, out) }
}
