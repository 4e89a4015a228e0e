//! The BERT encoder on the CPU in plain buffers: the same maths as `model.rs`, with every
//! projection one product that starts from the bias (and the residual) —
//! [`super::direct_gemm`] on AVX-512, the `gemm` crate elsewhere — attention per sequence and
//! head on its own tokens, and LayerNorm, GELU and softmax as loops over the rows.
//!
//! Why a second path: through the tensor API a MiniLM layer is ~20 operations, each
//! allocating its result (the kernel faults fresh pages in for the multi-megabyte ones),
//! copying strided views and masking padding that is then thrown away; at batch 1 that
//! overhead is as large as the products. Here the batch's tokens are packed without padding
//! (a short sentence batched with a long one costs only its own tokens), so attention needs
//! no mask. `model.rs` stays the path for every other device, and the reference tests hold
//! this one to the same fixtures.
#![allow(
    unsafe_code,
    reason = "the `gemm` crate's product takes raw pointers and strides, checked against the \
              slices' lengths before each call"
)]

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use rayon::prelude::*;

use super::direct_gemm;
use super::gelu::{exp_non_positive, gelu_f32};
use super::model::BertModel;
use super::pooling::{NORM_EPS, Pooling, PoolingHead};
use super::simd::{Lanes, with_widest_simd};
use crate::gemm_call::{self, Strided};

/// From this many multiply-adds on, a product is split over rayon's threads.
const PARALLEL_MACS: usize = 1 << 21;
/// Rows per task for the row-wise loops (LayerNorm, GELU).
const ROWS_PER_TASK: usize = 16;

fn values<const D: usize>(param: &Param<Tensor<D>>) -> Vec<f32> {
    param
        .val()
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("the encoder's weights are f32 tensors")
}

/// `y = x · weight + bias` with `weight` as `[inputs, outputs]`, as burn's `Linear` stores it.
#[derive(Debug)]
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    fn new(linear: &Linear) -> Self {
        let [inputs, outputs] = linear.weight.dims();
        let bias = linear
            .bias
            .as_ref()
            .map_or_else(|| vec![0.0; outputs], values);
        Self {
            weight: values(&linear.weight),
            bias,
            inputs,
            outputs,
        }
    }

    /// `out = x · weight + bias (+ residual)`, `x` being `rows` rows of `inputs`.
    fn forward(&self, x: &[f32], rows: usize, residual: Option<&[f32]>, out: &mut Vec<f32>) {
        out.clear();
        match residual {
            Some(residual) => out.extend(
                residual
                    .chunks_exact(self.outputs)
                    .flat_map(|row| row.iter().zip(&self.bias).map(|(r, b)| r + b)),
            ),
            None => {
                for _ in 0..rows {
                    out.extend_from_slice(&self.bias);
                }
            }
        }
        assert!(x.len() >= rows * self.inputs && out.len() == rows * self.outputs);
        let parallel = rows * self.inputs * self.outputs >= PARALLEL_MACS;
        #[cfg(target_arch = "x86_64")]
        if self.outputs.is_multiple_of(direct_gemm::BLOCK) && direct_gemm::available() {
            direct_gemm::multiply_add(
                x,
                rows,
                &self.weight,
                self.inputs,
                self.outputs,
                out,
                parallel,
            );
            return;
        }
        let parallelism = if parallel {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: `x` is read as `rows × inputs` (row stride `inputs`), `weight` as `inputs ×
        // outputs` (row stride `outputs`) and `out` is read and written as `rows × outputs`
        // (row stride `outputs`): all within the lengths asserted above, and `out` is a
        // buffer of its own.
        unsafe {
            gemm_call::multiply(
                (rows, self.outputs, self.inputs),
                Strided::rows(out.as_mut_ptr(), self.outputs),
                true,
                Strided::rows(x.as_ptr(), self.inputs),
                Strided::rows(self.weight.as_ptr(), self.outputs),
                1.0,
                parallelism,
            );
        }
    }
}

/// LayerNorm's scale, shift and epsilon.
#[derive(Debug)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    epsilon: f32,
}

impl Norm {
    fn new(norm: &LayerNorm, epsilon: f32) -> Self {
        let gamma = values(&norm.gamma);
        let beta = norm
            .beta
            .as_ref()
            .map_or_else(|| vec![0.0; gamma.len()], values);
        Self {
            gamma,
            beta,
            epsilon,
        }
    }

