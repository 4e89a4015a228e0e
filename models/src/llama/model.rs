//! The Llama-style decoder: RMSNorm, rotate-half RoPE with the model's θ, grouped-query
//! attention over a per-sequence [`KvCache`], SwiGLU, and the LM head.
//!
//! [`LlamaModel::forward_batch`] runs several sequences in one pass, each with its own new
//! tokens and its own cache position (a prefill and a few one-token decode steps can share a
//! step, as continuous batching wants): the new tokens of all sequences are stacked into one
//! `[tokens, hidden]` matrix so every projection and the SwiGLU block are one matmul; only the
//! attention itself runs per sequence, against that sequence's cache.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};

use super::cache::KvCache;
use super::config::{LlamaConfig, RopeScaling, read_hf_config};
use super::gguf_weights::MatrixLayout;
use super::host::HostDecoder;
use super::weights::LlamaWeights;
use super::{gguf_weights, hf_weights};
use crate::ModelError;
use crate::causal_mask::causal_mask;
use crate::gguf::GgufFile;
use crate::safetensors_folder::SafetensorsFolder;

/// A Llama-style decoder (weights only; the tokenizer is loaded beside it).
#[derive(Debug)]
pub struct LlamaModel {
    config: LlamaConfig,
    weights: LlamaWeights,
    /// `cos` and `sin` of every position and frequency, `[context, head_dim / 2]` each.
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
    /// The CPU pass in plain buffers, when every matrix is quantised (`host.rs`).
    host: Option<HostDecoder>,
    device: Device,
}

impl LlamaModel {
    /// Loads `path`: a `.gguf` file, or a Hugging Face checkpoint folder (`config.json` and
    /// `*.safetensors`).
    pub fn load(path: &Path, device: &Device) -> Result<Self, ModelError> {
        if path.is_dir() {
            Self::load_hf(path, device)
        } else {
            Self::load_gguf(path, device)
        }
    }

    /// Loads `path` (a GGUF file whose `general.architecture` is `llama`, `mistral`, `qwen2` or
    /// `qwen3`) onto `device`, dequantising every weight to f32.
    pub fn load_gguf(path: &Path, device: &Device) -> Result<Self, ModelError> {
        Self::from_gguf(&GgufFile::open(path)?, device)
    }

    /// Builds the model from an already parsed GGUF file (so a caller that also needs the
    /// file's tokenizer reads it once).
    pub fn from_gguf(file: &GgufFile, device: &Device) -> Result<Self, ModelError> {
        Self::from_gguf_layout(file, device, MatrixLayout::Tensors)
    }

    /// [`Self::from_gguf`], with `keep_quantised`: on the CPU the matrices stay in the file's
    /// types (quantised blocks, f16, bf16) and run on [`crate::quant`]'s kernels, which
    /// quantise the activations to 8 bits per 32 values as llama.cpp does (ignored on other
    /// devices). Its logits follow llama.cpp's on the same file rather than the f32 reference:
    /// on SmolLM2-135M Q4_1 both pick the same greedy tokens, which differ from the f32 path's
    /// for some prompts (`BENCHMARKS.md`).
    pub fn from_gguf_with(
        file: &GgufFile,
        device: &Device,
        keep_quantised: bool,
    ) -> Result<Self, ModelError> {
        let layout = if keep_quantised {
            MatrixLayout::FileTypes
        } else {
            MatrixLayout::Tensors
        };
        Self::from_gguf_layout(file, device, layout)
    }

    /// On the CPU, every matrix dequantised to f32 rows and run on the CPU pass in plain
    /// buffers (`host.rs`) with f32 activations: the same arithmetic as [`Self::from_gguf`]'s
    /// tensor path in another summation order, so the tests can hold the host pass to it
    /// tightly (with 8-bit activations a last-bit difference can flip a rounding).
    pub fn from_gguf_f32_rows(file: &GgufFile, device: &Device) -> Result<Self, ModelError> {
        Self::from_gguf_layout(file, device, MatrixLayout::F32Rows)
    }

