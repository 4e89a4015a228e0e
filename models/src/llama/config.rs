//! Llama-style decoder hyper-parameters, read from GGUF metadata (`{arch}.*` keys, `arch` being
//! `general.architecture`: `llama` for Llama 2/3, SmolLM2 and Mistral GGUFs).

use crate::ModelError;
use crate::gguf::GgufFile;

/// The shape of a Llama-style decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Decoder layers (`{arch}.block_count`).
    pub num_layers: usize,
    /// Model width (`{arch}.embedding_length`).
    pub hidden_size: usize,
    /// SwiGLU inner width (`{arch}.feed_forward_length`).
    pub intermediate_size: usize,
    /// Query heads (`{arch}.attention.head_count`).
    pub num_heads: usize,
    /// Key/value heads (`{arch}.attention.head_count_kv`, default: `num_heads`); grouped-query
    /// attention when fewer than `num_heads`.
    pub num_kv_heads: usize,
    /// Width of one head: `hidden_size / num_heads`.
    pub head_dim: usize,
    /// RoPE base θ (`{arch}.rope.freq_base`, default 10000).
    pub rope_theta: f64,
    /// RMSNorm ε (`{arch}.attention.layer_norm_rms_epsilon`).
    pub rms_norm_eps: f64,
    /// Longest sequence the model was trained for (`{arch}.context_length`); the KV cache
    /// refuses to grow past it.
    pub context_length: usize,
    /// Vocabulary size (`{arch}.vocab_size`, else the length of `tokenizer.ggml.tokens`).
    pub vocab_size: usize,
}

impl LlamaConfig {
    /// SmolLM2-135M-Instruct's shape (what its GGUF metadata says).
    pub fn smollm2_135m() -> Self {
        Self {
            num_layers: 30,
            hidden_size: 576,
            intermediate_size: 1536,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            rope_theta: 100_000.0,
            // Stored as f32 in the file.
            rms_norm_eps: f64::from(1e-5f32),
            context_length: 8192,
            vocab_size: 49152,
        }
    }

    /// Reads the configuration from `file`'s metadata, checking it is self-consistent.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let arch = file.get_str("general.architecture")?;
        if !matches!(arch, "llama" | "mistral") {
            return Err(file.metadata_error(
                "general.architecture",
                format!("`{arch}` is not a Llama-style decoder (llama, mistral)"),
            ));
        }
        let key = |name: &str| format!("{arch}.{name}");
        let optional = |name: &str| file.metadata().contains_key(&key(name));
        let num_heads = file.get_usize(&key("attention.head_count"))?;
        let hidden_size = file.get_usize(&key("embedding_length"))?;
        let num_kv_heads = if optional("attention.head_count_kv") {
            file.get_usize(&key("attention.head_count_kv"))?
        } else {
            num_heads
        };
        if num_heads == 0 || hidden_size % num_heads != 0 {
            return Err(file.metadata_error(
                &key("attention.head_count"),
                format!("{num_heads} heads do not divide the width {hidden_size}"),
            ));
        }
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(file.metadata_error(
                &key("attention.head_count_kv"),
                format!("{num_kv_heads} KV heads do not divide {num_heads} query heads"),
            ));
        }
        let head_dim = hidden_size / num_heads;
        if head_dim % 2 != 0 {
            return Err(file.metadata_error(
                &key("embedding_length"),
                format!("head width {head_dim} is odd: RoPE needs pairs"),
            ));
        }
        let vocab_size = if optional("vocab_size") {
            file.get_usize(&key("vocab_size"))?
        } else {
            file.get_str_array("tokenizer.ggml.tokens")?.len()
        };
        Ok(Self {
            num_layers: file.get_usize(&key("block_count"))?,
            hidden_size,
            intermediate_size: file.get_usize(&key("feed_forward_length"))?,
            num_heads,
            num_kv_heads,
            head_dim,
            rope_theta: if optional("rope.freq_base") {
                file.get_f64(&key("rope.freq_base"))?
            } else {
                10_000.0
            },
            rms_norm_eps: file.get_f64(&key("attention.layer_norm_rms_epsilon"))?,
            context_length: file.get_usize(&key("context_length"))?,
            vocab_size,
        })
    }
}
