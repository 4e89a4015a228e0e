//! [`ClipTextEncoder`]: transformers' `CLIPTextModel` from a diffusers `text_encoder/`
//! folder (token and learned position embeddings, pre-LN transformer layers with causal
//! self-attention, a final LayerNorm), on any burn device.

use std::path::Path;

use burn::prelude::*;

use super::config::ClipTextConfig;
use crate::ModelError;
use crate::diffusion::layers::{Activation, LayerNorm, Linear, multi_head_attention};
use crate::diffusion::weights::ComponentWeights;

const PREFIX: &str = "text_model";

/// One pre-LN transformer layer.
#[derive(Debug)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// A loaded CLIP text encoder.
pub struct ClipTextEncoder {
    config: ClipTextConfig,
    activation: Activation,
    token_embedding: Tensor<2>,
    position_embedding: Tensor<2>,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    device: Device,
}

impl std::fmt::Debug for ClipTextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTextEncoder")
            .field("config", &self.config)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl ClipTextEncoder {
    /// Loads `pipeline/text_encoder` (`config.json` and `model.safetensors`, its `fp16`
    /// variant or shards) onto `device`.
    pub fn load(pipeline: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = ClipTextConfig::load(&pipeline.join("text_encoder").join("config.json"))?;
        let weights = ComponentWeights::open(pipeline, "text_encoder", "model", device)?;
        let (hidden, eps) = (config.hidden_size, config.layer_norm_eps);
        let embeddings = format!("{PREFIX}.embeddings");
        let token_embedding = weights.tensor(
            &format!("{embeddings}.token_embedding.weight"),
            [config.vocab_size, hidden],
        )?;
        let position_embedding = weights.tensor(
            &format!("{embeddings}.position_embedding.weight"),
            [config.max_position_embeddings, hidden],
        )?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| load_layer(&weights, &format!("{PREFIX}.encoder.layers.{i}"), &config))
            .collect::<Result<Vec<_>, _>>()?;
        let final_layer_norm =
            weights.layer_norm(&format!("{PREFIX}.final_layer_norm"), hidden, eps)?;
        let activation = config.activation().ok_or_else(|| {
            ModelError::InvalidInput(format!("unknown activation `{}`", config.hidden_act))
        })?;
        tracing::info!(pipeline = %pipeline.display(), layers = config.num_hidden_layers,
            hidden, activation = %config.hidden_act, "loaded CLIP text encoder");
        Ok(Self {
            config,
            activation,
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm,
            device: device.clone(),
        })
    }

    /// Width of the output (`hidden_size`).
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// The encoder's sizes.
    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Encodes `ids`, equally long rows (as [`super::ClipTokenizer::encode`] returns), to
    /// `[batch, tokens, hidden]`: the final LayerNorm of the last layer's output, or with
    /// `clip_skip` k ≥ 1 of layer `num_layers - k`'s output (diffusers' `hidden_states[-(k+1)]`).
    pub fn encode(&self, ids: &[Vec<u32>], clip_skip: usize) -> Result<Tensor<3>, ModelError> {
        let tokens = self.check(ids, clip_skip)?;
        let batch = ids.len();
        let flat: Vec<i64> = ids.iter().flatten().map(|&id| i64::from(id)).collect();
        let index =
            Tensor::<1, Int>::from_data(TensorData::new(flat, [batch * tokens]), &self.device);
        let hidden = self.config.hidden_size;
        let mut x = self
            .token_embedding
            .clone()
            .select(0, index)
            .reshape([batch, tokens, hidden])
            + self
                .position_embedding
                .clone()
                .slice(s![0..tokens])
                .unsqueeze::<3>();
        for layer in &self.layers[..self.layers.len() - clip_skip] {
            x = self.layer_forward(layer, x)?;
        }
        Ok(self.final_layer_norm.forward(x))
    }

    /// The row length, after checking the batch, the ids and `clip_skip`.
    fn check(&self, ids: &[Vec<u32>], clip_skip: usize) -> Result<usize, ModelError> {
        let config = &self.config;
        let tokens = ids.first().map_or(0, Vec::len);
        if tokens == 0 {
            return Err(ModelError::InvalidInput("no token ids to encode".into()));
        }
        if tokens > config.max_position_embeddings {
            return Err(ModelError::InvalidInput(format!(
                "{tokens} tokens exceed the text encoder's {} positions",
                config.max_position_embeddings
            )));
        }
        if let Some(row) = ids.iter().position(|row| row.len() != tokens) {
            return Err(ModelError::InvalidInput(format!(
                "id row {row} has {} tokens, row 0 has {tokens}",
                ids[row].len()
            )));
        }
        if let Some(&id) = ids
            .iter()
            .flatten()
            .find(|&&id| id as usize >= config.vocab_size)
        {
            return Err(ModelError::InvalidInput(format!(
                "token id {id} is outside the text encoder's vocabulary of {}",
                config.vocab_size
            )));
        }
        if clip_skip >= config.num_hidden_layers {
            return Err(ModelError::InvalidInput(format!(
                "clip_skip {clip_skip} leaves no layer of the text encoder's {}",
                config.num_hidden_layers
            )));
        }
        Ok(tokens)
    }

    fn layer_forward(&self, layer: &EncoderLayer, x: Tensor<3>) -> Result<Tensor<3>, ModelError> {
        let normed = layer.layer_norm1.forward(x.clone());
        let context = multi_head_attention(
            layer.q_proj.forward(normed.clone()),
            layer.k_proj.forward(normed.clone()),
            layer.v_proj.forward(normed),
            self.config.num_attention_heads,
            true,
        );
        let x = x + layer.out_proj.forward(context);
        let up = self
            .activation
            .apply(layer.fc1.forward(layer.layer_norm2.forward(x.clone())))?;
        Ok(x + layer.fc2.forward(up))
    }
}

fn load_layer(
    weights: &ComponentWeights,
    prefix: &str,
    config: &ClipTextConfig,
) -> Result<EncoderLayer, ModelError> {
    let (hidden, inner, eps) = (
        config.hidden_size,
        config.intermediate_size,
        config.layer_norm_eps,
    );
    let attention =
        |name: &str| weights.linear(&format!("{prefix}.self_attn.{name}"), hidden, hidden, true);
    Ok(EncoderLayer {
        layer_norm1: weights.layer_norm(&format!("{prefix}.layer_norm1"), hidden, eps)?,
        q_proj: attention("q_proj")?,
        k_proj: attention("k_proj")?,
        v_proj: attention("v_proj")?,
        out_proj: attention("out_proj")?,
        layer_norm2: weights.layer_norm(&format!("{prefix}.layer_norm2"), hidden, eps)?,
        fc1: weights.linear(&format!("{prefix}.mlp.fc1"), hidden, inner, true)?,
        fc2: weights.linear(&format!("{prefix}.mlp.fc2"), inner, hidden, true)?,
    })
}