    /// Normalises every row of `x` in place.
    fn apply(&self, x: &mut [f32]) {
        let width = self.gamma.len();
        x.par_chunks_mut(width * ROWS_PER_TASK).for_each(|rows| {
            with_widest_simd(
                #[inline(always)]
                || {
                    for row in rows.chunks_exact_mut(width) {
                        let mean = Lanes::sum(row) / width as f32;
                        let variance = Lanes::sum_squared_deviation(row, mean) / width as f32;
                        let scale = 1.0 / (variance + self.epsilon).sqrt();
                        for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
                            *v = (*v - mean) * scale * g + b;
                        }
                    }
                },
            );
        });
    }
}

#[derive(Debug)]
struct Layer {
    qkv: Dense,
    attention_output: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

/// The encoder's weights as host buffers.
#[derive(Debug)]
pub struct HostEncoder {
    word_embeddings: Vec<f32>,
    position_and_type: Vec<f32>,
    embeddings_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    exact_gelu: bool,
}

/// One sequence's place in the packed token matrix.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

impl HostEncoder {
    /// Reads `model`'s weights into host buffers; `epsilon` is the config's `layer_norm_eps`
    /// (burn's `LayerNorm` keeps its own private).
    pub fn new(model: &BertModel, epsilon: f32) -> Self {
        let [_, hidden] = model.position_and_type.dims();
        let layers = model
            .layers
            .iter()
            .map(|layer| Layer {
                qkv: Dense::new(&layer.qkv),
                attention_output: Dense::new(&layer.attention_output.dense),
                attention_norm: Norm::new(&layer.attention_output.layer_norm, epsilon),
                intermediate: Dense::new(&layer.intermediate),
                output: Dense::new(&layer.output.dense),
                output_norm: Norm::new(&layer.output.layer_norm, epsilon),
            })
            .collect();
        Self {
            word_embeddings: values(&model.word_embeddings.weight),
            position_and_type: values(&model.position_and_type),
            embeddings_norm: Norm::new(&model.embeddings_norm, epsilon),
            layers,
            hidden,
            heads: model.num_heads,
            exact_gelu: model.exact_gelu,
        }
    }

    /// Sentence vectors of `batch` (ids checked by the caller: non-empty, in the vocabulary,
    /// within the position table), pooled and normalised as `head` says.
    pub fn embed(&self, batch: &[Vec<u32>], head: PoolingHead) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let mut spans = Vec::with_capacity(batch.len());
        let mut x = Vec::with_capacity(batch.iter().map(Vec::len).sum::<usize>() * h);
        for tokens in batch {
            spans.push(Span {
                start: x.len() / h,
                len: tokens.len(),
            });
            for (position, &id) in tokens.iter().enumerate() {
                let word = &self.word_embeddings[id as usize * h..][..h];
                let place = &self.position_and_type[position * h..][..h];
                x.extend(word.iter().zip(place).map(|(w, p)| w + p));
            }
        }
        self.embeddings_norm.apply(&mut x);
        let mut buffers = Buffers::default();
        for layer in &self.layers {
            self.layer(layer, &mut x, &spans, &mut buffers);
        }
        spans
            .iter()
            .map(|span| pool(&x[span.start * h..(span.start + span.len) * h], h, head))
            .collect()
    }

    fn layer(&self, layer: &Layer, x: &mut Vec<f32>, spans: &[Span], b: &mut Buffers) {
        let rows = x.len() / self.hidden;
        layer.qkv.forward(x, rows, None, &mut b.qkv);
        self.attention(&b.qkv, spans, &mut b.context);
        layer
            .attention_output
            .forward(&b.context, rows, Some(x), &mut b.attended);
        layer.attention_norm.apply(&mut b.attended);
        layer
            .intermediate
            .forward(&b.attended, rows, None, &mut b.up);
        let exact = self.exact_gelu;
        b.up.par_chunks_mut(layer.intermediate.outputs * ROWS_PER_TASK)
            .for_each(|chunk| {
                with_widest_simd(
                    #[inline(always)]
                    || {
                        if exact {
                            chunk.iter_mut().for_each(|v| *v = gelu_f32(*v));
                        } else {
                            chunk.iter_mut().for_each(|v| *v = gelu_tanh(*v));
                        }
                    },
                );
            });
        layer.output.forward(&b.up, rows, Some(&b.attended), x);
        layer.output_norm.apply(x);
    }

