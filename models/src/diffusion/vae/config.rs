//! `vae/config.json` of a diffusers `AutoencoderKL`.

use std::path::Path;

use serde::Deserialize;

use crate::ModelError;
use crate::json::read_json;

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct VaeConfig {
    #[serde(default = "default_image_channels")]
    pub in_channels: usize,
    #[serde(default = "default_image_channels")]
    pub out_channels: usize,
    #[serde(default = "default_down")]
    pub down_block_types: Vec<String>,
    #[serde(default = "default_up")]
    pub up_block_types: Vec<String>,
    #[serde(default = "default_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_layers")]
    pub layers_per_block: usize,
    #[serde(default = "default_act")]
    pub act_fn: String,
    #[serde(default = "default_latent_channels")]
    pub latent_channels: usize,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
    #[serde(default = "default_true")]
    pub mid_block_add_attention: bool,
}

fn default_image_channels() -> usize {
    3
}
fn default_down() -> Vec<String> {
    vec!["DownEncoderBlock2D".into()]
}
fn default_up() -> Vec<String> {
    vec!["UpDecoderBlock2D".into()]
}
fn default_channels() -> Vec<usize> {
    vec![64]
}
fn default_layers() -> usize {
    1
}
fn default_act() -> String {
    "silu".into()
}
fn default_latent_channels() -> usize {
    4
}
fn default_groups() -> usize {
    32
}
fn default_scaling() -> f64 {
    0.18215
}
fn default_true() -> bool {
    true
}

impl VaeConfig {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = read_json(path)?;
        let invalid = |field: &str, reason: String| {
            Err(ModelError::Config {
                path: path.to_path_buf(),
                field: field.into(),
                reason,
            })
        };
        let blocks = config.block_out_channels.len();
        if blocks == 0
            || config.down_block_types.len() != blocks
            || config.up_block_types.len() != blocks
        {
            return invalid(
                "block_out_channels",
                format!(
                    "{blocks} channel counts for {} down and {} up blocks",
                    config.down_block_types.len(),
                    config.up_block_types.len()
                ),
            );
        }
        if let Some(other) = config
            .down_block_types
            .iter()
            .find(|k| *k != "DownEncoderBlock2D")
        {
            return invalid("down_block_types", format!("`{other}` is not supported"));
        }
        if let Some(other) = config
            .up_block_types
            .iter()
            .find(|k| *k != "UpDecoderBlock2D")
        {
            return invalid("up_block_types", format!("`{other}` is not supported"));
        }
        if config.act_fn != "silu" {
            return invalid("act_fn", format!("`{}` is not supported", config.act_fn));
        }
        if let Some(bad) = config
            .block_out_channels
            .iter()
            .find(|&&c| config.norm_num_groups == 0 || !c.is_multiple_of(config.norm_num_groups))
        {
            return invalid(
                "norm_num_groups",
                format!(
                    "{bad} channels do not split into {} groups",
                    config.norm_num_groups
                ),
            );
        }
        Ok(config)
    }

    /// How many image pixels one latent cell covers per side (8 for Stable Diffusion).
    pub fn scale_factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}
