//! Weights from a GGUF file into the inference layout: dequantised to f32 and transposed, or
//! (on the CPU, when asked) kept in the file's types (quantised blocks, f16, bf16) for
//! `crate::quant`'s kernels, rows reordered where the table below says so.
//!
//! Tensor names (llama.cpp's), per layer `blk.{i}.`:
//!
//! | GGUF | role | kept as |
//! |------|------|---------|
//! | `token_embd.weight` | embeddings `[vocab, hidden]` | as is; also the LM head when `output.weight` is absent (tied: SmolLM2) |
//! | `output_norm.weight`, `output.weight` | final RMSNorm, LM head (untied: Qwen2.5-Coder) | as is |
//! | `attn_norm.weight`, `ffn_norm.weight` | RMSNorm weights | as is |
//! | `attn_q.weight`, `attn_k.weight` | Q, K `[out, in]`, rows permuted by llama.cpp for `llama`/`mistral` | un-permuted where permuted, then fused into `qkv` |
//! | `attn_q.bias`, `attn_k.bias`, `attn_v.bias` | Q/K/V biases (`qwen2`; a `llama` file may have them) | un-permuted like the rows, fused into `qkv_bias` |
//! | `attn_q_norm.weight`, `attn_k_norm.weight` | per-head RMSNorm of q and k before RoPE (`qwen3`), `[head_dim]` | `qk_norm` |
//! | `rope_freqs.weight` | per-frequency RoPE divisors (Llama 3.1+) | into the config's RoPE scaling |
//! | `attn_v.weight` | V | fused into `qkv` `[hidden, (heads + 2·kv_heads)·head_dim]` |
//! | `attn_output.weight` | output projection | transposed to `[in, out]` |
//! | `ffn_gate.weight`, `ffn_up.weight` | SwiGLU | fused into `gate_up` `[hidden, 2·ffn]` |
//! | `ffn_down.weight` | SwiGLU down | transposed to `[ffn, hidden]` |
//!
//! **RoPE layout.** For the `llama` and `mistral` architectures llama.cpp's converter permutes
//! the rows of Q and K (and their biases) within each head from Hugging Face's half-split order
//! to its interleaved order: GGUF row `h·d + 2i + j` holds HF row `h·d + j·d/2 + i` (`d` the
//! head width, `i < d/2`, `j ∈ {0, 1}`). The loader undoes that, so the model uses Hugging
//! Face's rotate-half RoPE. `qwen2`/`qwen3` files are not permuted (llama.cpp runs them with
//! NeoX RoPE, which is rotate-half), so their rows are kept. The numpy references keep the
//! GGUF rows and apply llama.cpp's RoPE for each (interleaved for SmolLM2, NeoX for Qwen);
//! agreement checks the choice.

use burn::prelude::*;

use super::config::{LlamaConfig, gguf_architecture};
use super::weights::{
    Embedding, Linear, LlamaLayer, LlamaWeights, Matrix, fused_transposed, log_progress, vector,
};
use crate::ModelError;
use crate::gguf::GgufFile;
use crate::quant::{QuantLinear, QuantMatrix};

fn matrix(file: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
    let (values, dims) = file.dequantize(name)?;
    if dims != [cols, rows] {
        return Err(ModelError::Tensor {
            path: file.path().to_path_buf(),
            tensor: name.to_string(),
            reason: format!("dimensions {dims:?}, expected [{cols}, {rows}] (innermost first)"),
        });
    }
    Ok(Matrix { values, rows, cols })
}

/// The values of a 1-D tensor of `len` values.
pub(crate) fn vector_values(
    file: &GgufFile,
    name: &str,
    len: usize,
) -> Result<Vec<f32>, ModelError> {
    let (values, dims) = file.dequantize(name)?;
    if dims != [len] {
        return Err(ModelError::Tensor {
            path: file.path().to_path_buf(),
            tensor: name.to_string(),
            reason: format!("dimensions {dims:?}, expected [{len}]"),
        });
    }
    Ok(values)
}

