//! The phoneme encoder (`enc_p`): embedding scaled by `sqrt(hidden)`, a post-LN transformer
//! whose self-attention adds relative-position terms for keys and values within a window
//! (shared across heads), convolutional feed-forward layers, and the projection to the prior's
//! mean and log-scale.
//!
//! The relative terms are computed by gathering, not by VITS' pad-and-reshape trick: for query
//! `i` and key `j` within the window the key term is `q_i · E_k[j - i + w]`, and the value term
//! sums `p_ij · E_v[j - i + w]`; outside the window both are zero, which is exactly what the
//! zero padding of the original computes.

use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};

use super::layers::{ChannelNorm, Conv, split_channels};
use super::loader::Initializers;
use crate::ModelError;

#[derive(Debug, Clone)]
struct Attention {
    q: Conv,
    k: Conv,
    v: Conv,
    o: Conv,
    /// `[heads or 1, 2w + 1, head_dim]`.
    rel_k: Tensor<3>,
    rel_v: Tensor<3>,
}

#[derive(Debug, Clone)]
struct Layer {
    attention: Attention,
    norm_1: ChannelNorm,
    ffn_1: Conv,
    ffn_2: Conv,
    norm_2: ChannelNorm,
}

/// `enc_p`.
#[derive(Debug, Clone)]
pub(crate) struct TextEncoder {
    embedding: Tensor<2>,
    layers: Vec<Layer>,
    proj: Conv,
    pub hidden: usize,
    heads: usize,
    window: usize,
    /// Channels of the prior (`inter_channels`).
    pub prior_channels: usize,
}

/// What the encoder gives the rest of the network, `[1, channels, phonemes]` each.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    /// The transformer's output (the duration predictor's input).
    pub hidden: Tensor<3>,
    /// The prior's mean and log-scale per phoneme.
    pub mean: Tensor<3>,
    pub log_scale: Tensor<3>,
}

/// "Same" padding around a convolution whose node pads nothing (VITS pads in a separate op).
fn same_padded(mut conv: Conv) -> Conv {
    let k = conv.kernel();
    if conv.padding == (0, 0) {
        conv.padding = ((k - 1) / 2, k / 2);
    }
    conv
}

