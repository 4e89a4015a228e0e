//! The normalising flow (`flow`) run backwards: residual coupling layers, each shifting one
//! half of the channels by a WaveNet-style stack (gated dilated convolutions with residual
//! and skip outputs) over the other half, with the halves swapped between layers.

use burn::prelude::*;
use burn::tensor::activation::{sigmoid, tanh};

use super::layers::{Conv, split_channels};
use super::loader::Initializers;
use crate::ModelError;

/// VITS' `WN`.
#[derive(Debug, Clone)]
pub(crate) struct WaveNet {
    in_layers: Vec<Conv>,
    res_skip: Vec<Conv>,
    /// Speaker conditioning: `2 · hidden` per layer, all layers in one projection.
    cond: Option<Conv>,
    hidden: usize,
}

impl WaveNet {
    pub fn load(w: &Initializers<'_>, module: &str, hidden: usize) -> Result<Self, ModelError> {
        let n = w.count(&format!("{module}.in_layers"), |w, p| w.has_module(p));
        if n == 0 {
            return Err(w.error(&format!("{module}.in_layers.0.weight"), "no WaveNet layers"));
        }
        let in_layers = (0..n)
            .map(|i| w.conv(&format!("{module}.in_layers.{i}")))
            .collect::<Result<_, _>>()?;
        let res_skip = (0..n)
            .map(|i| w.conv(&format!("{module}.res_skip_layers.{i}")))
            .collect::<Result<_, _>>()?;
        let cond_name = format!("{module}.cond_layer");
        let cond = if w.has_module(&cond_name) {
            Some(w.conv(&cond_name)?)
        } else {
            None
        };
        Ok(Self {
            in_layers,
            res_skip,
            cond,
            hidden,
        })
    }

    pub fn forward(&self, mut x: Tensor<3>, speaker: Option<&Tensor<3>>) -> Tensor<3> {
        let h = self.hidden;
        let g = match (&self.cond, speaker) {
            (Some(cond), Some(g)) => Some(cond.forward(g.clone())),
            _ => None,
        };
        let last = self.in_layers.len() - 1;
        let mut output: Option<Tensor<3>> = None;
        for (i, (input, res_skip)) in self.in_layers.iter().zip(&self.res_skip).enumerate() {
            let mut acts = input.forward(x.clone());
            if let Some(g) = &g {
                acts = acts + g.clone().slice(s![.., 2 * h * i..2 * h * (i + 1)]);
            }
            let (a, b) = split_channels(acts, h);
            let gated = tanh(a) * sigmoid(b);
            let out = res_skip.forward(gated);
            let skip = if i < last {
                let (residual, skip) = split_channels(out, h);
                x = x + residual;
                skip
            } else {
                out
            };
            output = Some(match output {
                Some(total) => total + skip,
                None => skip,
            });
        }
        output.unwrap_or(x)
    }
}

#[derive(Debug, Clone)]
struct Coupling {
    pre: Conv,
    wavenet: WaveNet,
    post: Conv,
    half: usize,
}

/// `flow`: coupling layers at the even indices of `flow.flows`, flips between them.
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    couplings: Vec<Coupling>,
}

impl Flow {
    pub fn load(w: &Initializers<'_>) -> Result<Self, ModelError> {
        let mut couplings = Vec::new();
        for i in (0..64).step_by(2) {
            let module = format!("flow.flows.{i}");
            if !w.has_module(&format!("{module}.pre")) {
                break;
            }
            let pre = w.conv(&format!("{module}.pre"))?;
            let post = w.conv(&format!("{module}.post"))?;
            let hidden = pre.out_channels();
            let half = post.out_channels();
            if pre.weight.dims()[1] != half {
                // A coupling that also predicts log-scales (mean_only = False) has 2 · half.
                return Err(w.error(
                    &format!("{module}.post.weight"),
                    "only mean-only couplings (as VITS and Piper use) are supported",
                ));
            }
            couplings.push(Coupling {
                wavenet: WaveNet::load(w, &format!("{module}.enc"), hidden)?,
                pre,
                post,
                half,
            });
        }
        if couplings.is_empty() {
            return Err(w.error("flow.flows.0.pre.weight", "no coupling layers in the file"));
        }
        Ok(Self { couplings })
    }

    /// The prior sample `z_p` `[1, c, frames]` → the decoder's latent.
    pub fn reverse(&self, mut z: Tensor<3>, speaker: Option<&Tensor<3>>) -> Tensor<3> {
        for c in self.couplings.iter().rev() {
            z = z.flip([1]);
            let (x0, x1) = split_channels(z, c.half);
            let h = c.wavenet.forward(c.pre.forward(x0.clone()), speaker);
            let mean = c.post.forward(h);
            z = Tensor::cat(vec![x0, x1 - mean], 1);
        }
        z
    }
}
