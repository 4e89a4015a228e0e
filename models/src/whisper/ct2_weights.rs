//! Whisper from a CTranslate2 folder (`model.bin`, `config.json`): the dims read off the
//! tensors' shapes and the `num_heads` scalars, and CTranslate2's tensor names
//! (`encoder/layer_0/self_attention/linear_0` is the fused Q/K/V projection,
//! `decoder/layer_0/attention/linear_1` the fused cross-attention K/V).

use super::config::WhisperDims;
use super::ct2::Ct2File;
use super::weights::{Attention, Part, Place, Stack, TensorNames, WeightSource};
use crate::ModelError;
use crate::llama::weights::Matrix;

impl WeightSource for Ct2File {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        self.f32_tensor(name, shape)
    }

    fn optional(&self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>, ModelError> {
        if self.variable(name).is_none() {
            return Ok(None);
        }
        self.f32_tensor(name, shape).map(Some)
    }
}

/// The dims of a CTranslate2 Whisper: widths and vocabulary from the tensors' shapes, layer
/// counts by probing `*/layer_N`, heads from `*/num_heads`.
pub(crate) fn read_dims(file: &Ct2File) -> Result<WhisperDims, ModelError> {
    if file.spec() != "WhisperSpec" {
        return Err(ModelError::Weights {
            path: file.path().to_path_buf(),
            reason: format!(
                "spec `{}` is not a Whisper model (WhisperSpec)",
                file.spec()
            ),
        });
    }
    let shape = |name: &str, rank: usize| -> Result<Vec<usize>, ModelError> {
        let variable = file.variable(name).ok_or_else(|| ModelError::Tensor {
            path: file.path().to_path_buf(),
            tensor: name.to_owned(),
            reason: "missing".into(),
        })?;
        if variable.shape.len() != rank {
            return Err(ModelError::Tensor {
                path: file.path().to_path_buf(),
                tensor: name.to_owned(),
                reason: format!("shape {:?}, expected rank {rank}", variable.shape),
            });
        }
        Ok(variable.shape.clone())
    };
    let conv1 = shape("encoder/conv1/weight", 3)?;
    let encoder_positions = shape("encoder/position_encodings/encodings", 2)?;
    let decoder_positions = shape("decoder/position_encodings/encodings", 2)?;
    let embedding = shape("decoder/embeddings/weight", 2)?;
    let layers = |stack: &str| {
        (0..)
            .take_while(|i| {
                file.variable(&format!("{stack}/layer_{i}/ffn/linear_0/weight"))
                    .is_some()
            })
            .count()
    };
    let heads = |name: &str| -> Result<usize, ModelError> {
        let value = file.int_scalar(name)?;
        usize::try_from(value).map_err(|_| ModelError::Tensor {
            path: file.path().to_path_buf(),
            tensor: name.to_owned(),
            reason: format!("{value} heads"),
        })
    };
    let dims = WhisperDims {
        n_mels: conv1[1],
        n_audio_ctx: encoder_positions[0],
        n_state: conv1[0],
        n_audio_head: heads("encoder/num_heads")?,
        n_audio_layer: layers("encoder"),
        n_text_ctx: decoder_positions[0],
        n_text_head: heads("decoder/num_heads")?,
        n_text_layer: layers("decoder"),
        n_vocab: embedding[0],
    };
    dims.check(file.path())?;
    Ok(dims)
}

/// CTranslate2's `WhisperSpec` names.
#[derive(Debug)]
pub(crate) struct Ct2Names;

fn stack_name(stack: Stack) -> &'static str {
    match stack {
        Stack::Encoder => "encoder",
        Stack::Decoder => "decoder",
    }
}

fn part_name(part: Part, norm: bool) -> &'static str {
    match (part, norm) {
        (Part::Weight, false) => "weight",
        (Part::Bias, false) => "bias",
        (Part::Weight, true) => "gamma",
        (Part::Bias, true) => "beta",
    }
}

impl TensorNames for Ct2Names {
    fn conv(&self, index: usize, part: Part) -> String {
        format!("encoder/conv{index}/{}", part_name(part, false))
    }

    fn encoder_positions(&self) -> String {
        "encoder/position_encodings/encodings".into()
    }

    fn token_embedding(&self) -> String {
        "decoder/embeddings/weight".into()
    }

    fn decoder_positions(&self) -> String {
        "decoder/position_encodings/encodings".into()
    }

    fn norm(&self, at: Place, part: Part) -> String {
        let part = part_name(part, true);
        match at {
            Place::SelfAttention(stack, layer) => {
                format!(
                    "{}/layer_{layer}/self_attention/layer_norm/{part}",
                    stack_name(stack)
                )
            }
            Place::CrossAttention(layer) => {
                format!("decoder/layer_{layer}/attention/layer_norm/{part}")
            }
            Place::Mlp(stack, layer) => {
                format!("{}/layer_{layer}/ffn/layer_norm/{part}", stack_name(stack))
            }
            Place::Final(stack) => format!("{}/layer_norm/{part}", stack_name(stack)),
        }
    }

    fn attention(
        &self,
        source: &dyn WeightSource,
        at: Attention,
        d: usize,
    ) -> Result<Vec<(Matrix, Vec<f32>)>, ModelError> {
        let block = if at.cross {
            "attention"
        } else {
            "self_attention"
        };
        let prefix = format!("{}/layer_{}/{block}", stack_name(at.stack), at.layer);
        // Self-attention: linear_0 is [q; k; v] (3d rows), linear_1 the output. Cross:
        // linear_0 is q, linear_1 [k; v] (2d rows), linear_2 the output. Already fused the
        // way the model runs them, so nothing is split.
        let widths: &[usize] = if at.cross { &[1, 2, 1] } else { &[3, 1] };
        widths
            .iter()
            .enumerate()
            .map(|(index, &parts)| {
                let name = format!("{prefix}/linear_{index}");
                let weight = source.tensor(&format!("{name}/weight"), &[parts * d, d])?;
                let bias = source.optional(&format!("{name}/bias"), &[parts * d])?;
                let rows = parts * d;
                Ok((
                    Matrix {
                        values: weight,
                        rows,
                        cols: d,
                    },
                    bias.unwrap_or_else(|| vec![0.0; rows]),
                ))
            })
            .collect()
    }

    fn mlp(&self, stack: Stack, layer: usize, which: usize, part: Part) -> String {
        format!(
            "{}/layer_{layer}/ffn/linear_{which}/{}",
            stack_name(stack),
            part_name(part, false)
        )
    }
}
