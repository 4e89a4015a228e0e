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
mod linear;
mod packed;
mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_packed;

use std::ops::Range;
use std::sync::{Arc, OnceLock};

pub use self::linear::{MatmulScratch, QuantLinear};
use self::packed::GROUP;
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
/// shared buffer (a GGUF file's), so keeping a file's matrices costs no copy of them; or, after
/// [`Self::repacked`], groups of eight rows interleaved for the tiled kernels.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: Arc<Vec<u8>>,
    range: Range<usize>,
    /// Rows in `packed.rs`'s groups of eight (the last padded with zero rows).
    packed: bool,
}

/// Runs `$body` with `$f` the format type of a packable `$ty`, else `$other`.
macro_rules! with_packed {
    ($ty:expr, |$f:ident| $body:expr, else $other:expr) => {{
        use self::formats::{Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q6K, Q8_0};
        match $ty {
            GgmlType::Q4_0 => {
                type $f = Q4_0;
                $body
            }
            GgmlType::Q4_1 => {
                type $f = Q4_1;
                $body
            }
            GgmlType::Q5_0 => {
                type $f = Q5_0;
                $body
            }
            GgmlType::Q5_1 => {
                type $f = Q5_1;
                $body
            }
            GgmlType::Q8_0 => {
                type $f = Q8_0;
                $body
            }
            GgmlType::Q4K => {
                type $f = Q4K;
                $body
            }
            GgmlType::Q6K => {
                type $f = Q6K;
                $body
            }
            _ => $other,
        }
    }};
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
            packed: false,
        })
    }

    /// The matrix in its own buffer and in the layout its kernels run fastest on: Q4_0, Q4_1,
    /// Q5_0, Q5_1, Q8_0, Q4_K and Q6_K interleaved for the tiled kernels (the same size, Q4_K
    /// 3% more), other types copied as they are. A loader that repacks every matrix of a file
    /// can drop the file's buffer.
    pub fn repacked(&self) -> Self {
        if self.packed {
            return self.clone();
        }
        let row_bytes = self.row_bytes();
        let data = with_packed!(
            self.ty,
            |F| packed::pack::<F>(self.bytes(), self.rows, row_bytes),
            else {
                let data = self.bytes().to_vec();
                let range = 0..data.len();
                return Self { data: Arc::new(data), range, ..self.clone() };
            }
        );
        Self {
            range: 0..data.len(),
            data: Arc::new(data),
            packed: true,
            ..self.clone()
        }
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

    /// Whether the rows are interleaved ([`Self::repacked`]).
    pub fn is_repacked(&self) -> bool {
        self.packed
    }

    /// Rows as stored: padded to whole groups when interleaved.
    fn stored_rows(&self) -> usize {
        if self.packed {
            self.rows.next_multiple_of(GROUP)
        } else {
            self.rows
        }
    }

    fn row_bytes(&self) -> usize {
        debug_assert!(!self.packed, "interleaved rows have no bytes of their own");
        self.range.len() / self.rows
    }

    /// Bytes of one group of eight interleaved rows.
    fn group_bytes(&self) -> usize {
        self.range.len() / self.rows.div_ceil(GROUP)
    }

    fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.bytes()[r * n..(r + 1) * n]
    }

    /// Row `r` as f32.
    pub fn dequantize_row(&self, r: usize) -> Vec<f32> {
        if !self.packed {
            return dequantize(self.ty, self.row(r), self.cols);
        }
        let n = self.group_bytes();
        let group = &self.bytes()[r / GROUP * n..(r / GROUP + 1) * n];
        with_packed!(
            self.ty,
            |F| packed::dequantize_row::<F>(group, r % GROUP),
            else unreachable!("only packable types are interleaved")
        )
    }

    /// The whole matrix as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        if self.packed {
            return (0..self.rows)
                .flat_map(|r| self.dequantize_row(r))
                .collect();
        }
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
            packed: false,
            ..self.clone()
        }
    }

    /// The matrix with its rows reordered: row `i` of the result is row `order[i]`.
    ///
    /// # Panics
    /// On an interleaved matrix: reorder before [`Self::repacked`].
    pub fn permute_rows(&self, order: &[usize]) -> Self {
        assert!(
            !self.packed,
            "rows are reordered before they are interleaved"
        );
        let data: Vec<u8> = order.iter().flat_map(|&r| self.row(r)).copied().collect();
        Self {
            rows: order.len(),
            range: 0..data.len(),
            data: Arc::new(data),
            ..self.clone()
        }
    }
}
