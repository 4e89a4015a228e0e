//! Weights from a Hugging Face checkpoint (`*.safetensors`, PyTorch names) into the inference
//! layout. Per layer `model.layers.{i}.`:
//!
//! | checkpoint | kept as |
//! |------------|---------|
//! | `self_attn.{q,k,v}_proj.weight` | fused into `qkv` (already in rotate-half order) |
//! | `self_attn.{q,k,v}_proj.bias` (Qwen2) | fused into `qkv_bias` |
//! | `self_attn.{q,k}_norm.weight` (Qwen3) | `qk_norm` |
//! | `self_attn.o_proj.weight` | `attn_output`, transposed |
//! | `input_layernorm.weight`, `post_attention_layernorm.weight` | `attn_norm`, `ffn_norm` |
//! | `mlp.{gate,up}_proj.weight` | fused into `gate_up` |
//! | `mlp.down_proj.weight` | `down`, transposed |
//!
//! plus `model.embed_tokens.weight`, `model.norm.weight` and `lm_head.weight` (ignored when
//! `tie_word_embeddings` is true, required otherwise).
//!
//! A 16-bit checkpoint (f16 or bf16 projections) loaded for the CPU's file-type path keeps
//! every matrix in the file's own bytes, in checkpoint order (`[out, in]`, the order the
//! kernels of [`crate::quant`] read), fused by [`QuantLinear`] rather than copied: half the
//! memory of the f32 layout, and the host pass (`host.rs`) runs it. An f32 checkpoint stays on
//! burn's tensors: the layout would save no memory, and burn's f32 GEMM prefills faster than
//! row-by-row dot products.

use burn::prelude::*;

use super::config::LlamaConfig;
use super::weights::{
    Embedding, Linear, LlamaLayer, LlamaWeights, Matrix, fused_transposed, log_progress, vector,
};
use crate::ModelError;
use crate::float_bytes::StoredFloat;
use crate::gguf::GgmlType;
use crate::quant::{QuantLinear, QuantMatrix};
use crate::safetensors_folder::SafetensorsFolder;

