//! Llama-style decoder hyper-parameters, read from GGUF metadata (`{arch}.*` keys, `arch` being
//! `general.architecture`: `llama` for Llama 2/3, SmolLM2 and Mistral GGUFs, `mistral`, and
//! `qwen2`/`qwen3` for dense Qwen2, 2.5 and 3) or from a Hugging Face `config.json`
//! (`model_type` `llama`, `mistral`, `qwen2` or `qwen3`).

use std::path::Path;

use serde::Deserialize;

use crate::ModelError;
use crate::gguf::GgufFile;

/// How RoPE frequencies are stretched for contexts longer than the model was trained on.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RopeScaling {
    /// Plain RoPE.
    #[default]
    None,
    /// Every frequency divided by `factor` (`rope_type = "linear"`).
    Linear { factor: f64 },
    /// Llama 3.1's piecewise scaling (`rope_type = "llama3"`): long wavelengths divided by
    /// `factor`, short ones kept, a smooth blend between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// One divisor per frequency, as llama.cpp stores them (`rope_freqs.weight`).
    Divisors(Vec<f64>),
}

impl RopeScaling {
    /// The inverse frequency of pair `i` after scaling; `inv_freq` is `θ^(−2i/d)`.
    pub fn apply(&self, i: usize, inv_freq: f64) -> f64 {
        match self {
            Self::None => inv_freq,
            Self::Linear { factor } => inv_freq / factor,
            Self::Divisors(divisors) => inv_freq / divisors.get(i).copied().unwrap_or(1.0),
            Self::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: original,
            } => {
                let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
                if wavelen < original / high_freq_factor {
                    inv_freq
                } else if wavelen > original / low_freq_factor {
                    inv_freq / factor
                } else {
                    let smooth = (original / wavelen - low_freq_factor)
                        / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
                }
            }
        }
    }
}

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
    /// Width of one head: `hidden_size / num_heads` unless the model says otherwise (Qwen3's
    /// `head_dim`).
    pub head_dim: usize,
    /// RoPE base θ (`{arch}.rope.freq_base`, default 10000).
    pub rope_theta: f64,
    /// RoPE frequency scaling (Llama 3.1+).
    pub rope_scaling: RopeScaling,
    /// Biases on the Q, K and V projections (Qwen2, or `attention_bias = true`).
    pub attention_bias: bool,
    /// RMSNorm on each query and key head before RoPE (Qwen3).
    pub qk_norm: bool,
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
            rope_scaling: RopeScaling::None,
            attention_bias: false,
            qk_norm: false,
            // Stored as f32 in the file.
            rms_norm_eps: f64::from(1e-5f32),
            context_length: 8192,
            vocab_size: 49152,
        }
    }

    /// Reads the configuration from `file`'s metadata, checking it is self-consistent.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let arch = gguf_architecture(file)?;
        let key = |name: &str| format!("{arch}.{name}");
        let optional = |name: &str| file.metadata().contains_key(&key(name));
        let num_heads = file.get_usize(&key("attention.head_count"))?;
        let hidden_size = file.get_usize(&key("embedding_length"))?;
        let num_kv_heads = if optional("attention.head_count_kv") {
            file.get_usize(&key("attention.head_count_kv"))?
        } else {
            num_heads
        };
        if num_heads == 0 {
            return Err(file.metadata_error(&key("attention.head_count"), "0 heads".into()));
        }
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(file.metadata_error(
                &key("attention.head_count_kv"),
                format!("{num_kv_heads} KV heads do not divide {num_heads} query heads"),
            ));
        }
        // Qwen3 states its head width (128 for every size, not hidden / heads); the others
        // imply it.
        let head_dim = if optional("attention.key_length") {
            let width = file.get_usize(&key("attention.key_length"))?;
            if optional("attention.value_length")
                && file.get_usize(&key("attention.value_length"))? != width
            {
                return Err(file.metadata_error(
                    &key("attention.value_length"),
                    format!("differs from the key width {width} (one head width is supported)"),
                ));
            }
            width
        } else if hidden_size % num_heads == 0 {
            hidden_size / num_heads
        } else {
            return Err(file.metadata_error(
                &key("attention.head_count"),
                format!("{num_heads} heads do not divide the width {hidden_size}"),
            ));
        };
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
            rope_scaling: RopeScaling::None,
            // Qwen2 always has them; a Llama-architecture file may (llama.cpp loads them when
            // present), so the first layer's tensors decide.
            attention_bias: arch == GgufArch::Qwen2
                || file.tensor_info("blk.0.attn_q.bias").is_some(),
            qk_norm: arch == GgufArch::Qwen3,
            rms_norm_eps: file.get_f64(&key("attention.layer_norm_rms_epsilon"))?,
            context_length: file.get_usize(&key("context_length"))?,
            vocab_size,
        })
    }
}

/// The `general.architecture` values read as a Llama-style decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GgufArch {
    /// `llama` (Llama 2/3, SmolLM2, most fine-tunes).
    Llama,
    /// `mistral` (converted like `llama`).
    Mistral,
    /// `qwen2`: Qwen2 and Qwen2.5 (Q/K/V biases).
    Qwen2,
    /// `qwen3`: per-head q/k RMSNorm, an explicit head width.
    Qwen3,
}