    fn from_gguf_layout(
        file: &GgufFile,
        device: &Device,
        layout: MatrixLayout,
    ) -> Result<Self, ModelError> {
        let start = std::time::Instant::now();
        let mut config = LlamaConfig::from_gguf(file)?;
        if file.tensor_info("rope_freqs.weight").is_some() {
            let divisors =
                gguf_weights::vector_values(file, "rope_freqs.weight", config.head_dim / 2)?;
            config.rope_scaling =
                RopeScaling::Divisors(divisors.into_iter().map(f64::from).collect());
        }
        let weights = gguf_weights::load_weights(file, &config, device, layout)?;
        tracing::info!(path = %file.path().display(),
            arch = file.get_str("general.architecture").unwrap_or_default(),
            layers = config.num_layers, hidden = config.hidden_size,
            elapsed_ms = start.elapsed().as_millis(), "loaded GGUF decoder");
        Ok(Self::new(config, weights, device))
    }

    /// Loads a Hugging Face checkpoint folder: `config.json` (`model_type` llama, mistral,
    /// qwen2 or qwen3) and `model.safetensors` or the shards of
    /// `model.safetensors.index.json`, in f32, f16 or bf16 (widened to f32 tensors).
    pub fn load_hf(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        Self::load_hf_with(dir, device, false)
    }

    /// [`Self::load_hf`], with `keep_file_types`: on the CPU a checkpoint of f16 or bf16
    /// matrices keeps them as the file stores them (half the memory of f32) and runs on
    /// [`crate::quant`]'s float kernels, with f32 activations and f32 accumulation (ignored on
    /// other devices and for f32 checkpoints).
    pub fn load_hf_with(
        dir: &Path,
        device: &Device,
        keep_file_types: bool,
    ) -> Result<Self, ModelError> {
        let start = std::time::Instant::now();
        let hf = read_hf_config(&dir.join("config.json"))?;
        let folder = SafetensorsFolder::open(dir)?;
        let weights = hf_weights::load_weights(
            &folder,
            &hf.config,
            hf.tie_word_embeddings,
            device,
            keep_file_types,
        )?;
        tracing::info!(path = %dir.display(), model_type = %hf.model_type,
            layers = hf.config.num_layers, hidden = hf.config.hidden_size,
            megabytes = folder.size_bytes() / 1_000_000,
            elapsed_ms = start.elapsed().as_millis(), "loaded safetensors checkpoint");
        Ok(Self::new(hf.config, weights, device))
    }

    fn new(config: LlamaConfig, weights: LlamaWeights, device: &Device) -> Self {
        let (rope_cos, rope_sin) = rope_tables(&config);
        let host = HostDecoder::new(&weights);
        Self {
            config,
            weights,
            rope_cos,
            rope_sin,
            host,
            device: device.clone(),
        }
    }

    /// Whether steps run the CPU pass in plain buffers (every matrix quantised, `host.rs`)
    /// rather than burn tensor operations.
    pub fn uses_host_path(&self) -> bool {
        self.host.is_some()
    }

    /// Runs the quantised matrices through burn tensor operations instead of the host pass
    /// from now on: slower, for checking the two against each other.
    pub fn use_tensor_path(&mut self) {
        self.host = None;
    }

