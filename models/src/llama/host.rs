//! The decoder pass on the CPU in plain buffers, taken when every matrix is kept quantised
//! (GGUF on the CPU): the same maths as `model.rs`, with RMSNorm, RoPE, SwiGLU and attention
//! as fused loops over the rows instead of a dozen tensor operations each.
//!
//! Why a second path: on a small model one decode step is ~40 tensor operations per layer on
//! vectors of a few hundred values, each allocating its result and dispatched through the
//! backend, which costs as much as the matrix products themselves once those run on the
//! quantised kernels. Here a step reuses one set of buffers (kept in [`HostDecoder`] between
//! steps), writes keys and values into the cache's vectors in place, and computes logits only
//! for each sequence's last position. `model.rs` stays the path for every other device and
//! weight type, and the reference tests hold this one to it.

use std::sync::{Mutex, PoisonError};

use burn::prelude::*;
use rayon::prelude::*;

use super::attention::{KeysOf, attend, dot};
use super::cache::{HostLayer, KvCache};
use super::config::LlamaConfig;
use super::weights::{Embedding, Linear, LlamaWeights};
use crate::quant::{Kernels, MatmulScratch, QuantLinear};

/// The vectors of one layer, read back from their tensors once at load.
#[derive(Debug)]
struct LayerVectors {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    qkv_bias: Option<Vec<f32>>,
    qk_norm: Option<(Vec<f32>, Vec<f32>)>,
}

/// What the host pass keeps beside the weights: their vectors as `f32` and the step buffers.
#[derive(Debug)]
pub(crate) struct HostDecoder {
    layers: Vec<LayerVectors>,
    output_norm: Vec<f32>,
    scratch: Mutex<Scratch>,
}

/// One step's buffers, `[tokens, width]` row-major; grown once, then reused.
#[derive(Debug, Default)]
struct Scratch {
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    projected: Vec<f32>,
    gate_up: Vec<f32>,
    activated: Vec<f32>,
    last: Vec<f32>,
    logits: Vec<f32>,
    matmul: MatmulScratch,
}

fn quantised(linear: &Linear) -> Option<&QuantLinear> {
    match linear {
        Linear::Quant(q) => Some(q),
        Linear::Dense(_) => None,
    }
}

fn values(tensor: &Tensor<1>) -> Vec<f32> {
    tensor
        .to_data()
        .try_to_vec()
        .expect("the model's vectors are f32")
}

impl HostDecoder {
    /// The host pass for `weights`, when every matrix and the embeddings are quantised.
    pub fn new(weights: &LlamaWeights) -> Option<Self> {
        let all_quantised = matches!(weights.embedding, Embedding::Quant(_))
            && quantised(&weights.lm_head).is_some()
            && weights.layers.iter().all(|l| {
                [&l.qkv, &l.attn_output, &l.gate_up, &l.down]
                    .into_iter()
                    .all(|m| quantised(m).is_some())
            });
        if !all_quantised {
            return None;
        }
        let layers = weights
            .layers
            .iter()
            .map(|l| LayerVectors {
                attn_norm: values(&l.attn_norm),
                ffn_norm: values(&l.ffn_norm),
                qkv_bias: l.qkv_bias.as_ref().map(values),
                qk_norm: l.qk_norm.as_ref().map(|(q, k)| (values(q), values(k))),
            })
            .collect();
        Some(Self {
            layers,
            output_norm: values(&weights.output_norm),
            scratch: Mutex::default(),
        })
    }

