//! Matrix products on GGUF weights kept as they are in the file: quantised blocks (Q4_0,
//! Q4_1, Q5_0, Q5_1, Q8_0, Q2_K…Q6_K) or f32/f16/bf16 rows, multiplied without an f32 copy.
//!
//! As llama.cpp does, the activations are quantised to signed bytes per 32 values
//! ([`activations`]) and each weight sub-block meets them in an integer dot product; the
//! scales and offsets are applied in f32 per sub-block ([`formats`] describes how every type
//! maps onto that one kernel). Kernels are picked at run time ([`Kernels::detect`]): AVX-512
//! VNNI, AVX2 + FMA, or the portable scalar code. Output rows are split over rayon's pool.
//! Float matrices (f32, f16, bf16) multiply f32 activations directly.
//!
//! Written here rather than taken from `candle-core`'s `k_quants`: candle picks its SIMD code
//! at compile time (`target_feature`), so a portable binary would run its scalar loops; and
//! one kernel over a common sub-block form keeps ten types in a few hundred lines.

mod activations;
mod float_gemm;
mod floats;
mod formats;
mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use self::activations::{ActRow, Q8Activations};
use crate::ModelError;
use crate::gguf::{GgmlType, dequantize};

/// Which kernels the matrix products run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Portable Rust, any CPU.
    Scalar,
    /// x86-64 AVX2, FMA and F16C.
    Avx2,
    /// x86-64 AVX2 plus AVX-512 VNNI (with AVX512VL) for the integer dot products.
    Avx512Vnni,
}

impl Kernels {
    /// The fastest kernels this CPU runs; `HEARTH_CPU_KERNELS=scalar|avx2|avx512` picks a
    /// slower set instead (for benchmarks), never one the CPU lacks.
    pub fn detect() -> Self {
        static CHOSEN: OnceLock<Kernels> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let available = Self::available();
            let wanted = std::env::var("HEARTH_CPU_KERNELS").ok();
            let chosen = match wanted.as_deref() {
                Some("scalar") => Some(Self::Scalar),
                Some("avx2") => Some(Self::Avx2),
                Some("avx512") => Some(Self::Avx512Vnni),
                _ => None,
            }
            .filter(|k| available.contains(k))
            .unwrap_or(*available.last().expect("scalar is always available"));
            tracing::info!(kernels = ?chosen, "CPU matrix kernels");
            chosen
        })
    }

    /// Every set this CPU can run, slowest first.
    pub fn available() -> Vec<Self> {
        let mut all = vec![Self::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                all.push(Self::Avx2);
                if has!("avx512vnni") && has!("avx512vl") {
                    all.push(Self::Avx512Vnni);
                }
            }
        }
        all
    }
}

/// One weight matrix in its file type: `rows` rows of `cols` values, each row a whole number
/// of blocks (GGUF's and PyTorch's `[out, in]` layout). The bytes may be a range of a larger
/// shared buffer (a GGUF file's), so keeping a file's matrices costs no copy of them.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl QuantMatrix {
    /// A matrix of type `ty` from its raw bytes.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self, ModelError> {
        let len = data.len();
        Self::shared(ty, rows, cols, Arc::new(data), 0..len)
    }

    /// A matrix of type `ty` whose bytes are `data[range]`.
    pub fn shared(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: Arc<Vec<u8>>,
        range: Range<usize>,
    ) -> Result<Self, ModelError> {
        let row_bytes = ty.bytes_for(cols).ok_or_else(|| {
            ModelError::InvalidInput(format!("{cols} columns are not whole {ty} blocks"))
        })?;
        if range.end > data.len() || range.len() != rows * row_bytes {
            return Err(ModelError::InvalidInput(format!(
                "{} bytes for {rows} rows of {cols} {ty} values ({} expected)",
                range.len(),
                rows * row_bytes
            )));
        }
        if !ty.is_float() && !cols.is_multiple_of(32) {
            return Err(ModelError::InvalidInput(format!(
                "{cols} columns: quantised rows need a multiple of 32"
            )));
        }
        Ok(Self {
            ty,
            rows,
            cols,
            data,
            range,
        })
    }

    fn bytes(&self) -> &[u8] {
        &self.data[self.range.clone()]
    }

    /// The element type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// Rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.range.len()
    }

    fn row_bytes(&self) -> usize {
        self.range.len() / self.rows
    }

    fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.bytes()[r * n..(r + 1) * n]
    }

    /// Row `r` as f32.
    pub fn dequantize_row(&self, r: usize) -> Vec<f32> {
        dequantize(self.ty, self.row(r), self.cols)
    }

    /// The whole matrix as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        dequantize(self.ty, self.bytes(), self.rows * self.cols)
    }

    /// The matrix as f32 rows (for the float kernels).
    pub fn to_f32(&self) -> Self {
        let data: Vec<u8> = self
            .dequantize()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let range = 0..data.len();
        Self {
            ty: GgmlType::F32,
            data: Arc::new(data),
            range,
            ..self.clone()
        }
    }

    /// The matrix with its rows reordered: row `i` of the result is row `order[i]`.
    pub fn permute_rows(&self, order: &[usize]) -> Self {
        let data: Vec<u8> = order.iter().flat_map(|&r| self.row(r)).copied().collect();
        Self {
            rows: order.len(),
            range: 0..data.len(),
            data: Arc::new(data),
            ..self.clone()
        }
    }
}

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

