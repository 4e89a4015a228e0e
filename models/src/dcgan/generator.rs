//! The generator network: a `[n, latent, 1, 1]` latent through transposed convolutions (the
//! first stride 1 without padding, the rest stride 2 with padding 1, as DCGAN lays them out),
//! each but the last followed by batch norm (running statistics, folded at load) and ReLU, the
//! last by tanh.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;

use super::loader::{LoadedStage, load_stages};
use crate::ModelError;
use crate::read_back::read_back;

#[derive(Debug, Clone)]
struct Stage {
    weight: Tensor<4>,
    norm: Option<(Tensor<4>, Tensor<4>)>,
    stride: usize,
    padding: usize,
}

/// A loaded DCGAN generator on one device.
#[derive(Debug, Clone)]
pub struct DcganGenerator {
    stages: Vec<Stage>,
    latent_dim: usize,
    channels: usize,
    size: usize,
    device: Device,
}

impl DcganGenerator {
    /// Loads the generator in the PyTorch checkpoint `path`.
    pub fn load(path: &Path, device: &Device) -> Result<Self, ModelError> {
        let started = std::time::Instant::now();
        let loaded = load_stages(path, device)?;
        let latent_dim = loaded[0].weight.dims()[0];
        let channels = loaded[loaded.len() - 1].weight.dims()[1];
        let mut size = 1;
        let stages: Vec<Stage> = loaded
            .into_iter()
            .enumerate()
            .map(|(index, LoadedStage { weight, norm })| {
                let (stride, padding) = if index == 0 { (1, 0) } else { (2, 1) };
                let kernel = weight.dims()[2];
                size = ((size - 1) * stride + kernel).saturating_sub(2 * padding);
                let norm = norm.map(|(scale, shift)| {
                    (scale.reshape([1, -1, 1, 1]), shift.reshape([1, -1, 1, 1]))
                });
                Stage {
                    weight,
                    norm,
                    stride,
                    padding,
                }
            })
            .collect();
        tracing::info!(
            path = %path.display(),
            layers = stages.len(),
            latent_dim,
            size,
            seconds = started.elapsed().as_secs_f32(),
            "DCGAN generator loaded"
        );
        Ok(Self {
            stages,
            latent_dim,
            channels,
            size,
            device: device.clone(),
        })
    }

    /// Values in one latent vector.
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    /// Width and height of the images it makes.
    pub fn image_size(&self) -> usize {
        self.size
    }

    /// Colour channels of its images (3 for RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Images for `latents` (`n × latent_dim` values, one vector after the other), as
    /// `n × channels × size × size` values in `[-1, 1]` (NCHW).
    pub fn generate(&self, latents: &[f32]) -> Result<Vec<f32>, ModelError> {
        if latents.is_empty() || !latents.len().is_multiple_of(self.latent_dim) {
            return Err(ModelError::InvalidInput(format!(
                "{} latent values is not a whole number of {}-value vectors",
                latents.len(),
                self.latent_dim
            )));
        }
        let n = latents.len() / self.latent_dim;
        let mut x: Tensor<4> = Tensor::from_data(
            TensorData::new(latents.to_vec(), [n, self.latent_dim, 1, 1]),
            &self.device,
        );
        let last = self.stages.len() - 1;
        for (index, stage) in self.stages.iter().enumerate() {
            x = conv_transpose2d(
                x,
                stage.weight.clone(),
                None,
                ConvTransposeOptions::new([stage.stride; 2], [stage.padding; 2], [0, 0], [1, 1], 1),
            );
            if let Some((scale, shift)) = &stage.norm {
                x = x * scale.clone() + shift.clone();
            }
            x = if index == last {
                x.tanh()
            } else {
                burn::tensor::activation::relu(x)
            };
        }
        read_back(x, "images")
    }

    /// Images for `latents` as interleaved 8-bit pixels (`size × size × channels` bytes each,
    /// row by row), the `[-1, 1]` range mapped onto `0..=255`.
    pub fn generate_pixels(&self, latents: &[f32]) -> Result<Vec<Vec<u8>>, ModelError> {
        let values = self.generate(latents)?;
        let plane = self.size * self.size;
        let per_image = plane * self.channels;
        Ok(values
            .chunks_exact(per_image)
            .map(|image| {
                let mut pixels = vec![0u8; per_image];
                for (channel, values) in image.chunks_exact(plane).enumerate() {
                    for (at, &v) in values.iter().enumerate() {
                        pixels[at * self.channels + channel] =
                            ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
                    }
                }
                pixels
            })
            .collect())
    }
}
