//! Hand-built blocks of the 5-bit and the 2/3/5-bit k-quant types: known quants and scales
//! packed into ggml's layout by a small packer written from the layout description (the
//! inverse of the dequantiser), then checked value by value. Scales are powers of two so every
//! expected value is exact.

use super::{GgmlType, dequantize, ggml_type_name};

const HALF_0_5: [u8; 2] = 0x3800u16.to_le_bytes();
const HALF_0_25: [u8; 2] = 0x3400u16.to_le_bytes();
const HALF_MINUS_1: [u8; 2] = 0xbc00u16.to_le_bytes();

/// `qh` (bit `j` = fifth bit of element `j`) and `qs` (element `j` low nibble, `j + 16` high).
fn pack_five_bit(q: &[u8; 32]) -> Vec<u8> {
    let qh: u32 = (0..32).map(|j| u32::from(q[j] >> 4) << j).sum();
    let mut out = qh.to_le_bytes().to_vec();
    out.extend((0..16).map(|j| (q[j] & 0xf) | ((q[j + 16] & 0xf) << 4)));
    out
}

#[test]
fn q5_0_is_a_signed_five_bit_value_times_d() {
    let q: [u8; 32] = std::array::from_fn(|j| j as u8);
    let mut block = HALF_0_5.to_vec();
    block.extend(pack_five_bit(&q));
    assert_eq!(GgmlType::Q5_0.bytes_for(32), Some(block.len()));
    let got = dequantize(GgmlType::Q5_0, &block, 32);
    let want: Vec<f32> = (0..32).map(|j| 0.5 * (j as f32 - 16.0)).collect();
    assert_eq!(got, want);
}

#[test]
fn q5_1_adds_the_minimum() {
    let q: [u8; 32] = std::array::from_fn(|j| 31 - j as u8);
    let mut block = [HALF_0_5, HALF_MINUS_1].concat();
    block.extend(pack_five_bit(&q));
    assert_eq!(GgmlType::Q5_1.bytes_for(32), Some(block.len()));
    let got = dequantize(GgmlType::Q5_1, &block, 32);
    let want: Vec<f32> = (0..32).map(|j| 0.5 * (31 - j) as f32 - 1.0).collect();
    assert_eq!(got, want);
}

/// Where element `e` of a 2-bit k-quant super-block lives: `qs` byte and bit shift.
fn two_bit_slot(e: usize) -> (usize, usize) {
    let (half, r) = (e / 128, e % 128);
    (half * 32 + r % 32, 2 * (r / 32))
}

#[test]
fn q2_k_has_a_scale_and_minimum_per_16() {
    let q: Vec<u8> = (0..256).map(|e| ((e * 7 + 3) % 4) as u8).collect();
    // Scale s in the low nibble, minimum 15 - s in the high one.
    let mut scales: Vec<u8> = (0..16u8).map(|s| s | ((15 - s) << 4)).collect();
    let mut qs = vec![0u8; 64];
    for (e, &v) in q.iter().enumerate() {
        let (byte, shift) = two_bit_slot(e);
        qs[byte] |= v << shift;
    }
    let mut block = Vec::new();
    block.append(&mut scales);
    block.extend(qs);
    block.extend(HALF_0_5);
    block.extend(HALF_0_25);
    assert_eq!(GgmlType::Q2K.bytes_for(256), Some(block.len()));
    let got = dequantize(GgmlType::Q2K, &block, 256);
    for (e, &g) in got.iter().enumerate() {
        let s = (e / 16) as f32;
        let want = 0.5 * s * f32::from(q[e]) - 0.25 * (15.0 - s);
        assert_eq!(g, want, "element {e}");
    }
}

