//! Every type and every kernel set against the product of the dequantised (f32) weights.
//!
//! Tolerance: the activations are rounded to `d·q` with `|x − d·q| ≤ d/2` per value, so a
//! quantised product may differ from the f32 one by at most `Σ |wᵢ|·dᵢ/2`; the test allows
//! that bound plus 1e-5 of `Σ |wᵢ·xᵢ|` for f32 rounding. Float matrices, whose activations
//! are not quantised, get the rounding term only. SIMD kernels must also agree with the
//! scalar ones to 1e-5 of `Σ |wᵢ·xᵢ|` (the integer sums are exact; only f32 order differs).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::activations::Q8Activations;
use super::{Kernels, QuantLinear, QuantMatrix};
use crate::gguf::GgmlType;

const ALL: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

/// Byte offsets of a block's f16 scales (random bytes there could be NaN or huge).
fn half_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q2K => &[80, 82],
        GgmlType::Q3K => &[108],
        GgmlType::Q6K => &[208],
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => &[],
    }
}

fn random_matrix(ty: GgmlType, rows: usize, cols: usize, rng: &mut StdRng) -> QuantMatrix {
    let bytes = ty.bytes_for(rows * cols).expect("whole blocks");
    let data: Vec<u8> = match ty {
        GgmlType::F32 => (0..rows * cols)
            .flat_map(|_| rng.random_range(-1.0f32..1.0).to_le_bytes())
            .collect(),
        GgmlType::F16 => (0..rows * cols)
            .flat_map(|_| half::f16::from_f32(rng.random_range(-1.0..1.0)).to_le_bytes())
            .collect(),
        GgmlType::BF16 => (0..rows * cols)
            .flat_map(|_| half::bf16::from_f32(rng.random_range(-1.0..1.0)).to_le_bytes())
            .collect(),
        _ => {
            let mut data: Vec<u8> = (0..bytes).map(|_| rng.random()).collect();
            for block in data.chunks_exact_mut(ty.block_bytes()) {
                for &at in half_fields(ty) {
                    let scale = half::f16::from_f32(rng.random_range(-0.05..0.05));
                    block[at..at + 2].copy_from_slice(&scale.to_le_bytes());
                }
            }
            data
        }
    };
    QuantMatrix::new(ty, rows, cols, data).expect("a valid matrix")
}

/// `x · Wᵀ` in f64 from the dequantised weights, with the allowed error of each output.
fn reference(linear: &QuantLinear, x: &[f32], m: usize) -> (Vec<f64>, Vec<f64>) {
    let cols = linear.cols();
    let weights: Vec<Vec<f32>> = linear
        .parts()
        .iter()
        .flat_map(|p| (0..p.rows()).map(|r| p.dequantize_row(r)))
        .collect();
    let float: Vec<bool> = linear
        .parts()
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.ggml_type().is_float(), p.rows()))
        .collect();
    let q8 = Q8Activations::quantize(x, cols);
    let (mut y, mut bound) = (Vec::new(), Vec::new());
    for i in 0..m {
        let row = &x[i * cols..(i + 1) * cols];
        let d = q8.row(i).d;
        for (w, &is_float) in weights.iter().zip(&float) {
            let dot: f64 = w
                .iter()
                .zip(row)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let magnitude: f64 = w
                .iter()
                .zip(row)
                .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                .sum();
            let rounding: f64 = if is_float {
                0.0
            } else {
                w.iter()
                    .enumerate()
                    .map(|(c, &a)| f64::from(a).abs() * f64::from(d[c / 32]) / 2.0)
                    .sum()
            };
            y.push(dot);
            bound.push(rounding * 1.001 + 1e-5 * magnitude + 1e-6);
        }
    }
    (y, bound)
}

/// Every kernel set on `linear` as the file lays it out and repacked, against the f32
/// product and the scalar kernels on the file's layout.
fn check_linear(linear: &QuantLinear, m: usize, rng: &mut StdRng, what: &str) {
    let x: Vec<f32> = (0..m * linear.cols())
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let (want, bound) = reference(linear, &x, m);
    let scalar = linear.forward_with(Kernels::Scalar, &x, m);
    let repacked = QuantLinear::new(linear.parts().iter().map(QuantMatrix::repacked).collect())
        .expect("same columns");
    for (layout, linear) in [("file", linear), ("repacked", &repacked)] {
        for kernels in Kernels::available() {
            let got = linear.forward_with(kernels, &x, m);
            assert_eq!(got.len(), want.len());
            for (j, ((&g, &w), &b)) in got.iter().zip(&want).zip(&bound).enumerate() {
                assert!(
                    (f64::from(g) - w).abs() <= b,
                    "{what} {layout} {kernels:?} m={m} output {j}: {g} vs f32 product {w} \
                     (allowed {b})"
                );
                let s = f64::from(scalar[j]);
                assert!(
                    (f64::from(g) - s).abs() <= 1e-5 * (w.abs() + b) + 1e-5,
                    "{what} {layout} {kernels:?} m={m} output {j}: {g} vs scalar {s}"
                );
            }
        }
    }
}

