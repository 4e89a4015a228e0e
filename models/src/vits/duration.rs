//! How long each phoneme lasts: VITS' stochastic duration predictor run backwards (noise
//! through the `ConvFlow` splines and an elementwise affine map to log-durations), or the
//! deterministic predictor (two convolutions) that some voices are trained with instead;
//! which one a voice has is read from its weights.

use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::{Distribution, activation::gelu};

use super::layers::{ChannelNorm, Conv, read_back, split_channels};
use super::loader::Initializers;
use super::spline::Spline;
use crate::ModelError;

/// The spline's range: beyond it the flow is the identity (VITS' `tail_bound`).
const TAIL_BOUND: f64 = 5.0;

/// Dilated depth-separable convolutions (`DDSConv`).
#[derive(Debug, Clone)]
pub(crate) struct Dds {
    layers: Vec<(Conv, ChannelNorm, Conv, ChannelNorm)>,
}

impl Dds {
    fn load(w: &Initializers<'_>, module: &str, channels: usize) -> Result<Self, ModelError> {
        let n = w.count(&format!("{module}.convs_sep"), |w, p| w.has_module(p));
        let layers = (0..n)
            .map(|i| {
                Ok((
                    w.conv(&format!("{module}.convs_sep.{i}"))?,
                    w.norm(&format!("{module}.norms_1.{i}"), channels)?,
                    w.conv(&format!("{module}.convs_1x1.{i}"))?,
                    w.norm(&format!("{module}.norms_2.{i}"), channels)?,
                ))
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(Self { layers })
    }

    fn forward(&self, mut x: Tensor<3>, g: Option<Tensor<3>>) -> Tensor<3> {
        if let Some(g) = g {
            x = x + g;
        }
        for (sep, norm_1, pointwise, norm_2) in &self.layers {
            let y = gelu(norm_1.forward(sep.forward(x.clone())));
            let y = gelu(norm_2.forward(pointwise.forward(y)));
            x = x + y;
        }
        x
    }
}

/// One `ConvFlow`: a spline on the second channel conditioned on the first.
#[derive(Debug, Clone)]
pub(crate) struct ConvFlow {
    pre: Conv,
    dds: Dds,
    proj: Conv,
    bins: usize,
    filter_channels: usize,
}

impl ConvFlow {
    fn load(w: &Initializers<'_>, module: &str) -> Result<Self, ModelError> {
        let pre = w.conv(&format!("{module}.pre"))?;
        let filter_channels = pre.out_channels();
        let proj = w.conv(&format!("{module}.proj"))?;
        // proj has (3 · bins - 1) outputs per transformed channel, and there is one.
        let outputs = proj.out_channels();
        if outputs % 3 != 2 {
            return Err(w.error(
                &format!("{module}.proj.weight"),
                format!("{outputs} outputs is not 3 · bins - 1"),
            ));
        }
        Ok(Self {
            dds: Dds::load(w, &format!("{module}.convs"), filter_channels)?,
            pre,
            proj,
            bins: outputs.div_ceil(3),
            filter_channels,
        })
    }

    /// The inverse flow on `z` `[1, 2, t]`, conditioned on `cond` `[1, filter, t]`.
    fn reverse(&self, z: Tensor<3>, cond: &Tensor<3>) -> Result<Tensor<3>, ModelError> {
        let (x0, x1) = split_channels(z, 1);
        let h = self
            .dds
            .forward(self.pre.forward(x0.clone()), Some(cond.clone()));
        let h = self.proj.forward(h); // [1, 3·bins - 1, t]
        let [_, params, t] = h.dims();
        let h = read_back(h, "duration spline parameters")?;
        let y = read_back(x1.clone(), "duration flow")?;
        #[allow(clippy::cast_precision_loss, reason = "channel counts are small")]
        let scale = (self.filter_channels as f64).sqrt();
        let bins = self.bins;
        let out: Vec<f32> = (0..t)
            .map(|i| {
                let p = |k: usize| f64::from(h[k * t + i]);
                let widths: Vec<f64> = (0..bins).map(|k| p(k) / scale).collect();
                let heights: Vec<f64> = (bins..2 * bins).map(|k| p(k) / scale).collect();
                let derivatives: Vec<f64> = (2 * bins..params).map(p).collect();
                let spline = Spline::new(&widths, &heights, &derivatives, TAIL_BOUND);
                #[allow(clippy::cast_possible_truncation, reason = "back to the model's f32")]
                let x = spline.inverse(f64::from(y[i])) as f32;
                x
            })
            .collect();
        let x1 = Tensor::<3>::from_data(TensorData::new(out, [1, 1, t]), &x0.device());
        Ok(Tensor::cat(vec![x0, x1], 1))
    }
}

/// The predictor a voice was trained with.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "one per loaded voice")]
pub(crate) enum DurationPredictor {
    Stochastic {
        pre: Conv,
        dds: Dds,
        proj: Conv,
        cond: Option<Conv>,
        /// Applied in this order when sampling (VITS drops the unused first spline).
        flows: Vec<ConvFlow>,
        /// The affine map's shift `[2, 1]` and `exp(-log_scale)` `[2, 1]`.
        shift: Tensor<3>,
        inverse_scale: Tensor<3>,
    },
    Deterministic {
        conv_1: Conv,
        norm_1: ChannelNorm,
        conv_2: Conv,
        norm_2: ChannelNorm,
        proj: Conv,
        cond: Option<Conv>,
    },
}

impl DurationPredictor {
    pub fn load(w: &Initializers<'_>) -> Result<Self, ModelError> {
        let cond = if w.has_module("dp.cond") {
            Some(w.conv("dp.cond")?)
        } else {
            None
        };
        if w.has_module("dp.conv_1") {
            let conv_1 = w.conv("dp.conv_1")?;
            let filter = conv_1.out_channels();
            return Ok(Self::Deterministic {
                norm_1: w.norm("dp.norm_1", filter)?,
                conv_2: w.conv("dp.conv_2")?,
                norm_2: w.norm("dp.norm_2", filter)?,
                proj: w.conv("dp.proj")?,
                conv_1,
                cond,
            });
        }
        let pre = w.conv("dp.pre")?;
        let filter = pre.out_channels();
        // ConvFlows sit at the odd indices 1, 3, …, 2n - 1 of `dp.flows`; the exporter keeps
        // 3 and up (the sampler never runs flow 1).
        let last = (3..64)
            .step_by(2)
            .take_while(|i| w.has_module(&format!("dp.flows.{i}.pre")))
            .last()
            .ok_or_else(|| w.error("dp.flows.3.pre.weight", "no duration flows in the file"))?;
        let flows = (3..=last)
            .rev()
            .step_by(2)
            .map(|i| ConvFlow::load(w, &format!("dp.flows.{i}")))
            .collect::<Result<_, _>>()?;
        let shift = w.tensor::<2>("dp.flows.0.m", [Some(2), Some(1)])?;
        let inverse_scale = if w.has("dp.flows.0.logs") {
            w.tensor::<2>("dp.flows.0.logs", [Some(2), Some(1)])?
                .neg()
                .exp()
        } else {
            // The exporter folds exp(-logs) into a constant that multiplies (z - m).
            w.tensor::<2>("/dp/flows.0/Exp_output_0", [Some(2), Some(1)])
                .map_err(|_| {
                    w.error(
                        "dp.flows.0.logs",
                        "neither it nor its folded exp(-logs) is in the file",
                    )
                })?
        };
        Ok(Self::Stochastic {
            dds: Dds::load(w, "dp.convs", filter)?,
            proj: w.conv("dp.proj")?,
            pre,
            cond,
            flows,
            shift: shift.unsqueeze::<3>(),
            inverse_scale: inverse_scale.unsqueeze::<3>(),
        })
    }

    pub fn is_stochastic(&self) -> bool {
        matches!(self, Self::Stochastic { .. })
    }

    /// Log-durations `[t]` for the encoder's `hidden` `[1, c, t]`; `noise_w` scales the
    /// stochastic predictor's noise (0: its mean path, deterministic).
    pub fn log_durations(
        &self,
        hidden: &Tensor<3>,
        speaker: Option<&Tensor<3>>,
        noise_w: f32,
    ) -> Result<Vec<f32>, ModelError> {
        let [_, _, t] = hidden.dims();
        let device = hidden.device();
        let log_w = match self {
            Self::Deterministic {
                conv_1,
                norm_1,
                conv_2,
                norm_2,
                proj,
                cond,
            } => {
                let mut x = hidden.clone();
                if let (Some(cond), Some(g)) = (cond, speaker) {
                    x = x + cond.forward(g.clone());
                }
                let x = norm_1.forward(relu(conv_1.forward(x)));
                let x = norm_2.forward(relu(conv_2.forward(x)));
                proj.forward(x)
            }
            Self::Stochastic {
                pre,
                dds,
                proj,
                cond,
                flows,
                shift,
                inverse_scale,
            } => {
                let mut x = pre.forward(hidden.clone());
                if let (Some(cond), Some(g)) = (cond, speaker) {
                    x = x + cond.forward(g.clone());
                }
                let x = proj.forward(dds.forward(x, None));
                let mut z = if noise_w == 0.0 {
                    Tensor::<3>::zeros([1, 2, t], &device)
                } else {
                    Tensor::<3>::random([1, 2, t], Distribution::Normal(0.0, 1.0), &device)
                        * f64::from(noise_w)
                };
                for flow in flows {
                    z = flow.reverse(z.flip([1]), &x)?;
                }
                z = (z.flip([1]) - shift.clone()) * inverse_scale.clone();
                z.slice(s![.., 0..1])
            }
        };
        read_back(log_w, "log-durations")
    }
}
