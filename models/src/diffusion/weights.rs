//! The weights of one diffusers component (`text_encoder/`, `unet/`, `vae/`): its safetensors
//! file (f32, f16 or bf16, the `fp16` variant, shards) opened once, and tensors and layers
//! taken from it by name. Every error names the component, the tensor and both shapes.

use std::path::Path;

use burn::prelude::*;

use super::layers::{Conv2d, GroupNorm, LayerNorm, Linear};
use crate::ModelError;
use crate::safetensors_folder::SafetensorsFolder;

/// One component's tensors, on the device the pipeline runs on.
#[derive(Debug)]
pub(crate) struct ComponentWeights {
    component: String,
    folder: SafetensorsFolder,
    device: Device,
}

impl ComponentWeights {
    /// Opens `pipeline/component`, whose weight files are called `stem`
    /// (`diffusion_pytorch_model` for the UNet and VAE, `model` for the text encoder).
    pub fn open(
        pipeline: &Path,
        component: &str,
        stem: &str,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let folder = SafetensorsFolder::open_stem(&pipeline.join(component), stem)?;
        tracing::info!(component, files = ?folder, bytes = folder.size_bytes(), "reading diffusers component");
        Ok(Self {
            component: component.to_owned(),
            folder,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the component has a tensor called `name` (optional layers such as a
    /// ResNet's shortcut convolution).
    pub fn contains(&self, name: &str) -> bool {
        self.folder.contains(name)
    }

    /// Tensor `name`, which must have `shape`.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, ModelError> {
        let values = self.folder.tensor(name, &shape).map_err(|e| match e {
            ModelError::Tensor {
                path,
                tensor,
                reason,
            } => ModelError::Tensor {
                path,
                tensor: format!("{}: {tensor}", self.component),
                reason,
            },
            other => other,
        })?;
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    /// A `torch.nn.Linear(inputs, outputs)` at `prefix` (`prefix.weight`, `prefix.bias` when
    /// `bias`).
    pub fn linear(
        &self,
        prefix: &str,
        inputs: usize,
        outputs: usize,
        bias: bool,
    ) -> Result<Linear, ModelError> {
        let weight = self.tensor(&format!("{prefix}.weight"), [outputs, inputs])?;
        let bias = if bias {
            Some(self.tensor(&format!("{prefix}.bias"), [outputs])?)
        } else {
            None
        };
        Ok(Linear::new(weight.transpose(), bias))
    }

    /// A per-token projection stored either as a linear layer (`[out, in]`) or as a 1×1
    /// convolution (`[out, in, 1, 1]`: `proj_in`/`proj_out` without `use_linear_projection`,
    /// the attention of VAEs converted from the original checkpoints).
    pub fn projection(
        &self,
        prefix: &str,
        inputs: usize,
        outputs: usize,
        bias: bool,
    ) -> Result<Linear, ModelError> {
        let name = format!("{prefix}.weight");
        if self.folder.rank(&name) != Some(4) {
            return self.linear(prefix, inputs, outputs, bias);
        }
        let weight = self.tensor::<4>(&name, [outputs, inputs, 1, 1])?;
        let bias = if bias {
            Some(self.tensor(&format!("{prefix}.bias"), [outputs])?)
        } else {
            None
        };
        Ok(Linear::new(
            weight.reshape([outputs, inputs]).transpose(),
            bias,
        ))
    }

    /// A `torch.nn.Conv2d(inputs, outputs, kernel, stride, padding)` with a bias.
    pub fn conv2d(
        &self,
        prefix: &str,
        inputs: usize,
        outputs: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Conv2d, ModelError> {
        let weight = self.tensor(
            &format!("{prefix}.weight"),
            [outputs, inputs, kernel, kernel],
        )?;
        let bias = self.tensor(&format!("{prefix}.bias"), [outputs])?;
        Ok(Conv2d::new(weight, bias, stride, padding))
    }

    /// A `torch.nn.GroupNorm(groups, channels, eps)`.
    pub fn group_norm(
        &self,
        prefix: &str,
        groups: usize,
        channels: usize,
        eps: f64,
    ) -> Result<GroupNorm, ModelError> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(ModelError::InvalidInput(format!(
                "{}: {prefix}: {channels} channels do not split into {groups} groups",
                self.component
            )));
        }
        Ok(GroupNorm {
            groups,
            eps,
            gamma: self.tensor(&format!("{prefix}.weight"), [channels])?,
            beta: self.tensor(&format!("{prefix}.bias"), [channels])?,
        })
    }

    /// A `torch.nn.LayerNorm(dim, eps)`.
    pub fn layer_norm(&self, prefix: &str, dim: usize, eps: f64) -> Result<LayerNorm, ModelError> {
        Ok(LayerNorm {
            eps,
            gamma: self.tensor(&format!("{prefix}.weight"), [dim])?,
            beta: self.tensor(&format!("{prefix}.bias"), [dim])?,
        })
    }
}
