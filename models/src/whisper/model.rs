//! The Whisper network: the audio encoder (two GELU convolutions, the second with stride 2,
//! sinusoidal positions, pre-LN blocks) and the text decoder (learned positions, causal
//! self-attention over a [`KvCache`], cross-attention over the audio whose keys and values
//! are computed once per window ([`CrossCache`]), output projection tied to the token
//! embedding).
//!
//! [`WhisperModel::encode`] takes several 30-second windows at once (one batch: the requests
//! of a busy server share it); decoding runs per window, a few tokens at a time.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::{attention, conv1d};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};

use super::config::{DecodingConfig, WhisperDims, read_hf_dims};
use super::ct2::Ct2File;
use super::ct2_weights::{Ct2Names, read_dims};
use super::hf_weights::HfNames;
use super::weights::{self, DecoderBlock, WhisperWeights};
use crate::ModelError;
use crate::bert::gelu::gelu_exact;
use crate::causal_mask::causal_mask;
use crate::llama::KvCache;
use crate::read_back::read_back;
use crate::safetensors_folder::SafetensorsFolder;

/// Which layout a model was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhisperFormat {
    /// CTranslate2 (`model.bin`, as faster-whisper uses).
    Ctranslate2,
    /// Hugging Face `WhisperForConditionalGeneration` (`model.safetensors`).
    HuggingFace,
}

/// A loaded Whisper (weights only; the tokenizer is loaded beside it).
#[derive(Debug)]
pub struct WhisperModel {
    dims: WhisperDims,
    decoding: DecodingConfig,
    format: WhisperFormat,
    weights: WhisperWeights,
    device: Device,
}

/// Encoder output for a batch of windows: `[windows, n_audio_ctx, d]`.
#[derive(Debug, Clone)]
pub struct AudioFeatures {
    features: Tensor<3>,
}

impl AudioFeatures {
    /// Number of windows.
    pub fn len(&self) -> usize {
        self.features.dims()[0]
    }

    /// Whether the batch is empty (never, from [`WhisperModel::encode`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The features of every window as f32, `[windows, n_audio_ctx, d]` row-major.
    pub fn to_vec(&self) -> Result<Vec<f32>, ModelError> {
        read_back(self.features.clone(), "encoder output")
    }
}

/// What the decoder reads while word timings are aligned.
#[derive(Debug, Clone)]
pub struct AlignmentPass {
    /// Per asked-for head, the `[tokens, n_audio_ctx]` cross-attention scores, row-major.
    pub scores: Vec<Vec<f32>>,
    /// The logits at every token, `n_vocab` each.
    pub logits: Vec<Vec<f32>>,
}

/// One window's cross-attention keys and values, per decoder layer: `[heads, n_audio_ctx,
/// head_dim]` each.
#[derive(Debug, Clone)]
pub struct CrossCache {
    layers: Vec<(Tensor<3>, Tensor<3>)>,
}