fn check(ty: GgmlType, other: GgmlType, m: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let cols = 512;
    let linear = QuantLinear::new(vec![
        random_matrix(ty, 5, cols, &mut rng),
        random_matrix(other, 3, cols, &mut rng),
    ])
    .expect("same columns");
    check_linear(&linear, m, &mut rng, &format!("{ty}+{other}"));
}

const PACKED: [GgmlType; 7] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q6K,
];

#[test]
fn tiles_cover_ragged_shapes() {
    let mut rng = StdRng::seed_from_u64(29);
    for (i, &ty) in PACKED.iter().enumerate() {
        let other = PACKED[(i + 3) % PACKED.len()];
        // Columns: one and several blocks, not a multiple of 256 where the type allows it.
        let block = ty.block_len().max(other.block_len());
        for cols in [block, 3 * block, 9 * 32_usize.max(block)] {
            // Rows: under a group, one group plus a remainder, and two parts.
            for rows in [1, 13] {
                let linear = QuantLinear::new(vec![
                    random_matrix(ty, rows, cols, &mut rng),
                    random_matrix(other, 9, cols, &mut rng),
                ])
                .expect("same columns");
                // Activation rows: one, under every tile, and whole tiles plus remainders.
                for m in [1, 3, 9, 13, 17] {
                    check_linear(&linear, m, &mut rng, &format!("{ty}+{other} {rows}×{cols}"));
                }
            }
        }
    }
}

#[test]
fn repacking_keeps_every_value() {
    let mut rng = StdRng::seed_from_u64(31);
    for &ty in &PACKED {
        let plain = random_matrix(ty, 11, 512, &mut rng);
        let repacked = plain.repacked();
        assert!(repacked.is_repacked(), "{ty}");
        assert_eq!(repacked.rows(), 11);
        for (p, r) in plain.dequantize().iter().zip(repacked.dequantize()) {
            assert!((p - r).abs() <= 1e-6 * p.abs(), "{ty}: {p} vs {r}");
        }
    }
    // A type without an interleaved layout is copied as it is.
    let q5k = random_matrix(GgmlType::Q5K, 3, 256, &mut rng);
    assert!(!q5k.repacked().is_repacked());
    assert_eq!(q5k.repacked().dequantize(), q5k.dequantize());
}

#[test]
fn every_type_and_kernel_matches_the_dequantised_product() {
    for (i, &ty) in ALL.iter().enumerate() {
        // One and several activation rows (a tile of four plus a remainder), mixed part types.
        for m in [1, 6] {
            check(ty, ALL[(i + 5) % ALL.len()], m, 17 + i as u64);
        }
    }
}

#[test]
fn rows_can_be_permuted_and_shapes_are_checked() {
    let mut rng = StdRng::seed_from_u64(3);
    let m = random_matrix(GgmlType::Q4K, 4, 256, &mut rng);
    let p = m.permute_rows(&[2, 0, 3, 1]);
    assert_eq!(p.dequantize_row(0), m.dequantize_row(2));
    assert_eq!(p.dequantize_row(3), m.dequantize_row(1));
    assert!(QuantMatrix::new(GgmlType::Q4_0, 2, 64, vec![0; 10]).is_err());
    assert!(QuantMatrix::new(GgmlType::Q4_0, 1, 40, vec![0; 18]).is_err());
    let other = random_matrix(GgmlType::Q8_0, 2, 128, &mut rng);
    assert!(QuantLinear::new(vec![m, other]).is_err());
}

#[test]
fn zero_activations_give_zero() {
    let mut rng = StdRng::seed_from_u64(5);
    let linear =
        QuantLinear::new(vec![random_matrix(GgmlType::Q4_1, 3, 64, &mut rng)]).expect("one part");
    for kernels in Kernels::available() {
        assert_eq!(linear.forward_with(kernels, &[0.0; 128], 2), vec![0.0; 6]);
    }
}