impl TextEncoder {
    pub fn load(w: &Initializers<'_>) -> Result<Self, ModelError> {
        let embedding = w.embedding("enc_p.emb")?;
        let [_, hidden] = embedding.dims();
        let n_layers = w.count("enc_p.encoder.attn_layers", |w, p| {
            w.has_module(&format!("{p}.conv_q"))
        });
        if n_layers == 0 {
            return Err(w.error(
                "enc_p.encoder.attn_layers.0.conv_q.weight",
                "the text encoder has no attention layers",
            ));
        }
        let rel_name = "enc_p.encoder.attn_layers.0.emb_rel_k";
        let rel_shape = w.shape_of(rel_name).unwrap_or_default();
        let (window, head_dim) = match rel_shape.as_slice() {
            [_, span, head_dim] if span % 2 == 1 && *head_dim > 0 && hidden % head_dim == 0 => {
                ((span - 1) / 2, *head_dim)
            }
            other => {
                return Err(w.error(
                    rel_name,
                    format!("shape {other:?}, expected [1, 2w + 1, head_dim]"),
                ));
            }
        };
        let heads = hidden / head_dim;
        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let a = format!("enc_p.encoder.attn_layers.{i}");
            let rel = |leaf: &str| {
                w.tensor::<3>(
                    &format!("{a}.{leaf}"),
                    [None, Some(2 * window + 1), Some(head_dim)],
                )
            };
            layers.push(Layer {
                attention: Attention {
                    q: w.conv(&format!("{a}.conv_q"))?,
                    k: w.conv(&format!("{a}.conv_k"))?,
                    v: w.conv(&format!("{a}.conv_v"))?,
                    o: w.conv(&format!("{a}.conv_o"))?,
                    rel_k: rel("emb_rel_k")?,
                    rel_v: rel("emb_rel_v")?,
                },
                norm_1: w.norm(&format!("enc_p.encoder.norm_layers_1.{i}"), hidden)?,
                ffn_1: same_padded(w.conv(&format!("enc_p.encoder.ffn_layers.{i}.conv_1"))?),
                ffn_2: same_padded(w.conv(&format!("enc_p.encoder.ffn_layers.{i}.conv_2"))?),
                norm_2: w.norm(&format!("enc_p.encoder.norm_layers_2.{i}"), hidden)?,
            });
        }
        let proj = w.conv("enc_p.proj")?;
        let prior_channels = proj.out_channels() / 2;
        Ok(Self {
            embedding,
            layers,
            proj,
            hidden,
            heads,
            window,
            prior_channels,
        })
    }

    /// Symbols the embedding has.
    pub fn vocab(&self) -> usize {
        self.embedding.dims()[0]
    }

    /// Phoneme ids (one utterance) → hidden states and the prior.
    pub fn forward(&self, ids: &[i64]) -> Result<Encoded, ModelError> {
        let vocab = self.embedding.dims()[0];
        if let Some(bad) = ids
            .iter()
            .find(|&&id| usize::try_from(id).map_or(true, |v| v >= vocab))
        {
            return Err(ModelError::InvalidInput(format!(
                "phoneme id {bad} is outside the voice's {vocab} symbols"
            )));
        }
        if ids.is_empty() {
            return Err(ModelError::InvalidInput("no phonemes to speak".into()));
        }
        let device = self.embedding.device();
        let t = ids.len();
        let index = Tensor::<1, Int>::from_data(TensorData::new(ids.to_vec(), [t]), &device);
        #[allow(clippy::cast_precision_loss, reason = "hidden widths are small")]
        let scale = (self.hidden as f64).sqrt();
        let mut x = (self.embedding.clone().select(0, index) * scale)
            .swap_dims(0, 1)
            .unsqueeze::<3>();
        let offsets = RelativeIndex::new(t, self.window, &device);
        for layer in &self.layers {
            let y = self.attend(&layer.attention, x.clone(), &offsets);
            x = layer.norm_1.forward(x + y);
            let y = layer.ffn_2.forward(relu(layer.ffn_1.forward(x.clone())));
            x = layer.norm_2.forward(x + y);
        }
        let stats = self.proj.forward(x.clone());
        let (mean, log_scale) = split_channels(stats, self.prior_channels);
        Ok(Encoded {
            hidden: x,
            mean,
            log_scale,
        })
    }

    fn attend(&self, a: &Attention, x: Tensor<3>, rel: &RelativeIndex) -> Tensor<3> {
        let [b, d, t] = x.dims();
        let heads = self.heads;
        let head_dim = d / heads;
        // [b, d, t] → [b, heads, t, head_dim]
        let split = |y: Tensor<3>| y.reshape([b, heads, head_dim, t]).swap_dims(2, 3);
        #[allow(clippy::cast_precision_loss, reason = "head widths are small")]
        let q = split(a.q.forward(x.clone())) / (head_dim as f64).sqrt();
        let k = split(a.k.forward(x.clone()));
        let v = split(a.v.forward(x));
        let span = 2 * self.window + 1;
        // [heads or 1, span, head_dim] → [1, heads or 1, span, head_dim]
        let rel_k = a
            .rel_k
            .clone()
            .unsqueeze::<4>()
            .expand([b, heads, span, head_dim]);
        let rel_v = a
            .rel_v
            .clone()
            .unsqueeze::<4>()
            .expand([b, heads, span, head_dim]);
        let scores = q.clone().matmul(k.swap_dims(2, 3));
        // q_i · E_k[r] for every r, then picked per (i, j).
        let by_offset = q.matmul(rel_k.swap_dims(2, 3)); // [b, h, t, span]
        let local = by_offset.gather(3, rel.key_index.clone().expand([b, heads, t, t]))
            * rel.key_mask.clone();
        let p = softmax(scores + local, 3);
        let out = p.clone().matmul(v);
        // Σ_j p_ij E_v[j - i + w] = Σ_r p_i,(i + r - w) E_v[r]
        let by_offset = p.gather(3, rel.value_index.clone().expand([b, heads, t, span]))
            * rel.value_mask.clone();
        let out = out + by_offset.matmul(rel_v);
        let out = out.swap_dims(2, 3).reshape([b, d, t]);
        a.o.forward(out)
    }
}

/// Index maps between absolute key positions and window offsets for one length.
#[derive(Debug, Clone)]
struct RelativeIndex {
    /// `[1, 1, t, t]`: the offset `clamp(j - i + w)` of key `j` for query `i`.
    key_index: Tensor<4, Int>,
    /// `[1, 1, t, t]`: 1 where `|j - i| <= w`.
    key_mask: Tensor<4>,
    /// `[1, 1, t, 2w + 1]`: the key `clamp(i + r - w)` at offset `r`.
    value_index: Tensor<4, Int>,
    /// `[1, 1, t, 2w + 1]`: 1 where that key exists.
    value_mask: Tensor<4>,
}

impl RelativeIndex {
    fn new(t: usize, window: usize, device: &Device) -> Self {
        let span = 2 * window + 1;
        let (t_i, w_i) = (t as i64, window as i64);
        let mut key_index = Vec::with_capacity(t * t);
        let mut key_mask = Vec::with_capacity(t * t);
        for i in 0..t_i {
            for j in 0..t_i {
                let r = j - i + w_i;
                key_index.push(r.clamp(0, 2 * w_i));
                key_mask.push(if (0..=2 * w_i).contains(&r) {
                    1.0f32
                } else {
                    0.0
                });
            }
        }
        let mut value_index = Vec::with_capacity(t * span);
        let mut value_mask = Vec::with_capacity(t * span);
        for i in 0..t_i {
            for r in 0..=2 * w_i {
                let j = i + r - w_i;
                value_index.push(j.clamp(0, t_i - 1));
                value_mask.push(if (0..t_i).contains(&j) { 1.0f32 } else { 0.0 });
            }
        }
        let int = |v: Vec<i64>, cols: usize| {
            Tensor::<4, Int>::from_data(TensorData::new(v, [1, 1, t, cols]), device)
        };
        let float = |v: Vec<f32>, cols: usize| {
            Tensor::<4>::from_data(TensorData::new(v, [1, 1, t, cols]), device)
        };
        Self {
            key_index: int(key_index, t),
            key_mask: float(key_mask, t),
            value_index: int(value_index, span),
            value_mask: float(value_mask, span),
        }
    }
}