impl WhisperModel {
    /// Loads `dir`: a CTranslate2 folder (`model.bin` and `config.json`) or a Hugging Face
    /// folder (`config.json`, `model.safetensors` in f32, f16 or bf16, optionally
    /// `generation_config.json`).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let start = std::time::Instant::now();
        let ct2 = dir.join("model.bin");
        let model = if ct2.is_file() {
            Self::load_ct2(dir, &ct2, device)?
        } else if dir.join("model.safetensors").is_file()
            || dir.join("model.safetensors.index.json").is_file()
        {
            Self::load_hf(dir, device)?
        } else {
            return Err(ModelError::MissingFile {
                path: missing_weights(dir),
            });
        };
        tracing::info!(path = %dir.display(), format = ?model.format, width = model.dims.n_state,
            encoder_layers = model.dims.n_audio_layer, decoder_layers = model.dims.n_text_layer,
            multilingual = model.dims.is_multilingual(), elapsed_ms = start.elapsed().as_millis(),
            "loaded Whisper model");
        Ok(model)
    }

    fn load_ct2(dir: &Path, model_bin: &Path, device: &Device) -> Result<Self, ModelError> {
        let file = Ct2File::open(model_bin)?;
        let dims = read_dims(&file)?;
        let config = dir.join("config.json");
        let decoding = if config.is_file() {
            DecodingConfig::from_ct2(&config)?
        } else {
            tracing::warn!(path = %config.display(), "no config.json: no suppressed tokens, default alignment heads");
            DecodingConfig::default()
        };
        let weights = weights::build(&file, &Ct2Names, &dims, device)?;
        Ok(Self {
            dims,
            decoding,
            format: WhisperFormat::Ctranslate2,
            weights,
            device: device.clone(),
        })
    }

    fn load_hf(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let dims = read_hf_dims(&dir.join("config.json"))?;
        let decoding = DecodingConfig::from_hf(&dir.join("generation_config.json"))?;
        let folder = SafetensorsFolder::open(dir)?;
        let names = HfNames::detect(&folder);
        let weights = weights::build(&folder, &names, &dims, device)?;
        Ok(Self {
            dims,
            decoding,
            format: WhisperFormat::HuggingFace,
            weights,
            device: device.clone(),
        })
    }

    /// The model's sizes.
    pub fn dims(&self) -> &WhisperDims {
        &self.dims
    }

    /// Suppressed tokens and alignment heads from the model folder.
    pub fn decoding_config(&self) -> &DecodingConfig {
        &self.decoding
    }

    /// The layout it was loaded from.
    pub fn format(&self) -> WhisperFormat {
        self.format
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the encoder on `windows`, each a log-mel window of `n_mels` rows by
    /// [`WhisperDims::n_frames`] columns, row-major.
    pub fn encode(&self, windows: &[&[f32]]) -> Result<AudioFeatures, ModelError> {
        let dims = &self.dims;
        let (n_mels, frames) = (dims.n_mels, dims.n_frames());
        if windows.is_empty() {
            return Err(ModelError::InvalidInput(
                "no audio windows to encode".into(),
            ));
        }
        if let Some(bad) = windows.iter().position(|w| w.len() != n_mels * frames) {
            return Err(ModelError::InvalidInput(format!(
                "window {bad} has {} values, expected {n_mels} mel bins × {frames} frames",
                windows[bad].len()
            )));
        }
        let batch = windows.len();
        let values: Vec<f32> = windows.iter().flat_map(|w| w.iter().copied()).collect();
        let mel = Tensor::<3>::from_data(
            TensorData::new(values, [batch, n_mels, frames]),
            &self.device,
        );
        let w = &self.weights;
        let x = conv1d(
            mel,
            w.conv1.0.clone(),
            Some(w.conv1.1.clone()),
            ConvOptions::new([1], [1], [1], 1),
        );
        let x = gelu_exact(x)?;
        let x = conv1d(
            x,
            w.conv2.0.clone(),
            Some(w.conv2.1.clone()),
            ConvOptions::new([2], [1], [1], 1),
        );
        let x = gelu_exact(x)?;
        let ctx = dims.n_audio_ctx;
        let d = dims.n_state;
        let x = x.swap_dims(1, 2) + w.encoder_positions.clone().unsqueeze::<3>();
        let mut x = x.reshape([batch * ctx, d]);
        let heads = dims.n_audio_head;
        let head_dim = d / heads;
        for block in &w.encoder_blocks {
            let qkv = block
                .qkv
                .forward(block.attn_norm.forward(x.clone()))
                .reshape([batch, ctx, 3 * heads, head_dim])
                .swap_dims(1, 2);
            let part = |i: usize| qkv.clone().slice(s![.., i * heads..(i + 1) * heads]);
            let context = attention(
                part(0),
                part(1),
                part(2),
                None,
                None,
                AttentionModuleOptions::default(),
            )
            .swap_dims(1, 2)
            .reshape([batch * ctx, d]);
            x = x + block.attn_out.forward(context);
            let up = gelu_exact(block.fc1.forward(block.mlp_norm.forward(x.clone())))?;
            x = x + block.fc2.forward(up);
        }
        let features = w.encoder_norm.forward(x).reshape([batch, ctx, d]);
        Ok(AudioFeatures { features })
    }

    /// The cross-attention keys and values of window `index` of `features`, for every
    /// decoder layer: computed once, read at every decoding step of that window.
    pub fn cross_cache(&self, features: &AudioFeatures, index: usize) -> CrossCache {
        let dims = &self.dims;
        let (ctx, d, heads) = (dims.n_audio_ctx, dims.n_state, dims.n_text_head);
        let window = features
            .features
            .clone()
            .slice(s![index..index + 1])
            .reshape([ctx, d]);
        let layers = self
            .weights
            .decoder_blocks
            .iter()
            .map(|block| {
                let kv = block
                    .cross_kv
                    .forward(window.clone())
                    .reshape([ctx, 2 * heads, d / heads])
                    .swap_dims(0, 1);
                (
                    kv.clone().slice(s![0..heads]),
                    kv.slice(s![heads..2 * heads]),
                )
            })
            .collect();
        CrossCache { layers }
    }

    /// An empty self-attention cache for one sequence (up to `n_text_ctx` positions).
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.dims.n_text_layer, self.dims.n_text_ctx)
    }

    /// Runs `tokens` (the new tokens of one sequence, after what `cache` holds) against the
    /// window of `cross`, appends them to `cache`, and returns the logits of the new tokens
    /// at the positions `rows` (indices into `tokens`), `n_vocab` values each.
    pub fn decode(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        cross: &CrossCache,
        rows: &[usize],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= tokens.len()) {
            return Err(ModelError::InvalidInput(format!(
                "logits of row {bad} asked for, of {} new tokens",
                tokens.len()
            )));
        }
        let (x, _) = self.decoder_forward(tokens, cache, cross, &[])?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(
                rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                [rows.len()],
            ),
            &self.device,
        );
        self.logits(x.select(0, index))
    }

    /// The logits of hidden states `x` (`[rows, d]`): one `n_vocab` vector per row.
    fn logits(&self, x: Tensor<2>) -> Result<Vec<Vec<f32>>, ModelError> {
        let logits = self
            .weights
            .decoder_norm
            .forward(x)
            .matmul(self.weights.lm_head.clone());
        let values = read_back(logits, "logits")?;
        Ok(values
            .chunks_exact(self.dims.n_vocab)
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// The cross-attention scores (`q·k / sqrt(head_dim)`, before the softmax) of `heads`
    /// (`(layer, head)` pairs) while the decoder reads `tokens` from an empty cache, one
    /// `[tokens, n_audio_ctx]` matrix per head, row-major; and the logits of every token.
    /// Word timestamps and word probabilities are read from these.
    pub fn cross_attention_scores(
        &self,
        tokens: &[u32],
        cross: &CrossCache,
        heads: &[(usize, usize)],
    ) -> Result<AlignmentPass, ModelError> {
        let mut cache = self.new_cache();
        let (x, captured) = self.decoder_forward(tokens, &mut cache, cross, heads)?;
        let scores = captured
            .into_iter()
            .map(|t| read_back(t, "cross-attention scores"))
            .collect::<Result<Vec<_>, _>>()?;
        let logits = self.logits(x)?;
        Ok(AlignmentPass { scores, logits })
    }

    /// The decoder's last hidden states of `tokens` (`[tokens, d]`, before the final norm),
    /// and the cross-attention weights of `capture` heads.
    fn decoder_forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        cross: &CrossCache,
        capture: &[(usize, usize)],
    ) -> Result<(Tensor<2>, Vec<Tensor<2>>), ModelError> {
        let dims = &self.dims;
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::InvalidInput("no tokens to decode".into()));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= dims.n_vocab) {
            return Err(ModelError::InvalidInput(format!(
                "token id {bad} is outside the vocabulary ({})",
                dims.n_vocab
            )));
        }
        let start = cache.len();
        if start + n > dims.n_text_ctx {
            return Err(ModelError::InvalidInput(format!(
                "{} positions exceed the decoder's context of {}",
                start + n,
                dims.n_text_ctx
            )));
        }
        if cross.layers.len() != dims.n_text_layer {
            return Err(ModelError::InvalidInput(
                "cross-attention cache of another model".into(),
            ));
        }
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(
                tokens.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(),
                [n],
            ),
            &self.device,
        );
        let w = &self.weights;
        let mut x = w.token_embedding.clone().select(0, ids)
            + w.decoder_positions.clone().slice(s![start..start + n]);
        let mut captured = Vec::new();
        for (layer, block) in w.decoder_blocks.iter().enumerate() {
            x = x.clone() + self.self_attention(block, layer, x, cache, start)?;
            let (context, weights) = self.cross_attention(block, x.clone(), &cross.layers[layer]);
            for &(l, head) in capture
                .iter()
                .filter(|(l, h)| *l == layer && *h < dims.n_text_head)
            {
                let [_, rows, cols] = weights.dims();
                let one = weights
                    .clone()
                    .slice(s![head..head + 1])
                    .reshape([rows, cols]);
                captured.push(((l, head), one));
            }
            x = x + context;
            let up = gelu_exact(block.fc1.forward(block.mlp_norm.forward(x.clone())))?;
            x = x + block.fc2.forward(up);
        }
        cache.advance(n);
        let ordered = capture
            .iter()
            .map(|wanted| {
                captured
                    .iter()
                    .find(|(head, _)| head == wanted)
                    .map(|(_, weights)| weights.clone())
                    .ok_or_else(|| {
                        ModelError::InvalidInput(format!(
                            "alignment head {wanted:?} is outside the decoder ({} layers of {} heads)",
                            dims.n_text_layer, dims.n_text_head
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((x, ordered))
    }

    /// Causal self-attention of the new rows `x` (`[n, d]`) against everything cached.
    fn self_attention(
        &self,
        block: &DecoderBlock,
        layer: usize,
        x: Tensor<2>,
        cache: &mut KvCache,
        cached: usize,
    ) -> Result<Tensor<2>, ModelError> {
        let dims = &self.dims;
        let (heads, d) = (dims.n_text_head, dims.n_state);
        let [n, _] = x.dims();
        let qkv = block
            .self_qkv
            .forward(block.self_norm.forward(x))
            .reshape([n, 3 * heads, d / heads])
            .swap_dims(0, 1);
        let part = |i: usize| qkv.clone().slice(s![i * heads..(i + 1) * heads]);
        let (k, v) = cache.append(layer, part(1), part(2));
        let len = k.dims()[1];
        let mut scores = part(0)
            .matmul(k.swap_dims(1, 2))
            .mul_scalar(scale(d / heads));
        if n > 1 {
            scores = scores + causal_mask(n, len, cached, &self.device);
        }
        let context = softmax(scores, 2).matmul(v).swap_dims(0, 1).reshape([n, d]);
        Ok(block.self_out.forward(context))
    }

    /// Cross-attention of `x` (`[n, d]`) over one window's keys and values; also returns the
    /// scaled scores before the softmax, `[heads, n, n_audio_ctx]` (what word alignment reads).
    fn cross_attention(
        &self,
        block: &DecoderBlock,
        x: Tensor<2>,
        (k, v): &(Tensor<3>, Tensor<3>),
    ) -> (Tensor<2>, Tensor<3>) {
        let dims = &self.dims;
        let (heads, d) = (dims.n_text_head, dims.n_state);
        let [n, _] = x.dims();
        let q = block
            .cross_q
            .forward(block.cross_norm.forward(x))
            .reshape([n, heads, d / heads])
            .swap_dims(0, 1);
        let scores = q
            .matmul(k.clone().swap_dims(1, 2))
            .mul_scalar(scale(d / heads));
        let context = softmax(scores.clone(), 2)
            .matmul(v.clone())
            .swap_dims(0, 1)
            .reshape([n, d]);
        (block.cross_out.forward(context), scores)
    }
}

/// `1 / sqrt(head_dim)` (openai-whisper scales Q and K by its fourth root each).
fn scale(head_dim: usize) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "head widths are small")]
    let width = head_dim as f64;
    1.0 / width.sqrt()
}

/// The file a folder without weights was expected to have, for the error message.
fn missing_weights(dir: &Path) -> PathBuf {
    dir.join("model.bin (CTranslate2) or model.safetensors (Hugging Face)")
}