/// A matrix in the file's own type (for the CPU kernels), sharing the file's bytes.
fn raw_matrix(
    file: &GgufFile,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<QuantMatrix, ModelError> {
    let tensor = file.raw_shared(name)?;
    let error = |reason: String| ModelError::Tensor {
        path: file.path().to_path_buf(),
        tensor: name.to_string(),
        reason,
    };
    if tensor.dims != [cols, rows] {
        return Err(error(format!(
            "dimensions {:?}, expected [{cols}, {rows}] (innermost first)",
            tensor.dims
        )));
    }
    QuantMatrix::shared(tensor.ty, rows, cols, tensor.bytes, tensor.range)
        .map_err(|e| error(e.to_string()))
}

/// The GGUF row that llama.cpp's Q/K permutation put at each Hugging Face row.
fn unpermuted_order(rows: usize, heads: usize) -> Vec<usize> {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut order = vec![0; rows];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                order[h * head_dim + j * half + i] = h * head_dim + 2 * i + j;
            }
        }
    }
    order
}

/// Undoes llama.cpp's Q/K row permutation (see the module docs).
fn unpermute_rows(m: Matrix, heads: usize) -> Matrix {
    let head_dim = m.rows / heads;
    let half = head_dim / 2;
    let mut values = vec![0.0; m.values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = (h * head_dim + 2 * i + j) * m.cols;
                let to = (h * head_dim + j * half + i) * m.cols;
                values[to..to + m.cols].copy_from_slice(&m.values[from..from + m.cols]);
            }
        }
    }
    Matrix { values, ..m }
}

/// How the matrices are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatrixLayout {
    /// `[in, out]` f32 tensors (every device).
    Tensors,
    /// The file's own types, for the CPU kernels (other devices get [`Self::Tensors`]).
    FileTypes,
    /// f32 rows for the CPU kernels' float path: the host pass with f32 activations, which
    /// the tests hold to the tensor path.
    F32Rows,
}