    /// Scaled dot-product attention of every sequence over its own tokens, every head apart:
    /// `qkv` rows are `[q | k | v]`, heads side by side in each.
    fn attention(&self, qkv: &[f32], spans: &[Span], context: &mut Vec<f32>) {
        let (h, heads) = (self.hidden, self.heads);
        let d = h / heads;
        let scale = 1.0 / (d as f32).sqrt();
        let parts: Vec<(Span, usize, Vec<f32>)> = spans
            .iter()
            .flat_map(|&span| (0..heads).map(move |head| (span, head)))
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|(span, head)| {
                let rows = &qkv[span.start * 3 * h..(span.start + span.len) * 3 * h];
                (span, head, attend_head(rows, span.len, h, d, head, scale))
            })
            .collect();
        context.clear();
        context.resize(qkv.len() / 3, 0.0);
        for (span, head, values) in parts {
            for (t, row) in values.chunks_exact(d).enumerate() {
                context[(span.start + t) * h + head * d..][..d].copy_from_slice(row);
            }
        }
    }
}

/// One head of one sequence: `softmax(q·kᵀ·scale)·v`, `len × d`. `rows` are the sequence's
/// `len` rows of `[q | k | v]` (`3h` wide).
fn attend_head(rows: &[f32], len: usize, h: usize, d: usize, head: usize, scale: f32) -> Vec<f32> {
    assert!(rows.len() == len * 3 * h && (head + 1) * d <= h);
    let q = rows[head * d..].as_ptr();
    let k = rows[h + head * d..].as_ptr();
    let v = rows[2 * h + head * d..].as_ptr();
    let mut scores = vec![0.0f32; len * len];
    // SAFETY: q and k are read as `len × d` with row stride `3h` from offsets below `3h`
    // within `rows` (len rows of 3h, asserted); k is read transposed (`d × len`: column stride
    // `3h`); `scores` is `len × len`.
    unsafe {
        gemm_call::multiply(
            (len, len, d),
            Strided::rows(scores.as_mut_ptr(), len),
            false,
            Strided::rows(q, 3 * h),
            Strided::columns(k, 3 * h),
            scale,
            gemm::Parallelism::None,
        );
    }
    with_widest_simd(
        #[inline(always)]
        || {
            for row in scores.chunks_exact_mut(len) {
                let max = Lanes::max(row);
                row.iter_mut().for_each(|s| *s = exp_non_positive(*s - max));
                let inverse = 1.0 / Lanes::sum(row);
                row.iter_mut().for_each(|s| *s *= inverse);
            }
        },
    );
    let mut out = vec![0.0f32; len * d];
    // SAFETY: `scores` is `len × len`, v is read as `len × d` with row stride `3h` (as q
    // above), `out` is `len × d`.
    unsafe {
        gemm_call::multiply(
            (len, d, len),
            Strided::rows(out.as_mut_ptr(), d),
            false,
            Strided::rows(scores.as_ptr(), len),
            Strided::rows(v, 3 * h),
            1.0,
            gemm::Parallelism::None,
        );
    }
    out
}

/// The tanh approximation of GELU (`gelu_new`), as burn's `gelu_approximate`.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// One sequence's `len × h` hidden states to its sentence vector.
fn pool(states: &[f32], h: usize, head: PoolingHead) -> Vec<f32> {
    let mut vector = match head.pooling {
        Pooling::Cls => states[..h].to_vec(),
        Pooling::Mean => {
            let mut sum = vec![0.0f32; h];
            for row in states.chunks_exact(h) {
                sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            // Every sequence has a token (checked by the caller), so no clamp as in `mean_pool`.
            let count = (states.len() / h) as f32;
            sum.iter_mut().for_each(|s| *s /= count);
            sum
        }
    };
    if head.normalize {
        let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        let inverse = 1.0 / norm.max(NORM_EPS);
        vector.iter_mut().for_each(|v| *v *= inverse);
    }
    vector
}

/// The per-layer activations, reused from layer to layer.
#[derive(Debug, Default)]
struct Buffers {
    qkv: Vec<f32>,
    context: Vec<f32>,
    attended: Vec<f32>,
    up: Vec<f32>,
}