enum RowKernel {
    Quant(QuantRowFn),
    Float(FloatRowFn),
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
        let needs_q8 = self.parts.iter().any(|p| !p.ty.is_float());
        if !needs_q8 && m >= float_gemm::MIN_ROWS {
            let transposed = &mut scratch.transposed;
            transposed.clear();
            transposed.resize(self.rows * m, 0.0);
            float_gemm::forward_transposed(kernels, &self.parts, x, m, self.cols, transposed);
            transpose_into(transposed, m, self.rows, y);
            return;
        }
        if needs_q8 {
            scratch.q8.quantize_into(x, self.cols);
        }
        let q8_rows: Vec<ActRow<'_>> = if needs_q8 {
            (0..m).map(|r| scratch.q8.row(r)).collect()
        } else {
            Vec::new()
        };
        let float_rows: Vec<&[f32]> = x.chunks_exact(self.cols).collect();
        let kernels: Vec<RowKernel> = self
            .parts
            .iter()
            .map(|p| row_kernel(p.ty, kernels))
            .collect();
        // Computed transposed (`[rows, m]`, each task owns whole weight rows) unless `m` is 1.
        let transposed = if m == 1 {
            &mut *y
        } else {
            &mut scratch.transposed
        };
        transposed.clear();
        transposed.resize(self.rows * m, 0.0);
        let threads = rayon::current_num_threads().max(1);
        let rows_per_task = self.rows.div_ceil(8 * threads).clamp(4, 64);
        let starts: Vec<usize> = self
            .parts
            .iter()
            .scan(0, |start, p| {
                let s = *start;
                *start += p.rows;
                Some(s)
            })
            .collect();
        transposed
            .par_chunks_mut(rows_per_task * m)
            .enumerate()
            .for_each(|(task, out)| {
                for (i, out) in out.chunks_exact_mut(m).enumerate() {
                    let global = task * rows_per_task + i;
                    let part = starts.partition_point(|&s| s <= global) - 1;
                    let w = self.parts[part].row(global - starts[part]);
                    match &kernels[part] {
                        RowKernel::Quant(f) => f(w, &q8_rows, out),
                        RowKernel::Float(f) => f(w, &float_rows, out),
                    }
                }
            });
        if m == 1 {
            return;
        }
        transpose_into(&scratch.transposed, m, self.rows, y);
    }
}

/// `y` (`m` rows of `rows`) from `transposed` (`rows` rows of `m`).
fn transpose_into(transposed: &[f32], m: usize, rows: usize, y: &mut Vec<f32>) {
    y.clear();
    y.resize(m * rows, 0.0);
    for (j, column) in transposed.chunks_exact(m).enumerate() {
        for (i, &v) in column.iter().enumerate() {
            y[i * rows + j] = v;
        }
    }
}

/// The buffers of one matrix product (quantised activations, the transposed output), kept
/// between calls by [`QuantLinear::forward_into`]'s callers.
#[derive(Debug, Default)]
pub struct MatmulScratch {
    q8: Q8Activations,
    transposed: Vec<f32>,
}

fn row_kernel(ty: GgmlType, kernels: Kernels) -> RowKernel {
    macro_rules! pick {
        ($format:ty) => {
            RowKernel::Quant(match kernels {
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
            RowKernel::Float(match kernels {
                #[cfg(target_arch = "x86_64")]
                Kernels::Avx512Vnni | Kernels::Avx2 => x86::dot_row_float_avx2::<$format>,
                _ => scalar::dot_row_float::<$format>,
            })
        };
    }
    use formats::{Q2K, Q3K, Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, Q8_0};
    match ty {
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