impl GgufArch {
    /// Whether llama.cpp's converter permuted the Q and K rows for its interleaved RoPE.
    /// It does so for the architectures it runs with "normal" RoPE (`llama`, `mistral`);
    /// Qwen runs with NeoX RoPE, which is Hugging Face's rotate-half, so its rows are as
    /// trained.
    pub fn permutes_qk(self) -> bool {
        matches!(self, Self::Llama | Self::Mistral)
    }
}

impl std::fmt::Display for GgufArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        })
    }
}

/// `general.architecture` of `file`, refused unless it is a dense Llama-style decoder.
pub(crate) fn gguf_architecture(file: &GgufFile) -> Result<GgufArch, ModelError> {
    let arch = file.get_str("general.architecture")?;
    Ok(match arch {
        "llama" => GgufArch::Llama,
        "mistral" => GgufArch::Mistral,
        "qwen2" => GgufArch::Qwen2,
        "qwen3" => GgufArch::Qwen3,
        "qwen2moe" | "qwen3moe" => {
            return Err(file.metadata_error(
                "general.architecture",
                format!(
                    "`{arch}` is a mixture-of-experts model, which is not supported \
                     (dense qwen2 and qwen3 are)"
                ),
            ));
        }
        other => {
            return Err(file.metadata_error(
                "general.architecture",
                format!("`{other}` is not a Llama-style decoder (llama, mistral, qwen2, qwen3)"),
            ));
        }
    })
}

/// The fields of a Hugging Face `config.json` a Llama-style decoder needs.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: String,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    /// transformers 5 moves θ and the scaling here.
    rope_parameters: Option<serde_json::Value>,
    rms_norm_eps: f64,
    max_position_embeddings: usize,
    vocab_size: usize,
    #[serde(default)]
    attention_bias: bool,
    hidden_act: Option<String>,
    #[serde(default)]
    tie_word_embeddings: bool,
}

/// A Hugging Face checkpoint's configuration: the decoder's shape plus what the loader needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HfModelConfig {
    pub config: LlamaConfig,
    pub model_type: String,
    pub tie_word_embeddings: bool,
}

impl LlamaConfig {
    /// Reads `config.json` of a Hugging Face checkpoint (`model_type` llama, mistral, qwen2 or
    /// qwen3).
    pub fn from_hf_config(path: &Path) -> Result<Self, ModelError> {
        Ok(read_hf_config(path)?.config)
    }
}

pub(crate) fn read_hf_config(path: &Path) -> Result<HfModelConfig, ModelError> {
    let raw: HfConfig = crate::json::read_json(path)?;
    let error = |field: &str, reason: String| ModelError::Config {
        path: path.to_path_buf(),
        field: field.to_string(),
        reason,
    };
    if !matches!(
        raw.model_type.as_str(),
        "llama" | "mistral" | "qwen2" | "qwen3"
    ) {
        return Err(error(
            "model_type",
            format!(
                "`{}` is not a supported decoder (llama, mistral, qwen2, qwen3)",
                raw.model_type
            ),
        ));
    }
    if let Some(act) = raw.hidden_act.as_deref().filter(|a| *a != "silu") {
        return Err(error(
            "hidden_act",
            format!("`{act}` is not supported (silu)"),
        ));
    }
    let heads = raw.num_attention_heads;
    let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(error(
            "num_key_value_heads",
            format!("{kv_heads} KV heads do not divide {heads} query heads"),
        ));
    }
    let head_dim = match raw.head_dim {
        Some(d) => d,
        None if raw.hidden_size.is_multiple_of(heads) => raw.hidden_size / heads,
        None => {
            return Err(error(
                "num_attention_heads",
                format!("{heads} heads do not divide the width {}", raw.hidden_size),
            ));
        }
    };
    if head_dim % 2 != 0 {
        return Err(error(
            "head_dim",
            format!("{head_dim} is odd: RoPE needs pairs"),
        ));
    }
    let parameters = raw.rope_parameters.as_ref();
    let rope_theta = raw
        .rope_theta
        .or_else(|| {
            parameters
                .and_then(|p| p.get("rope_theta"))
                .and_then(serde_json::Value::as_f64)
        })
        .unwrap_or(10_000.0);
    let scaling = raw.rope_scaling.as_ref().or(parameters);
    let rope_scaling =
        rope_scaling_from(scaling).map_err(|reason| error("rope_scaling", reason))?;
    Ok(HfModelConfig {
        config: LlamaConfig {
            num_layers: raw.num_hidden_layers,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            rope_theta,
            rope_scaling,
            attention_bias: raw.attention_bias || raw.model_type == "qwen2",
            qk_norm: raw.model_type == "qwen3",
            rms_norm_eps: raw.rms_norm_eps,
            context_length: raw.max_position_embeddings,
            vocab_size: raw.vocab_size,
        },
        model_type: raw.model_type,
        tie_word_embeddings: raw.tie_word_embeddings,
    })
}

/// `rope_scaling` (or transformers 5's `rope_parameters`): null, `default`, `linear` or `llama3`.
fn rope_scaling_from(value: Option<&serde_json::Value>) -> Result<RopeScaling, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::None);
    };
    let kind = value
        .get("rope_type")
        .or_else(|| value.get("type"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("default");
    let number = |key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| format!("`{kind}` scaling needs a number `{key}`"))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: number("factor")?,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: number("factor")?,
            low_freq_factor: number("low_freq_factor")?,
            high_freq_factor: number("high_freq_factor")?,
            original_max_position_embeddings: number("original_max_position_embeddings")?,
        }),
        other => Err(format!(
            "rope type `{other}` is not supported (default, linear, llama3)"
        )),
    }
}
