//! The building blocks every VITS module shares: a 1-D convolution (plain or transposed) that
//! carries its own stride, padding, dilation and groups as the ONNX graph states them, and
//! LayerNorm over the channel axis of `[batch, channels, time]` tensors.

use burn::prelude::*;
use burn::tensor::module::{conv_transpose1d, conv1d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

/// A `Conv1d` or `ConvTranspose1d` with its weights (weight norm already folded in by Piper's
/// exporter) and options.
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    /// `[out, in / groups, kernel]` (plain) or `[in, out / groups, kernel]` (transposed).
    pub weight: Tensor<3>,
    pub bias: Option<Tensor<1>>,
    pub stride: usize,
    /// Zeros before and after the input (plain), or the transposed convolution's padding.
    pub padding: (usize, usize),
    pub dilation: usize,
    pub groups: usize,
    pub transposed: bool,
}

impl Conv {
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        let [a, b, _] = self.weight.dims();
        if self.transposed { b * self.groups } else { a }
    }

    /// Kernel width.
    pub fn kernel(&self) -> usize {
        self.weight.dims()[2]
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if self.transposed {
            conv_transpose1d(
                x,
                self.weight.clone(),
                self.bias.clone(),
                ConvTransposeOptions::new(
                    [self.stride],
                    [self.padding.0],
                    [0],
                    [self.dilation],
                    self.groups,
                ),
            )
        } else {
            conv1d(
                x,
                self.weight.clone(),
                self.bias.clone(),
                ConvOptions::new_with_padding(
                    [self.stride],
                    [self.padding],
                    [self.dilation],
                    self.groups,
                ),
            )
        }
    }
}

/// LayerNorm over the channels of `[batch, channels, time]` (VITS' `modules.LayerNorm`).
#[derive(Debug, Clone)]
pub(crate) struct ChannelNorm {
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
}

/// VITS' LayerNorm epsilon.
const NORM_EPS: f64 = 1e-5;

impl ChannelNorm {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mean = x.clone().mean_dim(1);
        let centered = x - mean;
        let var = centered.clone().square().mean_dim(1);
        let normed = centered / (var + NORM_EPS).sqrt();
        let scale = |t: &Tensor<1>| t.clone().unsqueeze_dim::<2>(1).unsqueeze::<3>();
        normed * scale(&self.gamma) + scale(&self.beta)
    }
}

/// The first and second halves of the channel axis (`torch.split(x, [c, c], 1)`).
pub(crate) fn split_channels(x: Tensor<3>, first: usize) -> (Tensor<3>, Tensor<3>) {
    let [_, channels, _] = x.dims();
    (
        x.clone().slice(s![.., 0..first]),
        x.slice(s![.., first..channels]),
    )
}

/// `tensor` as f32 values, for the small host-side steps (durations, the spline).
pub(crate) use crate::read_back::read_back;
