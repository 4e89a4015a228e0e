//! The x86-64 kernels, chosen at run time: AVX2 + FMA (`maddubs`/`madd` integer dots, as
//! llama.cpp's AVX2 path), and AVX-512 VNNI (`vpdpbusd` on 256-bit vectors, AVX512VL) where
//! the CPU has it. The same code, stamped out twice by `row_kernel!`, unpacks each
//! sub-block once and multiplies it with up to four activation rows.
#![allow(
    unsafe_code,
    reason = "SIMD intrinsics: unaligned loads from slices whose length is checked by the \
              slicing next to each load, and calls into `#[target_feature]` functions that \
              `Kernels::detect` only selects when the CPU reports the feature"
)]

use std::arch::x86_64::{
    __m128i, __m256, __m256i, _mm_add_ps, _mm_add_ss, _mm_and_si128, _mm_cvtph_ps,
    _mm_cvtsi32_si128, _mm_cvtss_f32, _mm_loadu_si128, _mm_movehdup_ps, _mm_movehl_ps,
    _mm_set1_epi8, _mm_set1_ps, _mm_shuffle_ps, _mm_srli_epi16, _mm256_add_ps, _mm256_and_si256,
    _mm256_castps256_ps128, _mm256_castsi256_ps, _mm256_cmpeq_epi8, _mm256_cvtepi32_ps,
    _mm256_cvtepu16_epi32, _mm256_cvtph_ps, _mm256_dpbusd_epi32, _mm256_extractf128_ps,
    _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16,
    _mm256_mul_ps, _mm256_or_si256, _mm256_set_epi64x, _mm256_set_m128, _mm256_set_m128i,
    _mm256_set1_epi8, _mm256_set1_epi16, _mm256_set1_epi32, _mm256_set1_epi64x, _mm256_set1_ps,
    _mm256_setzero_ps, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_sign_epi8,
    _mm256_slli_epi16, _mm256_slli_epi32, _mm256_srl_epi16,
};

use super::activations::ActRow;
use super::floats::{Bf16, F16, F32, FloatFormat};
use super::formats::{Format, Q2K, Q3K, Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, Q8_0};

/// A block type's sub-block unpacking into one AVX2 register of 32 bytes.
pub(crate) trait Avx2Format: Format {
    /// # Safety
    /// The CPU must have AVX2; `block` must hold one whole block.
    unsafe fn unpack_avx2(block: &[u8], sub: usize) -> __m256i;

    /// The scale and offset of a block of a one-sub-block type (`SUBS == 1`), with its f16
    /// fields converted by F16C.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C; `block` must hold one whole block.
    #[inline]
    unsafe fn scale_offset(block: &[u8]) -> (f32, f32) {
        let s = Self::scales(block);
        (s.scale[0][0], s.offset[0][0])
    }
}

/// The f16 values at bytes 0–1 and 2–3 of `block`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn halves(block: &[u8]) -> (f32, f32) {
    let bits = i32::from_le_bytes([block[0], block[1], block[2], block[3]]);
    let both = _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
    (_mm_cvtss_f32(both), _mm_cvtss_f32(_mm_movehdup_ps(both)))
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load128(bytes: &[u8]) -> __m128i {
    let bytes = &bytes[..16];
    // SAFETY: 16 readable bytes (sliced above); unaligned load.
    unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load256(bytes: &[u8]) -> __m256i {
    let bytes = &bytes[..32];
    // SAFETY: 32 readable bytes (sliced above); unaligned load.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// `(bytes >> shift) & mask` for every byte.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn bits(bytes: __m256i, shift: usize, mask: i8) -> __m256i {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        reason = "shift < 8"
    )]
    let count = _mm_cvtsi32_si128(shift as i32);
    _mm256_and_si256(_mm256_srl_epi16(bytes, count), _mm256_set1_epi8(mask))
}