#[test]
fn q3_k_has_signed_six_bit_scales_and_a_high_bit_plane() {
    let q: Vec<u8> = (0..256).map(|e| ((e * 5 + 1) % 8) as u8).collect();
    // Stored scales 0..63 spread over the range, so the sign after the −32 offset varies.
    let stored: Vec<u8> = (0..16u8).map(|j| (j * 4 + 3) % 64).collect();
    let mut scales = vec![0u8; 12];
    for (j, &l) in stored.iter().enumerate() {
        if j < 8 {
            scales[j] |= l & 0xf;
        } else {
            scales[j - 8] |= (l & 0xf) << 4;
        }
        scales[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
    }
    let (mut hmask, mut qs) = (vec![0u8; 32], vec![0u8; 64]);
    for (e, &v) in q.iter().enumerate() {
        let (byte, shift) = two_bit_slot(e);
        qs[byte] |= (v & 3) << shift;
        let plane = (e / 128) * 4 + (e % 128) / 32;
        hmask[e % 32] |= (v >> 2) << plane;
    }
    let mut block = hmask;
    block.extend(qs);
    block.extend(scales);
    block.extend(HALF_0_5);
    assert_eq!(GgmlType::Q3K.bytes_for(256), Some(block.len()));
    let got = dequantize(GgmlType::Q3K, &block, 256);
    for (e, &g) in got.iter().enumerate() {
        let scale = f32::from(stored[e / 16]) - 32.0;
        let want = 0.5 * scale * (f32::from(q[e]) - 4.0);
        assert_eq!(g, want, "element {e}");
    }
}

#[test]
fn q5_k_has_six_bit_scale_min_pairs_and_a_fifth_bit() {
    let q: Vec<u8> = (0..256).map(|e| ((e * 11 + 5) % 32) as u8).collect();
    let sc: Vec<u8> = (0..8u8).map(|j| j * 8 + 1).collect(); // 6 bits: at most 63
    let mn: Vec<u8> = (0..8u8).map(|j| 63 - j * 7).collect();
    let mut scales = vec![0u8; 12];
    for j in 0..8 {
        if j < 4 {
            scales[j] = sc[j];
            scales[j + 4] = mn[j];
        } else {
            scales[j + 4] = (sc[j] & 0xf) | ((mn[j] & 0xf) << 4);
            scales[j - 4] |= (sc[j] >> 4) << 6;
            scales[j] |= (mn[j] >> 4) << 6;
        }
    }
    let (mut qh, mut qs) = (vec![0u8; 32], vec![0u8; 128]);
    for (e, &v) in q.iter().enumerate() {
        let (chunk, nibble, l) = (e / 64, (e % 64) / 32, e % 32);
        qs[chunk * 32 + l] |= (v & 0xf) << (4 * nibble);
        qh[l] |= (v >> 4) << (2 * chunk + nibble);
    }
    let mut block = [HALF_0_5, HALF_0_25].concat();
    block.extend(scales);
    block.extend(qh);
    block.extend(qs);
    assert_eq!(GgmlType::Q5K.bytes_for(256), Some(block.len()));
    let got = dequantize(GgmlType::Q5K, &block, 256);
    for (e, &g) in got.iter().enumerate() {
        let (s, m) = (f32::from(sc[e / 32]), f32::from(mn[e / 32]));
        let want = 0.5 * s * f32::from(q[e]) - 0.25 * m;
        assert_eq!(g, want, "element {e}");
    }
}

#[test]
fn type_ids_names_and_sizes() {
    for (id, name, block, bytes) in [
        (6, "Q5_0", 32, 22),
        (7, "Q5_1", 32, 24),
        (10, "Q2_K", 256, 84),
        (11, "Q3_K", 256, 110),
        (13, "Q5_K", 256, 176),
    ] {
        let ty = GgmlType::from_id(id).expect("supported");
        assert_eq!(
            (ty.to_string(), ty.block_len(), ty.block_bytes()),
            (name.to_string(), block, bytes)
        );
        assert_eq!(ggml_type_name(id), name);
        assert_eq!(ty.bytes_for(block + 1), None);
    }
    // Unsupported types keep their ggml names for the load error.
    for (id, name) in [
        (16, "IQ2_XXS"),
        (23, "IQ4_XS"),
        (34, "TQ1_0"),
        (39, "MXFP4"),
    ] {
        assert_eq!(GgmlType::from_id(id), None);
        assert_eq!(ggml_type_name(id), name);
    }
    assert_eq!(ggml_type_name(99), "type 99");
}

#[test]
fn every_half_converts_exactly() {
    for bits in 0..=u16::MAX {
        let expected = half::f16::from_bits(bits).to_f32();
        let got = super::f16_to_f32(bits);
        if expected.is_nan() {
            // A NaN stays a NaN (its quiet bit is not the point).
            assert!(got.is_nan(), "half bits {bits:#06x}");
        } else {
            assert_eq!(got.to_bits(), expected.to_bits(), "half bits {bits:#06x}");
        }
    }
}
