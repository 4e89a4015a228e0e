//! The HiFi-GAN decoder (`dec`): a convolution in, then per stage a leaky ReLU, a transposed
//! convolution that upsamples, and the mean of several residual blocks with different
//! kernels and dilations (multi-receptive-field fusion); a last convolution and `tanh` give
//! the waveform. Both residual block kinds are read from the weights: `ResBlock1` (pairs of
//! dilated and plain convolutions) and `ResBlock2` (single dilated convolutions).

use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, tanh};

use super::layers::Conv;
use super::loader::Initializers;
use crate::ModelError;

/// HiFi-GAN's slope inside the network; the last activation uses PyTorch's default, 0.01.
const SLOPE: f64 = 0.1;
const LAST_SLOPE: f64 = 0.01;

#[derive(Debug, Clone)]
struct ResBlock {
    /// Each step: a dilated convolution and, for `ResBlock1`, a plain one after it.
    steps: Vec<(Conv, Option<Conv>)>,
}

impl ResBlock {
    fn load(w: &Initializers<'_>, module: &str) -> Result<Self, ModelError> {
        let kind_2 = w.count(&format!("{module}.convs"), |w, p| w.has_module(p));
        let steps = if kind_2 > 0 {
            (0..kind_2)
                .map(|i| Ok((w.conv(&format!("{module}.convs.{i}"))?, None)))
                .collect::<Result<Vec<_>, ModelError>>()?
        } else {
            let n = w.count(&format!("{module}.convs1"), |w, p| w.has_module(p));
            (0..n)
                .map(|i| {
                    Ok((
                        w.conv(&format!("{module}.convs1.{i}"))?,
                        Some(w.conv(&format!("{module}.convs2.{i}"))?),
                    ))
                })
                .collect::<Result<Vec<_>, ModelError>>()?
        };
        if steps.is_empty() {
            return Err(w.error(
                &format!("{module}.convs.0.weight"),
                "an empty residual block",
            ));
        }
        Ok(Self { steps })
    }

    fn forward(&self, mut x: Tensor<3>) -> Tensor<3> {
        for (first, second) in &self.steps {
            let mut y = first.forward(leaky_relu(x.clone(), SLOPE));
            if let Some(second) = second {
                y = second.forward(leaky_relu(y, SLOPE));
            }
            x = x + y;
        }
        x
    }
}

/// `dec`.
#[derive(Debug, Clone)]
pub(crate) struct Generator {
    conv_pre: Conv,
    cond: Option<Conv>,
    /// Per stage: the upsampling convolution and its residual blocks.
    stages: Vec<(Conv, Vec<ResBlock>)>,
    conv_post: Conv,
    /// Output samples per latent frame (the product of the upsampling strides).
    pub hop: usize,
}

impl Generator {
    pub fn load(w: &Initializers<'_>) -> Result<Self, ModelError> {
        let n_ups = w.count("dec.ups", |w, p| w.has_module(p));
        let n_blocks = w.count("dec.resblocks", |w, p| {
            w.has_module(&format!("{p}.convs.0")) || w.has_module(&format!("{p}.convs1.0"))
        });
        if n_ups == 0 || n_blocks == 0 || !n_blocks.is_multiple_of(n_ups) {
            return Err(w.error(
                "dec.ups.0.weight",
                format!("{n_ups} upsampling stages and {n_blocks} residual blocks"),
            ));
        }
        let per_stage = n_blocks / n_ups;
        let mut stages = Vec::with_capacity(n_ups);
        let mut hop = 1;
        for i in 0..n_ups {
            let up = w.conv(&format!("dec.ups.{i}"))?;
            if !up.transposed {
                return Err(w.error(
                    &format!("dec.ups.{i}.weight"),
                    "not a transposed convolution",
                ));
            }
            hop *= up.stride;
            let blocks = (0..per_stage)
                .map(|j| ResBlock::load(w, &format!("dec.resblocks.{}", i * per_stage + j)))
                .collect::<Result<_, _>>()?;
            stages.push((up, blocks));
        }
        let cond = if w.has_module("dec.cond") {
            Some(w.conv("dec.cond")?)
        } else {
            None
        };
        Ok(Self {
            conv_pre: w.conv("dec.conv_pre")?,
            cond,
            stages,
            conv_post: w.conv("dec.conv_post")?,
            hop,
        })
    }

    /// The latent `[1, c, frames]` → the waveform `[1, 1, frames · hop]` in `[-1, 1]`.
    pub fn forward(&self, z: Tensor<3>, speaker: Option<&Tensor<3>>) -> Tensor<3> {
        let mut x = self.conv_pre.forward(z);
        if let (Some(cond), Some(g)) = (&self.cond, speaker) {
            x = x + cond.forward(g.clone());
        }
        for (up, blocks) in &self.stages {
            x = up.forward(leaky_relu(x, SLOPE));
            let mut sum: Option<Tensor<3>> = None;
            for block in blocks {
                let y = block.forward(x.clone());
                sum = Some(match sum {
                    Some(s) => s + y,
                    None => y,
                });
            }
            #[allow(clippy::cast_precision_loss, reason = "a handful of blocks")]
            let count = blocks.len() as f64;
            x = sum.map_or(x, |s| s / count);
        }
        tanh(self.conv_post.forward(leaky_relu(x, LAST_SLOPE)))
    }
}
