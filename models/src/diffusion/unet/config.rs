//! `unet/config.json` of a diffusers `UNet2DConditionModel`, with diffusers' defaults and its
//! one famous quirk: `attention_head_dim` is the number of heads unless `num_attention_heads`
//! is given.

use std::path::Path;

use serde::Deserialize;

use crate::ModelError;
use crate::json::read_json;

/// An integer the config gives either once for every block or once per block.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    fn for_blocks(&self, blocks: usize) -> Vec<usize> {
        match self {
            Self::One(value) => vec![*value; blocks],
            Self::Each(values) => values.clone(),
        }
    }
}

/// The fields the UNet's shape depends on.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UNetConfig {
    #[serde(default = "default_sample_size")]
    pub sample_size: usize,
    #[serde(default = "default_latent_channels")]
    pub in_channels: usize,
    #[serde(default = "default_latent_channels")]
    pub out_channels: usize,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "default_mid_block")]
    pub mid_block_type: Option<String>,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_layers_per_block")]
    pub layers_per_block: usize,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_cross_attention_dim")]
    pub cross_attention_dim: usize,
    #[serde(default = "default_heads")]
    pub attention_head_dim: PerBlock,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    #[serde(default = "default_act")]
    pub act_fn: String,
    #[serde(default)]
    pub transformer_layers_per_block: Option<PerBlock>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub only_cross_attention: serde_json::Value,
    #[serde(default)]
    pub dual_cross_attention: bool,
    #[serde(default = "default_resnet_shift")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "default_time_embedding")]
    pub time_embedding_type: String,
    #[serde(default = "default_conv_kernel")]
    pub conv_in_kernel: usize,
    #[serde(default = "default_conv_kernel")]
    pub conv_out_kernel: usize,
    #[serde(default = "default_one")]
    pub mid_block_scale_factor: f64,
}

fn default_sample_size() -> usize {
    64
}
fn default_latent_channels() -> usize {
    4
}
fn default_true() -> bool {
    true
}
fn default_mid_block() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}
fn default_layers_per_block() -> usize {
    2
}
fn default_groups() -> usize {
    32
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_cross_attention_dim() -> usize {
    1280
}
fn default_heads() -> PerBlock {
    PerBlock::One(8)
}
fn default_act() -> String {
    "silu".into()
}
fn default_resnet_shift() -> String {
    "default".into()
}
fn default_time_embedding() -> String {
    "positional".into()
}
fn default_conv_kernel() -> usize {
    3
}
fn default_one() -> f64 {
    1.0
}

impl UNetConfig {
    /// Reads `path` and rejects the variants this UNet does not implement, naming the field.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = read_json(path)?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ModelError> {
        let unsupported = |field: &str, reason: String| {
            Err(ModelError::Config {
                path: path.to_path_buf(),
                field: field.into(),
                reason,
            })
        };
        let blocks = self.block_out_channels.len();
        if blocks == 0
            || self.down_block_types.len() != blocks
            || self.up_block_types.len() != blocks
        {
            return unsupported(
                "block_out_channels",
                format!(
                    "{blocks} channel counts for {} down and {} up blocks",
                    self.down_block_types.len(),
                    self.up_block_types.len()
                ),
            );
        }
        for (field, kinds, known) in [
            (
                "down_block_types",
                &self.down_block_types,
                ["CrossAttnDownBlock2D", "DownBlock2D"],
            ),
            (
                "up_block_types",
                &self.up_block_types,
                ["CrossAttnUpBlock2D", "UpBlock2D"],
            ),
        ] {
            if let Some(other) = kinds.iter().find(|k| !known.contains(&k.as_str())) {
                return unsupported(
                    field,
                    format!("`{other}` is not supported (only {known:?})"),
                );
            }
        }
        match self.mid_block_type.as_deref() {
            Some("UNetMidBlock2DCrossAttn") => {}
            other => {
                return unsupported(
                    "mid_block_type",
                    format!("{other:?} is not supported (only UNetMidBlock2DCrossAttn)"),
                );
            }
        }
        for (field, value) in [
            ("class_embed_type", &self.class_embed_type),
            ("addition_embed_type", &self.addition_embed_type),
        ] {
            if let Some(value) = value {
                return unsupported(
                    field,
                    format!("`{value}` is not supported (SDXL-style conditioning)"),
                );
            }
        }
        if self.only_cross_attention.as_bool() == Some(true) || self.only_cross_attention.is_array()
        {
            return unsupported("only_cross_attention", "not supported".into());
        }
        if self.dual_cross_attention {
            return unsupported("dual_cross_attention", "not supported".into());
        }
        if self.resnet_time_scale_shift != "default" {
            return unsupported(
                "resnet_time_scale_shift",
                format!("`{}` is not supported", self.resnet_time_scale_shift),
            );
        }
        if self.time_embedding_type != "positional" {
            return unsupported(
                "time_embedding_type",
                format!("`{}` is not supported", self.time_embedding_type),
            );
        }
        if self.act_fn != "silu" {
            return unsupported("act_fn", format!("`{}` is not supported", self.act_fn));
        }
        if self.conv_in_kernel.is_multiple_of(2) || self.conv_out_kernel.is_multiple_of(2) {
            return unsupported("conv_in_kernel", "kernels must be odd".into());
        }
        for (i, &channels) in self.block_out_channels.iter().enumerate() {
            if self.norm_num_groups == 0 || !channels.is_multiple_of(self.norm_num_groups) {
                return unsupported(
                    "norm_num_groups",
                    format!(
                        "block {i}'s {channels} channels do not split into {} groups",
                        self.norm_num_groups
                    ),
                );
            }
            let heads = self.heads()[i];
            if heads == 0 || !channels.is_multiple_of(heads) {
                return unsupported(
                    "attention_head_dim",
                    format!("block {i}'s {channels} channels do not split into {heads} heads"),
                );
            }
        }
        for (field, lists) in [
            ("attention_head_dim", self.heads().len()),
            (
                "transformer_layers_per_block",
                self.transformer_layers().len(),
            ),
        ] {
            if lists != blocks {
                return unsupported(field, format!("{lists} values for {blocks} blocks"));
            }
        }
        Ok(())
    }

    /// Attention heads of each down block (the up blocks use them reversed).
    pub fn heads(&self) -> Vec<usize> {
        let blocks = self.block_out_channels.len();
        self.num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .for_blocks(blocks)
    }

    /// Transformer blocks inside each attention of each down block.
    pub fn transformer_layers(&self) -> Vec<usize> {
        let blocks = self.block_out_channels.len();
        self.transformer_layers_per_block
            .as_ref()
            .map_or_else(|| vec![1; blocks], |t| t.for_blocks(blocks))
    }

    /// How many times the UNet halves the latent (one per down block but the last).
    pub fn downsamplings(&self) -> usize {
        self.block_out_channels.len() - 1
    }
}
