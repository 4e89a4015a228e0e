//! The UNet's conditioning on the timestep: diffusers' sinusoidal `Timesteps` projection and
//! the two-layer `TimestepEmbedding` MLP, with the optional guidance-scale input of
//! LCM-distilled UNets (`time_cond_proj_dim`).

use burn::prelude::*;
use burn::tensor::activation::silu;

use super::super::layers::Linear;
use super::super::weights::ComponentWeights;
use crate::ModelError;

/// `get_timestep_embedding`: per timestep, `half` frequencies `exp(-ln(10000)·i/(half −
/// shift))`, their sines then cosines (cosines first when `flip_sin_to_cos`), in f64 on the
/// host: the timesteps are a handful of numbers.
pub(crate) fn sinusoidal_embedding(
    timesteps: &[f64],
    dim: usize,
    flip_sin_to_cos: bool,
    shift: f64,
    scale: f64,
) -> Vec<f32> {
    let half = dim / 2;
    let mut out = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let angles: Vec<f64> = (0..half)
            .map(|i| {
                let exponent = -(10000f64.ln()) * i as f64 / (half as f64 - shift);
                scale * t * exponent.exp()
            })
            .collect();
        let sines = angles.iter().map(|a| a.sin() as f32);
        let cosines = angles.iter().map(|a| a.cos() as f32);
        if flip_sin_to_cos {
            out.extend(cosines.chain(sines));
        } else {
            out.extend(sines.chain(cosines));
        }
        out.extend(std::iter::repeat_n(0.0, dim - 2 * half));
    }
    out
}

/// `TimestepEmbedding`: `linear_2(silu(linear_1(x + cond_proj(w))))`.
#[derive(Debug)]
pub(crate) struct TimeEmbedding {
    pub width: usize,
    linear_1: Linear,
    linear_2: Linear,
    cond_proj: Option<Linear>,
}

impl TimeEmbedding {
    pub fn load(
        weights: &ComponentWeights,
        width: usize,
        cond_dim: Option<usize>,
    ) -> Result<Self, ModelError> {
        let embed = 4 * width;
        Ok(Self {
            width: embed,
            linear_1: weights.linear("time_embedding.linear_1", width, embed, true)?,
            linear_2: weights.linear("time_embedding.linear_2", embed, embed, true)?,
            cond_proj: cond_dim
                .map(|d| weights.linear("time_embedding.cond_proj", d, width, false))
                .transpose()?,
        })
    }

    /// Width of the guidance-scale embedding an LCM-distilled UNet takes.
    pub fn cond_dim(&self) -> Option<usize> {
        self.cond_proj.as_ref().map(Linear::inputs)
    }

    pub fn forward(&self, projected: Tensor<2>, condition: Option<Tensor<2>>) -> Tensor<2> {
        let x = match (&self.cond_proj, condition) {
            (Some(proj), Some(condition)) => projected + proj.forward(condition),
            _ => projected,
        };
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}