/// Low nibbles of 16 bytes, then their high nibbles (Q4_0/Q4_1/Q5_* element order).
#[inline]
#[target_feature(enable = "avx2")]
fn nibbles(qs: &[u8]) -> __m256i {
    let v = load128(qs);
    let mask = _mm_set1_epi8(0xf);
    let low = _mm_and_si128(v, mask);
    let high = _mm_and_si128(_mm_srli_epi16::<4>(v), mask);
    _mm256_set_m128i(high, low)
}

/// 16 in byte `j` where bit `j` of the little-endian `qh` is set, else 0.
#[inline]
#[target_feature(enable = "avx2")]
fn fifth_bits(qh: &[u8]) -> __m256i {
    let bits = i32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let spread = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits), spread);
    #[allow(clippy::cast_possible_wrap, reason = "a bit pattern")]
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, mask), mask);
    _mm256_and_si256(set, _mm256_set1_epi8(16))
}

macro_rules! unpack {
    ($format:ty, |$b:ident, $sub:ident| $body:expr) => {
        impl Avx2Format for $format {
            #[inline]
            #[target_feature(enable = "avx2")]
            unsafe fn unpack_avx2($b: &[u8], $sub: usize) -> __m256i {
                $body
            }
        }
    };
    ($format:ty, |$b:ident, $sub:ident| $body:expr, |$h:ident| $scale_offset:expr) => {
        impl Avx2Format for $format {
            #[inline]
            #[target_feature(enable = "avx2")]
            unsafe fn unpack_avx2($b: &[u8], $sub: usize) -> __m256i {
                $body
            }

            #[inline]
            #[target_feature(enable = "avx2,f16c")]
            unsafe fn scale_offset($h: &[u8]) -> (f32, f32) {
                $scale_offset
            }
        }
    };
}

unpack!(Q4_0, |b, _s| nibbles(&b[2..18]), |h| {
    let d = halves(h).0;
    (d, -8.0 * d)
});
unpack!(Q4_1, |b, _s| nibbles(&b[4..20]), |h| halves(h));
unpack!(
    Q5_0,
    |b, _s| _mm256_or_si256(nibbles(&b[6..22]), fifth_bits(&b[2..6])),
    |h| {
        let d = halves(h).0;
        (d, -16.0 * d)
    }
);
unpack!(
    Q5_1,
    |b, _s| _mm256_or_si256(nibbles(&b[8..24]), fifth_bits(&b[4..8])),
    |h| halves(h)
);
unpack!(Q8_0, |b, _s| load256(&b[2..34]), |h| (halves(h).0, 0.0));
unpack!(Q2K, |b, sub| bits(
    load256(&b[16 + 32 * (sub / 4)..]),
    2 * (sub % 4),
    3
));
unpack!(Q3K, |b, sub| _mm256_or_si256(
    bits(load256(&b[32 + 32 * (sub / 4)..]), 2 * (sub % 4), 3),
    _mm256_slli_epi16::<2>(bits(load256(&b[..32]), sub, 1))
));
unpack!(Q4K, |b, sub| bits(
    load256(&b[16 + 32 * (sub / 2)..]),
    4 * (sub % 2),
    0xf
));
unpack!(Q5K, |b, sub| _mm256_or_si256(
    bits(load256(&b[48 + 32 * (sub / 2)..]), 4 * (sub % 2), 0xf),
    _mm256_slli_epi16::<4>(bits(load256(&b[16..48]), sub, 1))
));
unpack!(Q6K, |b, sub| {
    let (half_block, j) = (sub / 4, sub % 4);
    let low = bits(
        load256(&b[64 * half_block + 32 * (j % 2)..]),
        4 * (j / 2),
        0xf,
    );
    let high = bits(load256(&b[128 + 32 * half_block..]), 2 * j, 3);
    _mm256_or_si256(low, _mm256_slli_epi16::<4>(high))
});

/// Sums of groups of four `u·p` products: lanes 0–3 cover the first 16 elements.
#[inline]
#[target_feature(enable = "avx2")]
fn int_dot_avx2(u: __m256i, p: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, p), _mm256_set1_epi16(1))
}

#[inline]
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
fn int_dot_vnni(u: __m256i, p: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, p)
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256) -> f32 {
    let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
}