    /// The model's shape.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_layers, self.config.context_length)
    }

    /// Runs `tokens` (the new tokens of one sequence, after what `cache` holds), appends them
    /// to `cache` and returns the logits of the last one (`vocab_size` values).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        let mut logits = self.forward_batch(&mut [(tokens, cache)])?;
        Ok(logits.swap_remove(0))
    }

    /// [`Self::forward`] for several sequences in one pass; one logits vector per sequence, in
    /// order. Inputs are checked before anything runs, so an error leaves every cache as it was.
    pub fn forward_batch(
        &self,
        batch: &mut [(&[u32], &mut KvCache)],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        self.check(batch)?;
        if let Some(host) = &self.host {
            let rope = (self.rope_cos.as_slice(), self.rope_sin.as_slice());
            return Ok(host.forward_batch(&self.config, &self.weights, rope, batch));
        }
        let c = &self.config;
        let total: usize = batch.iter().map(|(t, _)| t.len()).sum();
        let ids: Vec<u32> = batch.iter().flat_map(|(t, _)| t.iter().copied()).collect();
        let mut x = self.weights.embedding.lookup(&ids, &self.device);
        let (cos, sin) = self.rope_for(batch, total);
        let (q_width, kv_width) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);

        for (index, layer) in self.weights.layers.iter().enumerate() {
            let h = self.rms_norm(x.clone(), &layer.attn_norm);
            let mut qkv = layer.qkv.forward(h);
            if let Some(bias) = &layer.qkv_bias {
                qkv = qkv + bias.clone().unsqueeze::<2>();
            }
            let heads = |from: usize, width: usize, n: usize| {
                qkv.clone()
                    .slice(s![.., from..from + width])
                    .reshape([total, n, c.head_dim])
            };
            let (mut q, mut k) = (
                heads(0, q_width, c.num_heads),
                heads(q_width, kv_width, c.num_kv_heads),
            );
            if let Some((q_norm, k_norm)) = &layer.qk_norm {
                q = self.rms_norm(q, q_norm);
                k = self.rms_norm(k, k_norm);
            }
            let q = rope(q, &cos, &sin);
            let k = rope(k, &cos, &sin);
            let v = heads(q_width + kv_width, kv_width, c.num_kv_heads);
            let mut contexts = Vec::with_capacity(batch.len());
            let mut row = 0;
            for (tokens, cache) in batch.iter_mut() {
                let rows = row..row + tokens.len();
                row += tokens.len();
                let [q, k, v] =
                    [&q, &k, &v].map(|t| t.clone().slice(s![rows.clone()]).swap_dims(0, 1));
                let (k, v) = cache.append(index, k, v);
                contexts.push(self.attention(q, k, v, cache.len()));
            }
            let context = if contexts.len() == 1 {
                contexts.remove(0)
            } else {
                Tensor::cat(contexts, 0)
            };
            x = x + layer.attn_output.forward(context);

            let h = self.rms_norm(x.clone(), &layer.ffn_norm);
            let gate_up = layer.gate_up.forward(h);
            let ffn = c.intermediate_size;
            let gate = gate_up.clone().slice(s![.., 0..ffn]);
            let up = gate_up.slice(s![.., ffn..2 * ffn]);
            x = x + layer.down.forward(silu(gate) * up);
        }

        let mut last_rows = Vec::with_capacity(batch.len());
        let mut end = 0;
        for (tokens, cache) in batch.iter_mut() {
            end += tokens.len();
            last_rows.push(x.clone().slice(s![end - 1..end]));
            cache.advance(tokens.len());
        }
        let last = if last_rows.len() == 1 {
            last_rows.remove(0)
        } else {
            Tensor::cat(last_rows, 0)
        };
        let logits = self
            .weights
            .lm_head
            .forward(self.rms_norm(last, &self.weights.output_norm));
        let backend = |e: String| ModelError::Backend(format!("reading logits: {e}"));
        let values: Vec<f32> = logits
            .try_into_data()
            .map_err(|e| backend(format!("{e:?}")))?
            .try_into_vec_as()
            .map_err(|e| backend(format!("{e:?}")))?;
        Ok(values
            .chunks_exact(c.vocab_size)
            .map(<[f32]>::to_vec)
            .collect())
    }

    fn check(&self, batch: &[(&[u32], &mut KvCache)]) -> Result<(), ModelError> {
        if batch.is_empty() {
            return Err(ModelError::InvalidInput("empty batch".into()));
        }
        for (index, (tokens, cache)) in batch.iter().enumerate() {
            if tokens.is_empty() {
                return Err(ModelError::InvalidInput(format!(
                    "sequence {index} has no new tokens"
                )));
            }
            if let Some(&bad) = tokens
                .iter()
                .find(|&&id| id as usize >= self.config.vocab_size)
            {
                return Err(ModelError::InvalidInput(format!(
                    "sequence {index}: token id {bad} is outside the vocabulary ({})",
                    self.config.vocab_size
                )));
            }
            let needed = cache.len() + tokens.len();
            if needed > self.config.context_length || needed > cache.capacity() {
                return Err(ModelError::InvalidInput(format!(
                    "sequence {index}: {needed} positions exceed the context length {}",
                    self.config.context_length.min(cache.capacity())
                )));
            }
        }
        Ok(())
    }

    /// `x / rms(x) · weight` over the last dimension.
    fn rms_norm<const D: usize>(&self, x: Tensor<D>, weight: &Tensor<1>) -> Tensor<D> {
        let mean_square = x.clone().powi_scalar(2).mean_dim(D - 1);
        let inverse = mean_square
            .add_scalar(self.config.rms_norm_eps)
            .sqrt()
            .recip();
        x * inverse * weight.clone().unsqueeze::<D>()
    }

    /// `cos` and `sin` for every new token's position, `[tokens, 1, head_dim]` each
    /// (frequencies repeated for both halves, as rotate-half wants).
    fn rope_for(&self, batch: &[(&[u32], &mut KvCache)], total: usize) -> (Tensor<3>, Tensor<3>) {
        let half = self.config.head_dim / 2;
        let mut cos = Vec::with_capacity(total * 2 * half);
        let mut sin = Vec::with_capacity(total * 2 * half);
        for (tokens, cache) in batch {
            for position in cache.len()..cache.len() + tokens.len() {
                let row = position * half..(position + 1) * half;
                for _ in 0..2 {
                    cos.extend_from_slice(&self.rope_cos[row.clone()]);
                    sin.extend_from_slice(&self.rope_sin[row.clone()]);
                }
            }
        }
        let shape = [total, 1, 2 * half];
        (
            Tensor::from_data(TensorData::new(cos, shape), &self.device),
            Tensor::from_data(TensorData::new(sin, shape), &self.device),
        )
    }

    /// Causal grouped-query attention of one sequence: `q` `[heads, new, d]` against the whole
    /// cache `k`, `v` `[kv_heads, len, d]`; returns `[new, heads·d]`. The query heads that
    /// share a key head are stacked as extra query rows (`[kv_heads, group·new, d]`), so the
    /// cache is read where it lies instead of being repeated per query head.
    fn attention(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, cached: usize) -> Tensor<2> {
        let c = &self.config;
        let [heads, new, d] = q.dims();
        let len = k.dims()[1];
        let group = c.num_heads / c.num_kv_heads;
        let q = q.reshape([c.num_kv_heads, group * new, d]);
        #[allow(clippy::cast_precision_loss, reason = "head widths are small")]
        let scale = 1.0 / (d as f64).sqrt();
        let mut scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(scale);
        if new > 1 {
            let mask = causal_mask(new, len, cached, &self.device);
            let mask = if group == 1 {
                mask
            } else {
                mask.repeat_dim(0, group).reshape([1, group * new, len])
            };
            scores = scores + mask;
        }
        softmax(scores, 2)
            .matmul(v)
            .reshape([heads, new, d])
            .swap_dims(0, 1)
            .reshape([new, heads * d])
    }
}

