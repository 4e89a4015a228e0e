//! [`QuantLinear`]: matrices that share an input, multiplied on rayon's pool. Each part runs
//! the tiled kernels when it is interleaved ([`QuantMatrix::repacked`]), else one weight row
//! at a time against every activation row; tasks own whole output rows (whole groups of eight
//! for the tiled kernels) of a scratch buffer, which is then scattered into `[m, rows]`.

use rayon::prelude::*;

use super::activations::{ActRow, Q8Activations};
use super::packed::{self, GROUP};
use super::{Kernels, QuantMatrix, float_gemm, floats, formats, scalar};
#[cfg(target_arch = "x86_64")]
use super::{x86, x86_packed};
use crate::ModelError;
use crate::gguf::GgmlType;

/// Matrices that share their input, side by side in the output (Q, K and V; gate and up):
/// `y = x · [W₁; W₂; …]ᵀ`. The parts may have different types (a Q4_K_M file mixes them).
#[derive(Debug, Clone)]
pub struct QuantLinear {
    parts: Vec<QuantMatrix>,
    cols: usize,
    rows: usize,
}

type QuantRowFn = fn(&[u8], &[ActRow<'_>], &mut [f32]);
type FloatRowFn = fn(&[u8], &[&[f32]], &mut [f32]);
/// Whole groups of interleaved rows against every activation row: `out[(g·m + r)·8 + j]`.
type GroupsFn = fn(&[u8], &[ActRow<'_>], &mut [f32]);

enum PartKernel {
    Quant(QuantRowFn),
    Float(FloatRowFn),
    Groups(GroupsFn),
}

impl QuantLinear {
    /// The parts' outputs side by side; every part must have the same number of columns.
    pub fn new(parts: Vec<QuantMatrix>) -> Result<Self, ModelError> {
        let cols = parts
            .first()
            .ok_or_else(|| ModelError::InvalidInput("no matrices".into()))?
            .cols;
        if let Some(bad) = parts.iter().find(|p| p.cols != cols) {
            return Err(ModelError::InvalidInput(format!(
                "matrices of {cols} and {} columns cannot share an input",
                bad.cols
            )));
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        Ok(Self { parts, cols, rows })
    }

    /// Inputs.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Outputs (all parts).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes held by the weights.
    pub fn size_bytes(&self) -> usize {
        self.parts.iter().map(QuantMatrix::size_bytes).sum()
    }

    /// The parts.
    pub fn parts(&self) -> &[QuantMatrix] {
        &self.parts
    }

    /// `x · Wᵀ` for `x` of `m` rows of [`Self::cols`] values: `m` rows of [`Self::rows`].
    pub fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.forward_with(Kernels::detect(), x, m)
    }

    /// [`Self::forward`] with the given kernels (which the CPU must support).
    pub fn forward_with(&self, kernels: Kernels, x: &[f32], m: usize) -> Vec<f32> {
        let mut y = Vec::new();
        self.forward_into(kernels, x, m, &mut MatmulScratch::default(), &mut y);
        y
    }

    /// [`Self::forward_with`] into `y` (resized to `m` rows), reusing `scratch`'s buffers: a
    /// decode loop that keeps both allocates nothing here once they have grown.
    pub fn forward_into(
        &self,
        kernels: Kernels,
        x: &[f32],
        m: usize,
        scratch: &mut MatmulScratch,
        y: &mut Vec<f32>,
    ) {
        assert_eq!(x.len(), m * self.cols, "input of {m} rows of {}", self.cols);
        y.clear();
        y.resize(m * self.rows, 0.0);
        if m == 0 {
            return;
        }
        let needs_q8 = self.parts.iter().any(|p| !p.ty.is_float());
        if !needs_q8 && m >= float_gemm::MIN_ROWS {
            let transposed = &mut scratch.transposed;
            transposed.clear();
            transposed.resize(self.rows * m, 0.0);
            float_gemm::forward_transposed(kernels, &self.parts, x, m, self.cols, transposed);
            for (j, column) in transposed.chunks_exact(m).enumerate() {
                for (i, &v) in column.iter().enumerate() {
                    y[i * self.rows + j] = v;
                }
            }
            return;
        }
        if needs_q8 {
            scratch.q8.quantize_into(kernels, x, self.cols);
        }
        let q8_rows: Vec<ActRow<'_>> = if needs_q8 {
            (0..m).map(|r| scratch.q8.row(r)).collect()
        } else {
            Vec::new()
        };
        let float_rows: Vec<&[f32]> = x.chunks_exact(self.cols).collect();
        let part_kernels: Vec<PartKernel> =
            self.parts.iter().map(|p| part_kernel(p, kernels)).collect();
        let threads = rayon::current_num_threads().max(1);
        let rows_per_task = self.rows.div_ceil(8 * threads).clamp(4, 64);
        // Each part's region of the scratch buffer: `[rows, m]` for the row kernels,
        // `[groups, m, 8]` for the tiled ones; each task owns whole rows or groups of one.
        let out = &mut scratch.transposed;
        out.clear();
        out.resize(self.parts.iter().map(|p| p.stored_rows() * m).sum(), 0.0);
        let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
        let mut rest = out.as_mut_slice();
        for (part, p) in self.parts.iter().enumerate() {
            let (region, tail) = rest.split_at_mut(p.stored_rows() * m);
            rest = tail;
            let step = if p.packed {
                rows_per_task.next_multiple_of(GROUP)
            } else {
                rows_per_task
            };
            for (i, chunk) in region.chunks_mut(step * m).enumerate() {
                tasks.push((part, i * step, chunk));
            }
        }
        tasks.into_par_iter().for_each(|(part, first, out)| {
            let p = &self.parts[part];
            match &part_kernels[part] {
                PartKernel::Groups(f) => {
                    let bytes = p.group_bytes();
                    let groups = first / GROUP..(first + out.len() / m) / GROUP;
                    f(
                        &p.bytes()[groups.start * bytes..groups.end * bytes],
                        &q8_rows,
                        out,
                    );
                }
                PartKernel::Quant(f) => {
                    for (i, out) in out.chunks_exact_mut(m).enumerate() {
                        f(p.row(first + i), &q8_rows, out);
                    }
                }
                PartKernel::Float(f) => {
                    for (i, out) in out.chunks_exact_mut(m).enumerate() {
                        f(p.row(first + i), &float_rows, out);
                    }
                }
            }
        });
        let (mut start, mut offset) = (0, 0);
        for p in &self.parts {
            let region = &scratch.transposed[offset..offset + p.stored_rows() * m];
            if p.packed {
                for (g, group) in region.chunks_exact(GROUP * m).enumerate() {
                    let n = (p.rows - GROUP * g).min(GROUP);
                    for (r, values) in group.chunks_exact(GROUP).enumerate() {
                        let at = r * self.rows + start + GROUP * g;
                        y[at..at + n].copy_from_slice(&values[..n]);
                    }
                }
            } else {
                for (j, column) in region.chunks_exact(m).enumerate() {
                    for (i, &v) in column.iter().enumerate() {
                        y[i * self.rows + start + j] = v;
                    }
                }
            }
            start += p.rows;
            offset += region.len();
        }
    }
}

/// The buffers of one matrix product (quantised activations, the kernels' outputs before
/// they are scattered into place), kept between calls by [`QuantLinear::forward_into`]'s
/// callers.
#[derive(Debug, Default)]
pub struct MatmulScratch {
    q8: Q8Activations,
    transposed: Vec<f32>,
}

fn part_kernel(part: &QuantMatrix, kernels: Kernels) -> PartKernel {
    if part.packed {
        return PartKernel::Groups(groups_kernel(part.ty, kernels));
    }
    macro_rules! pick {
        ($format:ty) => {
            PartKernel::Quant(match kernels {
                #[cfg(target_arch = "x86_64")]
                Kernels::Avx512Vnni => x86::dot_row_vnni::<$format>,
                #[cfg(target_arch = "x86_64")]
                Kernels::Avx2 => x86::dot_row_avx2::<$format>,
                _ => scalar::dot_row::<$format>,
            })
        };
    }
    macro_rules! pick_float {
        ($format:ty) => {
            PartKernel::Float(match kernels {
                #[cfg(target_arch = "x86_64")]
                Kernels::Avx512Vnni | Kernels::Avx2 => x86::dot_row_float_avx2::<$format>,
                _ => scalar::dot_row_float::<$format>,
            })
        };
    }
    use formats::{Q2K, Q3K, Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, Q8_0};
    match part.ty {
        GgmlType::F32 => pick_float!(floats::F32),
        GgmlType::F16 => pick_float!(floats::F16),
        GgmlType::BF16 => pick_float!(floats::Bf16),
        GgmlType::Q4_0 => pick!(Q4_0),
        GgmlType::Q4_1 => pick!(Q4_1),
        GgmlType::Q5_0 => pick!(Q5_0),
        GgmlType::Q5_1 => pick!(Q5_1),
        GgmlType::Q8_0 => pick!(Q8_0),
        GgmlType::Q2K => pick!(Q2K),
        GgmlType::Q3K => pick!(Q3K),
        GgmlType::Q4K => pick!(Q4K),
        GgmlType::Q5K => pick!(Q5K),
        GgmlType::Q6K => pick!(Q6K),
    }
}

fn groups_kernel(ty: GgmlType, kernels: Kernels) -> GroupsFn {
    macro_rules! pick {
        ($format:ty) => {
            match kernels {
                #[cfg(target_arch = "x86_64")]
                Kernels::Avx512Vnni => x86_packed::dot_groups_vnni::<$format>,
                #[cfg(target_arch = "x86_64")]
                Kernels::Avx2 => x86_packed::dot_groups_avx2::<$format>,
                _ => packed::dot_groups::<$format>,
            }
        };
    }
    use formats::{Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q6K, Q8_0};
    match ty {
        GgmlType::Q4_0 => pick!(Q4_0),
        GgmlType::Q4_1 => pick!(Q4_1),
        GgmlType::Q5_0 => pick!(Q5_0),
        GgmlType::Q5_1 => pick!(Q5_1),
        GgmlType::Q8_0 => pick!(Q8_0),
        GgmlType::Q4K => pick!(Q4K),
        GgmlType::Q6K => pick!(Q6K),
        other => unreachable!("{other} is never interleaved"),
    }
}
