//! Whisper from a Hugging Face `WhisperForConditionalGeneration` folder: the tensor names of
//! its state dict (`model.encoder.layers.0.self_attn.q_proj.weight`, with or without the
//! `model.` prefix), separate Q/K/V projections fused at load, and `proj_out` tied to the
//! token embedding (so it is not read).

use super::weights::{Attention, Part, Place, Stack, TensorNames, WeightSource, stack_rows};
use crate::ModelError;
use crate::llama::weights::Matrix;
use crate::safetensors_folder::SafetensorsFolder;

impl WeightSource for SafetensorsFolder {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        SafetensorsFolder::tensor(self, name, shape)
    }

    fn optional(&self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>, ModelError> {
        if !self.contains(name) {
            return Ok(None);
        }
        SafetensorsFolder::tensor(self, name, shape).map(Some)
    }
}

/// Hugging Face names, under `prefix` (`model.` for a `WhisperForConditionalGeneration`
/// checkpoint, empty for a bare `WhisperModel`).
#[derive(Debug)]
pub(crate) struct HfNames {
    pub prefix: &'static str,
}

impl HfNames {
    /// The prefix `folder` uses.
    pub fn detect(folder: &SafetensorsFolder) -> Self {
        let prefix = if folder.contains("model.encoder.conv1.weight") {
            "model."
        } else {
            ""
        };
        Self { prefix }
    }

    fn stack(&self, stack: Stack) -> String {
        match stack {
            Stack::Encoder => format!("{}encoder", self.prefix),
            Stack::Decoder => format!("{}decoder", self.prefix),
        }
    }
}

fn part_name(part: Part) -> &'static str {
    match part {
        Part::Weight => "weight",
        Part::Bias => "bias",
    }
}

impl TensorNames for HfNames {
    fn conv(&self, index: usize, part: Part) -> String {
        format!(
            "{}.conv{index}.{}",
            self.stack(Stack::Encoder),
            part_name(part)
        )
    }

    fn encoder_positions(&self) -> String {
        format!("{}.embed_positions.weight", self.stack(Stack::Encoder))
    }

    fn token_embedding(&self) -> String {
        format!("{}.embed_tokens.weight", self.stack(Stack::Decoder))
    }

    fn decoder_positions(&self) -> String {
        format!("{}.embed_positions.weight", self.stack(Stack::Decoder))
    }

    fn norm(&self, at: Place, part: Part) -> String {
        let part = part_name(part);
        match at {
            Place::SelfAttention(stack, layer) => format!(
                "{}.layers.{layer}.self_attn_layer_norm.{part}",
                self.stack(stack)
            ),
            Place::CrossAttention(layer) => format!(
                "{}.layers.{layer}.encoder_attn_layer_norm.{part}",
                self.stack(Stack::Decoder)
            ),
            Place::Mlp(stack, layer) => {
                format!(
                    "{}.layers.{layer}.final_layer_norm.{part}",
                    self.stack(stack)
                )
            }
            Place::Final(stack) => format!("{}.layer_norm.{part}", self.stack(stack)),
        }
    }

    fn attention(
        &self,
        source: &dyn WeightSource,
        at: Attention,
        d: usize,
    ) -> Result<Vec<(Matrix, Vec<f32>)>, ModelError> {
        let block = if at.cross {
            "encoder_attn"
        } else {
            "self_attn"
        };
        let prefix = format!("{}.layers.{}.{block}", self.stack(at.stack), at.layer);
        let projection = |name: &str| -> Result<(Vec<f32>, Option<Vec<f32>>), ModelError> {
            Ok((
                source.tensor(&format!("{prefix}.{name}.weight"), &[d, d])?,
                source.optional(&format!("{prefix}.{name}.bias"), &[d])?,
            ))
        };
        let (q, k, v, out) = (
            projection("q_proj")?,
            projection("k_proj")?,
            projection("v_proj")?,
            projection("out_proj")?,
        );
        Ok(if at.cross {
            vec![
                stack_rows(vec![q], d),
                stack_rows(vec![k, v], d),
                stack_rows(vec![out], d),
            ]
        } else {
            vec![stack_rows(vec![q, k, v], d), stack_rows(vec![out], d)]
        })
    }

    fn mlp(&self, stack: Stack, layer: usize, which: usize, part: Part) -> String {
        format!(
            "{}.layers.{layer}.fc{}.{}",
            self.stack(stack),
            which + 1,
            part_name(part)
        )
    }
}