    /// [`super::LlamaModel::forward_batch`] (inputs already checked): one logits vector per
    /// sequence; every cache advanced by its new tokens.
    pub fn forward_batch(
        &self,
        config: &LlamaConfig,
        weights: &LlamaWeights,
        rope: (&[f32], &[f32]),
        batch: &mut [(&[u32], &mut KvCache)],
    ) -> Vec<Vec<f32>> {
        let mut guard = self.scratch.lock().unwrap_or_else(PoisonError::into_inner);
        let Scratch {
            x,
            normed,
            qkv,
            context,
            projected,
            gate_up,
            activated,
            last,
            logits,
            matmul,
        } = &mut *guard;
        let kernels = Kernels::detect();
        let c = config;
        #[allow(clippy::cast_possible_truncation, reason = "ε is a small f32 constant")]
        let eps = c.rms_norm_eps as f32;
        let d = c.head_dim;
        let (q_width, kv_width) = (c.num_heads * d, c.num_kv_heads * d);
        let qkv_width = q_width + 2 * kv_width;
        let ffn = c.intermediate_size;
        let group = c.num_heads / c.num_kv_heads;
        #[allow(clippy::cast_precision_loss, reason = "head widths are small")]
        let scale = 1.0 / (d as f32).sqrt();
        // Each new token's sequence and position.
        let tokens: Vec<(usize, usize)> = batch
            .iter()
            .enumerate()
            .flat_map(|(i, (t, cache))| (cache.len()..cache.len() + t.len()).map(move |p| (i, p)))
            .collect();
        let total = tokens.len();

        let Embedding::Quant(table) = &weights.embedding else {
            unreachable!("checked in new()")
        };
        x.clear();
        for (ids, _) in batch.iter() {
            for &id in *ids {
                x.extend(table.dequantize_row(id as usize));
            }
        }

        for (index, (layer, vectors)) in weights.layers.iter().zip(&self.layers).enumerate() {
            let linear = |l| quantised(l).expect("checked in new()");
            rms_norm_rows(x, &vectors.attn_norm, eps, normed);
            linear(&layer.qkv).forward_into(kernels, normed, total, matmul, qkv);
            for (row, &(_, position)) in qkv.chunks_exact_mut(qkv_width).zip(&tokens) {
                if let Some(bias) = &vectors.qkv_bias {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
                let (q, rest) = row.split_at_mut(q_width);
                let k = &mut rest[..kv_width];
                if let Some((q_norm, k_norm)) = &vectors.qk_norm {
                    q.chunks_exact_mut(d)
                        .for_each(|head| rms_norm_in_place(head, q_norm, eps));
                    k.chunks_exact_mut(d)
                        .for_each(|head| rms_norm_in_place(head, k_norm, eps));
                }
                let table = position * d / 2..(position + 1) * d / 2;
                let (cos, sin) = (&rope.0[table.clone()], &rope.1[table]);
                for head in q.chunks_exact_mut(d).chain(k.chunks_exact_mut(d)) {
                    rotate_half(head, cos, sin);
                }
            }
            let mut row = 0;
            for (ids, cache) in batch.iter_mut() {
                let host = cache.host_layer(index, kv_width);
                for r in qkv[row * qkv_width..(row + ids.len()) * qkv_width].chunks_exact(qkv_width)
                {
                    host.keys.extend_from_slice(&r[q_width..q_width + kv_width]);
                    host.values.extend_from_slice(&r[q_width + kv_width..]);
                }
                row += ids.len();
            }
            let layers: Vec<&HostLayer> = batch.iter().map(|(_, c)| c.host(index)).collect();
            context.clear();
            context.resize(total * q_width, 0.0);
            let qkv = &*qkv;
            context.par_chunks_mut(d).enumerate().for_each(|(i, out)| {
                let (t, head) = (i / c.num_heads, i % c.num_heads);
                let (sequence, position) = tokens[t];
                let query = &qkv[t * qkv_width + head * d..][..d];
                let keys = KeysOf {
                    layer: layers[sequence],
                    offset: (head / group) * d,
                    stride: kv_width,
                };
                attend(kernels, query, &keys, position + 1, scale, out);
            });
            linear(&layer.attn_output).forward_into(kernels, context, total, matmul, projected);
            x.iter_mut().zip(&*projected).for_each(|(x, p)| *x += p);

            rms_norm_rows(x, &vectors.ffn_norm, eps, normed);
            linear(&layer.gate_up).forward_into(kernels, normed, total, matmul, gate_up);
            activated.clear();
            for row in gate_up.chunks_exact(2 * ffn) {
                let (gate, up) = row.split_at(ffn);
                activated.extend(
                    gate.iter()
                        .zip(up)
                        .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u),
                );
            }
            linear(&layer.down).forward_into(kernels, activated, total, matmul, projected);
            x.iter_mut().zip(&*projected).for_each(|(x, p)| *x += p);
        }

        let hidden = c.hidden_size;
        last.clear();
        let mut end = 0;
        for (ids, cache) in batch.iter_mut() {
            end += ids.len();
            last.extend_from_slice(&x[(end - 1) * hidden..end * hidden]);
            cache.advance(ids.len());
        }
        last.chunks_exact_mut(hidden)
            .for_each(|row| rms_norm_in_place(row, &self.output_norm, eps));
        quantised(&weights.lm_head)
            .expect("checked in new()")
            .forward_into(kernels, last, batch.len(), matmul, logits);
        logits
            .chunks_exact(c.vocab_size)
            .map(<[f32]>::to_vec)
            .collect()
    }
}

/// `x / rms(x) · weight` for every row of `x` (rows as wide as `weight`), into `out`.
fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.clear();
    out.extend_from_slice(x);
    out.chunks_exact_mut(weight.len())
        .for_each(|row| rms_norm_in_place(row, weight, eps));
}

fn rms_norm_in_place(row: &mut [f32], weight: &[f32], eps: f32) {
    #[allow(clippy::cast_precision_loss, reason = "widths are small")]
    let mean_square = dot(row, row) / row.len() as f32;
    let inverse = 1.0 / (mean_square + eps).sqrt();
    row.iter_mut()
        .zip(weight)
        .for_each(|(v, w)| *v = *v * inverse * w);
}

/// Rotate-half RoPE on one head: `(a, b) → (a·cos − b·sin, b·cos + a·sin)` per frequency.
fn rotate_half(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let (first, second) = head.split_at_mut(head.len() / 2);
    for (((a, b), &c), &s) in first.iter_mut().zip(second).zip(cos).zip(sin) {
        let (x, y) = (*a, *b);
        *a = x * c - y * s;
        *b = y * c + x * s;
    }
}