macro_rules! row_kernel {
    ($tile:ident, $row:ident, $features:literal, $int_dot:ident) => {
        /// `R` activation rows against one weight row. Two accumulators per row (even and odd
        /// sub-blocks) halve the chain of dependent FMAs.
        #[inline]
        #[target_feature(enable = $features)]
        fn $tile<F: Avx2Format, const R: usize>(w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
            let acts: &[ActRow<'_>; R] = acts.try_into().expect("a tile of R rows");
            let subs = w.len() / F::TYPE.block_bytes() * F::SUBS;
            let q: [&[[i8; 32]]; R] = std::array::from_fn(|r| acts[r].q.as_chunks::<32>().0);
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
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            let mut offset = [[0.0f32; 2]; R];
            macro_rules! sub_block {
                ($u:expr, $a:expr, $lane:literal, $scale:expr, |$r:ident| $offset:expr) => {{
                    let u = $u;
                    let magnitude = if F::SIGNED { _mm256_sign_epi8(u, u) } else { u };
                    for $r in 0..R {
                        let mut p = load256(bytemuck_i8(&q[$r][$a]));
                        if F::SIGNED {
                            p = _mm256_sign_epi8(p, u);
                        }
                        let dots = _mm256_cvtepi32_ps($int_dot(magnitude, p));
                        let scale = _mm256_mul_ps($scale, _mm256_set1_ps(acts[$r].d[$a]));
                        acc[$r][$lane] = _mm256_fmadd_ps(dots, scale, acc[$r][$lane]);
                        if !F::SIGNED {
                            offset[$r][$lane] += $offset;
                        }
                    }
                }};
            }
            if F::SUBS == 1 {
                let bytes = F::TYPE.block_bytes();
                let mut pairs = w.chunks_exact(2 * bytes);
                for (pair, blocks) in pairs.by_ref().enumerate() {
                    let (first, second) = blocks.split_at(bytes);
                    for (lane_block, a) in [(first, 2 * pair), (second, 2 * pair + 1)] {
                        // SAFETY: AVX2 and F16C are enabled here; one whole block each.
                        let ((scale, off), u) =
                            unsafe { (F::scale_offset(lane_block), F::unpack_avx2(lane_block, 0)) };
                        let scale = _mm256_set1_ps(scale);
                        if a % 2 == 0 {
                            sub_block!(u, a, 0, scale, |r| off * acts[r].sums[a]);
                        } else {
                            sub_block!(u, a, 1, scale, |r| off * acts[r].sums[a]);
                        }
                    }
                }
                let tail = pairs.remainder();
                if !tail.is_empty() {
                    let a = subs - 1;
                    // SAFETY: as above.
                    let ((scale, off), u) =
                        unsafe { (F::scale_offset(tail), F::unpack_avx2(tail, 0)) };
                    let scale = _mm256_set1_ps(scale);
                    sub_block!(u, a, 0, scale, |r| off * acts[r].sums[a]);
                }
            } else {
                for (b, block) in w.chunks_exact(F::TYPE.block_bytes()).enumerate() {
                    let s = F::scales(block);
                    for pair in 0..F::SUBS / 2 {
                        for sub in [2 * pair, 2 * pair + 1] {
                            let a = b * F::SUBS + sub;
                            // SAFETY: AVX2 is enabled here; `block` is one whole block.
                            let u = unsafe { F::unpack_avx2(block, sub) };
                            let scale = _mm256_set_m128(
                                _mm_set1_ps(s.scale[sub][1]),
                                _mm_set1_ps(s.scale[sub][0]),
                            );
                            let [o0, o1] = s.offset[sub];
                            let half_offsets = |r: usize| {
                                o0 * acts[r].half_sums[2 * a] + o1 * acts[r].half_sums[2 * a + 1]
                            };
                            if sub % 2 == 0 {
                                sub_block!(u, a, 0, scale, |r| half_offsets(r));
                            } else {
                                sub_block!(u, a, 1, scale, |r| half_offsets(r));
                            }
                        }
                    }
                }
            }
            for r in 0..R {
                out[r] = hsum(_mm256_add_ps(acc[r][0], acc[r][1])) + offset[r][0] + offset[r][1];
            }
        }

        /// Every activation row against one weight row, in tiles of four.
        #[target_feature(enable = $features)]
        fn $row<F: Avx2Format>(w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
            let mut start = 0;
            while acts.len() - start >= 4 {
                $tile::<F, 4>(w, &acts[start..start + 4], &mut out[start..start + 4]);
                start += 4;
            }
            for r in start..acts.len() {
                $tile::<F, 1>(w, &acts[r..=r], &mut out[r..=r]);
            }
        }
    };
}

row_kernel!(tile_avx2, row_avx2, "avx2,fma,f16c", int_dot_avx2);
row_kernel!(
    tile_vnni,
    row_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    int_dot_vnni
);

fn bytemuck_i8(q: &[i8]) -> &[u8] {
    // i8 and u8 have the same size and alignment.
    // SAFETY: the same memory, reinterpreted byte for byte.
    unsafe { std::slice::from_raw_parts(q.as_ptr().cast(), q.len()) }
}

/// The AVX2 kernel for `F` (callers check AVX2 and FMA first).
pub(crate) fn dot_row_avx2<F: Avx2Format>(w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
    // SAFETY: selected by `Kernels::detect` only where the CPU has AVX2 and FMA.
    unsafe { row_avx2::<F>(w, acts, out) }
}

/// The AVX-512 VNNI kernel for `F` (callers check AVX2, FMA, AVX512-VNNI and AVX512VL first).
pub(crate) fn dot_row_vnni<F: Avx2Format>(w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
    // SAFETY: selected by `Kernels::detect` only where the CPU has these features.
    unsafe { row_vnni::<F>(w, acts, out) }
}

/// A float element type loaded eight at a time.
pub(crate) trait FloatAvx2: FloatFormat {
    /// # Safety
    /// The CPU must have AVX2 and F16C; `bytes` must hold eight elements.
    unsafe fn load8(bytes: &[u8]) -> __m256;
}

impl FloatAvx2 for F32 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load8(bytes: &[u8]) -> __m256 {
        let bytes = &bytes[..32];
        // SAFETY: 32 readable bytes; unaligned load.
        unsafe { _mm256_loadu_ps(bytes.as_ptr().cast()) }
    }
}