/// Rotate-half RoPE on `[tokens, heads, d]`: `x·cos + rotate_half(x)·sin`.
fn rope(x: Tensor<3>, cos: &Tensor<3>, sin: &Tensor<3>) -> Tensor<3> {
    let d = x.dims()[2];
    let first = x.clone().slice(s![.., .., 0..d / 2]);
    let second = x.clone().slice(s![.., .., d / 2..d]);
    let rotated = Tensor::cat(vec![second.neg(), first], 2);
    x * cos.clone() + rotated * sin.clone()
}

/// `cos(p·f_i)` and `sin(…)` for every position `p` and `i < d/2`, `f_i = θ^(−2i/d)` after the
/// model's RoPE scaling, computed in f64.
fn rope_tables(config: &LlamaConfig) -> (Vec<f32>, Vec<f32>) {
    let half = config.head_dim / 2;
    let mut cos = Vec::with_capacity(config.context_length * half);
    let mut sin = Vec::with_capacity(config.context_length * half);
    #[allow(
        clippy::cast_precision_loss,
        reason = "positions and widths are far below 2^52"
    )]
    for position in 0..config.context_length {
        for i in 0..half {
            let inv_freq = config.rope_scaling.apply(
                i,
                config
                    .rope_theta
                    .powf(-2.0 * i as f64 / config.head_dim as f64),
            );
            let angle = position as f64 * inv_freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}