/// A matrix as the file stores it, sharing the file's bytes.
fn stored_matrix(
    folder: &SafetensorsFolder,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<QuantMatrix, ModelError> {
    let stored = folder.stored(name, &[rows, cols])?;
    let ty = match stored.kind {
        StoredFloat::F32 => GgmlType::F32,
        StoredFloat::F16 => GgmlType::F16,
        StoredFloat::Bf16 => GgmlType::BF16,
    };
    QuantMatrix::shared(ty, rows, cols, stored.file, stored.range).map_err(|e| {
        ModelError::Weights {
            path: folder.first_path(),
            reason: format!("{name}: {e}"),
        }
    })
}

/// Matrices that share `in`, side by side as one layer.
fn fused(parts: Vec<QuantMatrix>, folder: &SafetensorsFolder) -> Result<Linear, ModelError> {
    QuantLinear::new(parts)
        .map(Linear::Quant)
        .map_err(|e| ModelError::Weights {
            path: folder.first_path(),
            reason: e.to_string(),
        })
}

/// Whether the checkpoint's projections are 16-bit floats (judged by the first layer's Q).
fn is_16_bit(folder: &SafetensorsFolder, config: &LlamaConfig) -> bool {
    let q_rows = config.num_heads * config.head_dim;
    folder
        .stored(
            "model.layers.0.self_attn.q_proj.weight",
            &[q_rows, config.hidden_size],
        )
        .is_ok_and(|t| matches!(t.kind, StoredFloat::F16 | StoredFloat::Bf16))
}

fn matrix(
    folder: &SafetensorsFolder,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<Matrix, ModelError> {
    Ok(Matrix {
        values: folder.tensor(name, &[rows, cols])?,
        rows,
        cols,
    })
}

/// Loads every weight of `config`'s decoder from `folder` onto `device`; with
/// `keep_file_types`, a 16-bit checkpoint on the CPU keeps its matrices as stored.
pub(crate) fn load_weights(
    folder: &SafetensorsFolder,
    config: &LlamaConfig,
    tie_word_embeddings: bool,
    device: &Device,
    keep_file_types: bool,
) -> Result<LlamaWeights, ModelError> {
    if keep_file_types && *device == crate::cpu_device() && is_16_bit(folder, config) {
        return load_stored(folder, config, tie_word_embeddings, device);
    }
    let hidden = config.hidden_size;
    let ffn = config.intermediate_size;
    let q_rows = config.num_heads * config.head_dim;
    let kv_rows = config.num_kv_heads * config.head_dim;
    let values = |name: &str, len: usize| folder.tensor(name, &[len]);
    let layers = (0..config.num_layers)
        .map(|i| {
            let name = |part: &str| format!("model.layers.{i}.{part}");
            let attn = |p: &str, rows: usize| {
                matrix(
                    folder,
                    &name(&format!("self_attn.{p}_proj.weight")),
                    rows,
                    hidden,
                )
            };
            let qkv = [attn("q", q_rows)?, attn("k", kv_rows)?, attn("v", kv_rows)?];
            let qkv_bias = if config.attention_bias {
                let bias =
                    |p: &str, rows: usize| values(&name(&format!("self_attn.{p}_proj.bias")), rows);
                let mut fused = bias("q", q_rows)?;
                fused.extend(bias("k", kv_rows)?);
                fused.extend(bias("v", kv_rows)?);
                Some(vector(fused, device))
            } else {
                None
            };
            let qk_norm = if config.qk_norm {
                let norm = |p: &str| {
                    values(
                        &name(&format!("self_attn.{p}_norm.weight")),
                        config.head_dim,
                    )
                    .map(|v| vector(v, device))
                };
                Some((norm("q")?, norm("k")?))
            } else {
                None
            };
            let o = matrix(folder, &name("self_attn.o_proj.weight"), hidden, q_rows)?;
            let gate = matrix(folder, &name("mlp.gate_proj.weight"), ffn, hidden)?;
            let up = matrix(folder, &name("mlp.up_proj.weight"), ffn, hidden)?;
            let down = matrix(folder, &name("mlp.down_proj.weight"), hidden, ffn)?;
            log_progress(i + 1, config.num_layers);
            Ok(LlamaLayer {
                attn_norm: vector(values(&name("input_layernorm.weight"), hidden)?, device),
                qkv: Linear::Dense(fused_transposed(&qkv, device)),
                qkv_bias,
                qk_norm,
                attn_output: Linear::Dense(fused_transposed(&[o], device)),
                ffn_norm: vector(
                    values(&name("post_attention_layernorm.weight"), hidden)?,
                    device,
                ),
                gate_up: Linear::Dense(fused_transposed(&[gate, up], device)),
                down: Linear::Dense(fused_transposed(&[down], device)),
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let embedding = matrix(
        folder,
        "model.embed_tokens.weight",
        config.vocab_size,
        hidden,
    )?;
    let lm_head = if tie_word_embeddings {
        tracing::debug!("LM head tied to model.embed_tokens.weight");
        fused_transposed(std::slice::from_ref(&embedding), device)
    } else {
        fused_transposed(
            &[matrix(folder, "lm_head.weight", config.vocab_size, hidden)?],
            device,
        )
    };
    Ok(LlamaWeights {
        embedding: Embedding::Dense(embedding.into_tensor(device)),
        layers,
        output_norm: vector(values("model.norm.weight", hidden)?, device),
        lm_head: Linear::Dense(lm_head),
    })
}

/// [`load_weights`] for the file-type path: every matrix as stored, the vectors in f32.
fn load_stored(
    folder: &SafetensorsFolder,
    config: &LlamaConfig,
    tie_word_embeddings: bool,
    device: &Device,
) -> Result<LlamaWeights, ModelError> {
    let hidden = config.hidden_size;
    let ffn = config.intermediate_size;
    let q_rows = config.num_heads * config.head_dim;
    let kv_rows = config.num_kv_heads * config.head_dim;
    let values = |name: &str, len: usize| folder.tensor(name, &[len]);
    let layers = (0..config.num_layers)
        .map(|i| {
            let name = |part: &str| format!("model.layers.{i}.{part}");
            let matrix = |part: &str, rows: usize, cols: usize| {
                stored_matrix(folder, &name(part), rows, cols)
            };
            let qkv = vec![
                matrix("self_attn.q_proj.weight", q_rows, hidden)?,
                matrix("self_attn.k_proj.weight", kv_rows, hidden)?,
                matrix("self_attn.v_proj.weight", kv_rows, hidden)?,
            ];
            let qkv_bias = if config.attention_bias {
                let bias =
                    |p: &str, rows: usize| values(&name(&format!("self_attn.{p}_proj.bias")), rows);
                let mut fused = bias("q", q_rows)?;
                fused.extend(bias("k", kv_rows)?);
                fused.extend(bias("v", kv_rows)?);
                Some(vector(fused, device))
            } else {
                None
            };
            let qk_norm = if config.qk_norm {
                let norm = |p: &str| {
                    values(
                        &name(&format!("self_attn.{p}_norm.weight")),
                        config.head_dim,
                    )
                    .map(|v| vector(v, device))
                };
                Some((norm("q")?, norm("k")?))
            } else {
                None
            };
            let gate_up = vec![
                matrix("mlp.gate_proj.weight", ffn, hidden)?,
                matrix("mlp.up_proj.weight", ffn, hidden)?,
            ];
            let layer = LlamaLayer {
                attn_norm: vector(values(&name("input_layernorm.weight"), hidden)?, device),
                qkv: fused(qkv, folder)?,
                qkv_bias,
                qk_norm,
                attn_output: fused(
                    vec![matrix("self_attn.o_proj.weight", hidden, q_rows)?],
                    folder,
                )?,
                ffn_norm: vector(
                    values(&name("post_attention_layernorm.weight"), hidden)?,
                    device,
                ),
                gate_up: fused(gate_up, folder)?,
                down: fused(vec![matrix("mlp.down_proj.weight", hidden, ffn)?], folder)?,
            };
            log_progress(i + 1, config.num_layers);
            Ok(layer)
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let embedding = stored_matrix(
        folder,
        "model.embed_tokens.weight",
        config.vocab_size,
        hidden,
    )?;
    let lm_head = if tie_word_embeddings {
        embedding.clone()
    } else {
        stored_matrix(folder, "lm_head.weight", config.vocab_size, hidden)?
    };
    Ok(LlamaWeights {
        embedding: Embedding::Quant(embedding),
        layers,
        output_norm: vector(values("model.norm.weight", hidden)?, device),
        lm_head: fused(vec![lm_head], folder)?,
    })
}