impl FloatAvx2 for F16 {
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(bytes: &[u8]) -> __m256 {
        _mm256_cvtph_ps(load128(bytes))
    }
}

impl FloatAvx2 for Bf16 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load8(bytes: &[u8]) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(load128(
            bytes,
        ))))
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn row_float_avx2<F: FloatAvx2>(w: &[u8], x: &[&[f32]], out: &mut [f32]) {
    let cols = w.len() / F::BYTES;
    let whole = cols / 8 * 8;
    for (row, o) in x.iter().zip(out.iter_mut()) {
        let mut acc = [_mm256_setzero_ps(); 2];
        for (i, chunk) in w[..whole * F::BYTES].chunks_exact(8 * F::BYTES).enumerate() {
            let values = &row[8 * i..8 * i + 8];
            // SAFETY: eight values in `values` and in `chunk`; features enabled here.
            let (weights, values) = unsafe { (F::load8(chunk), _mm256_loadu_ps(values.as_ptr())) };
            acc[i % 2] = _mm256_fmadd_ps(weights, values, acc[i % 2]);
        }
        let tail: f32 = w[whole * F::BYTES..]
            .chunks_exact(F::BYTES)
            .zip(&row[whole..])
            .map(|(bytes, &v)| F::value(bytes) * v)
            .sum();
        *o = hsum(_mm256_add_ps(acc[0], acc[1])) + tail;
    }
}

/// The AVX2 kernel for a float matrix (callers check AVX2, FMA and F16C first).
pub(crate) fn dot_row_float_avx2<F: FloatAvx2>(w: &[u8], x: &[&[f32]], out: &mut [f32]) {
    // SAFETY: selected by `Kernels::detect` only where the CPU has AVX2, FMA and F16C.
    unsafe { row_float_avx2::<F>(w, x, out) }
}