/// Loads every weight of `config`'s decoder from `file` onto `device`.
pub(crate) fn load_weights(
    file: &GgufFile,
    config: &LlamaConfig,
    device: &Device,
    layout: MatrixLayout,
) -> Result<LlamaWeights, ModelError> {
    let hidden = config.hidden_size;
    let ffn = config.intermediate_size;
    let q_rows = config.num_heads * config.head_dim;
    let kv_rows = config.num_kv_heads * config.head_dim;
    let norm = |name: &str| Ok::<_, ModelError>(vector(vector_values(file, name, hidden)?, device));
    let permuted = gguf_architecture(file)?.permutes_qk();
    // The quantised kernels are CPU code: a GPU always gets f32 tensors.
    let quantised = layout != MatrixLayout::Tensors && *device == crate::cpu_device();
    // Every matrix gets its own buffer (interleaved where the tiled kernels take the type),
    // so the file's bytes are dropped once the weights are loaded.
    let as_laid_out = |m: QuantMatrix| {
        if layout == MatrixLayout::F32Rows {
            m.to_f32()
        } else {
            m.repacked()
        }
    };
    let unpermute = |m: Matrix, heads: usize| {
        if permuted {
            unpermute_rows(m, heads)
        } else {
            m
        }
    };
    let layers = (0..config.num_layers)
        .map(|i| {
            let name = |part: &str| format!("blk.{i}.{part}.weight");
            let qkv_bias = if config.attention_bias {
                // A bias is a one-column matrix: it un-permutes like its rows.
                let bias = |part: &str, rows: usize| {
                    let values = vector_values(file, &format!("blk.{i}.{part}.bias"), rows)?;
                    Ok::<_, ModelError>(Matrix {
                        values,
                        rows,
                        cols: 1,
                    })
                };
                let mut fused = unpermute(bias("attn_q", q_rows)?, config.num_heads).values;
                fused.extend(unpermute(bias("attn_k", kv_rows)?, config.num_kv_heads).values);
                fused.extend(bias("attn_v", kv_rows)?.values);
                Some(vector(fused, device))
            } else {
                None
            };
            let qk_norm = if config.qk_norm {
                let norm = |part: &str| {
                    vector_values(file, &name(part), config.head_dim).map(|v| vector(v, device))
                };
                Some((norm("attn_q_norm")?, norm("attn_k_norm")?))
            } else {
                None
            };
            let [qkv, attn_output, gate_up, down] = if quantised {
                let raw = |part: &str, rows: usize, cols: usize| {
                    raw_matrix(file, &name(part), rows, cols)
                };
                let linear = |parts: Vec<QuantMatrix>| {
                    QuantLinear::new(parts)
                        .map(Linear::Quant)
                        .map_err(|e| ModelError::Weights {
                            path: file.path().to_path_buf(),
                            reason: format!("layer {i}: {e}"),
                        })
                };
                let mut q = raw("attn_q", q_rows, hidden)?;
                let mut k = raw("attn_k", kv_rows, hidden)?;
                if permuted {
                    q = q.permute_rows(&unpermuted_order(q_rows, config.num_heads));
                    k = k.permute_rows(&unpermuted_order(kv_rows, config.num_kv_heads));
                }
                let v = raw("attn_v", kv_rows, hidden)?;
                let laid_out =
                    |parts: Vec<QuantMatrix>| linear(parts.into_iter().map(as_laid_out).collect());
                [
                    laid_out(vec![q, k, v])?,
                    laid_out(vec![raw("attn_output", hidden, q_rows)?])?,
                    laid_out(vec![
                        raw("ffn_gate", ffn, hidden)?,
                        raw("ffn_up", ffn, hidden)?,
                    ])?,
                    laid_out(vec![raw("ffn_down", hidden, ffn)?])?,
                ]
            } else {
                let q = unpermute(
                    matrix(file, &name("attn_q"), q_rows, hidden)?,
                    config.num_heads,
                );
                let k = unpermute(
                    matrix(file, &name("attn_k"), kv_rows, hidden)?,
                    config.num_kv_heads,
                );
                let v = matrix(file, &name("attn_v"), kv_rows, hidden)?;
                let o = matrix(file, &name("attn_output"), hidden, q_rows)?;
                let gate = matrix(file, &name("ffn_gate"), ffn, hidden)?;
                let up = matrix(file, &name("ffn_up"), ffn, hidden)?;
                let down = matrix(file, &name("ffn_down"), hidden, ffn)?;
                [
                    fused_transposed(&[q, k, v], device),
                    fused_transposed(&[o], device),
                    fused_transposed(&[gate, up], device),
                    fused_transposed(&[down], device),
                ]
                .map(Linear::Dense)
            };
            log_progress(i + 1, config.num_layers);
            Ok(LlamaLayer {
                attn_norm: norm(&name("attn_norm"))?,
                qkv,
                qkv_bias,
                qk_norm,
                attn_output,
                ffn_norm: norm(&name("ffn_norm"))?,
                gate_up,
                down,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let (embedding, lm_head) = if quantised {
        let embedding = as_laid_out(raw_matrix(
            file,
            "token_embd.weight",
            config.vocab_size,
            hidden,
        )?);
        let head = if file.tensor_info("output.weight").is_some() {
            as_laid_out(raw_matrix(
                file,
                "output.weight",
                config.vocab_size,
                hidden,
            )?)
        } else {
            tracing::debug!("no output.weight: LM head tied to token_embd.weight");
            embedding.clone() // shares the bytes
        };
        let head = QuantLinear::new(vec![head]).map_err(|e| ModelError::Weights {
            path: file.path().to_path_buf(),
            reason: e.to_string(),
        })?;
        (Embedding::Quant(embedding), Linear::Quant(head))
    } else {
        let embedding = matrix(file, "token_embd.weight", config.vocab_size, hidden)?;
        let lm_head = if file.tensor_info("output.weight").is_some() {
            fused_transposed(
                &[matrix(file, "output.weight", config.vocab_size, hidden)?],
                device,
            )
        } else {
            tracing::debug!("no output.weight: LM head tied to token_embd.weight");
            fused_transposed(std::slice::from_ref(&embedding), device)
        };
        (
            Embedding::Dense(embedding.into_tensor(device)),
            Linear::Dense(lm_head),
        )
    };
    Ok(LlamaWeights {
        embedding,
        layers,
        output_norm: norm("output_norm.weight")?,
        lm_head,
    })
}
