//! Piper's ONNX export as VITS modules: every convolution is found through the graph node
//! that runs it (so the anonymous `onnx::Conv_*` initializers that weight-norm folding leaves
//! behind map to their modules, and stride, padding, dilation and groups come from the node),
//! the phoneme and speaker embeddings through their `Gather` nodes, the rest by name.

use std::collections::HashMap;

use burn::prelude::*;

use super::layers::{ChannelNorm, Conv};
use crate::ModelError;
use crate::onnx::{OnnxFile, OnnxNode, module_of};

/// The file's weights, addressed by PyTorch module path (`flow.flows.0.enc.in_layers.1`).
#[derive(Debug)]
pub(crate) struct Initializers<'a> {
    file: &'a OnnxFile,
    /// Module path → the `Conv`, `ConvTranspose` or `Gather` node that reads its weight.
    modules: HashMap<String, &'a OnnxNode>,
    device: Device,
}

impl<'a> Initializers<'a> {
    pub fn new(file: &'a OnnxFile, device: &Device) -> Self {
        let mut modules = HashMap::new();
        for node in &file.nodes {
            if !matches!(node.op_type.as_str(), "Conv" | "ConvTranspose" | "Gather") {
                continue;
            }
            // Only nodes whose weight is an initializer are modules; other Gathers index shapes.
            let weight_input = if node.op_type == "Gather" { 0 } else { 1 };
            let holds_weight = node.inputs.get(weight_input).is_some_and(|name| {
                file.has(name) && file.shape(name).is_some_and(|s| s.len() >= 2)
            });
            if let (true, Some(module)) = (holds_weight, module_of(&node.name)) {
                modules.entry(module).or_insert(node);
            }
        }
        Self {
            file,
            modules,
            device: device.clone(),
        }
    }

    /// A [`ModelError::Tensor`] about `tensor` in this file.
    pub fn error(&self, tensor: &str, reason: impl Into<String>) -> ModelError {
        ModelError::Tensor {
            path: self.file.path().to_path_buf(),
            tensor: tensor.to_owned(),
            reason: reason.into(),
        }
    }

    /// Whether the graph runs a module of this path.
    pub fn has_module(&self, module: &str) -> bool {
        self.modules.contains_key(module)
    }

    /// A named initializer of rank `D`, its shape checked against `expect` where given
    /// (`None` entries are free).
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        expect: [Option<usize>; D],
    ) -> Result<Tensor<D>, ModelError> {
        let (values, shape) = self.file.tensor(name)?;
        self.shaped(name, values, &shape, expect)
    }

    fn shaped<const D: usize>(
        &self,
        name: &str,
        values: Vec<f32>,
        shape: &[usize],
        expect: [Option<usize>; D],
    ) -> Result<Tensor<D>, ModelError> {
        let fits = shape.len() == D
            && shape
                .iter()
                .zip(expect)
                .all(|(&got, want)| want.is_none_or(|w| w == got));
        if !fits {
            let want: Vec<String> = expect
                .iter()
                .map(|w| w.map_or("_".into(), |w| w.to_string()))
                .collect();
            return Err(self.error(
                name,
                format!("shape {shape:?}, expected [{}]", want.join(", ")),
            ));
        }
        let dims: [usize; D] = shape.try_into().map_err(|_| self.error(name, "rank"))?;
        Ok(Tensor::from_data(
            TensorData::new(values, dims),
            &self.device,
        ))
    }

    /// An embedding table `[rows, width]`, read through the `Gather` of `module`.
    pub fn embedding(&self, module: &str) -> Result<Tensor<2>, ModelError> {
        let node = self
            .modules
            .get(module)
            .filter(|n| n.op_type == "Gather")
            .ok_or_else(|| self.error(&format!("{module}.weight"), "no Gather node reads it"))?;
        self.tensor(&node.inputs[0], [None, None])
    }

    /// The convolution `module` (`dec.ups.0`), with the options its node states.
    pub fn conv(&self, module: &str) -> Result<Conv, ModelError> {
        let name = format!("{module}.weight");
        let node = self
            .modules
            .get(module)
            .filter(|n| n.op_type != "Gather")
            .ok_or_else(|| {
                self.error(&name, "no Conv or ConvTranspose node in the graph runs it")
            })?;
        let transposed = node.op_type == "ConvTranspose";
        let (values, shape) = self.file.tensor(&node.inputs[1]).map_err(|e| match e {
            ModelError::Tensor { reason, .. } => self.error(&name, reason),
            other => other,
        })?;
        if shape.len() != 3 {
            return Err(self.error(&name, format!("shape {shape:?}: not a 1-D convolution")));
        }
        let weight = self.shaped(&name, values, &shape, [None, None, None])?;
        let bias = match node.inputs.get(2).filter(|b| !b.is_empty()) {
            Some(bias) => {
                let channels = if transposed { shape[1] } else { shape[0] };
                let (values, bias_shape) = self.file.tensor(bias)?;
                let channels = channels * if transposed { group(node) } else { 1 };
                Some(self.shaped(
                    &format!("{module}.bias"),
                    values,
                    &bias_shape,
                    [Some(channels)],
                )?)
            }
            None => None,
        };
        let one = |attr: &str, default: i64| -> Result<usize, ModelError> {
            let value = node
                .ints(attr)
                .and_then(|v| v.first().copied())
                .unwrap_or(default);
            usize::try_from(value)
                .map_err(|_| self.error(&name, format!("{} has {attr} = {value}", node.name)))
        };
        let pads = node.ints("pads").unwrap_or(&[0, 0]);
        let pad = |i: usize| usize::try_from(pads.get(i).copied().unwrap_or(0)).unwrap_or(0);
        let padding = (pad(0), pad(1));
        if transposed && padding.0 != padding.1 {
            return Err(self.error(
                &name,
                format!("asymmetric transposed-convolution pads {pads:?}"),
            ));
        }
        if transposed
            && node
                .ints("output_padding")
                .is_some_and(|p| p.iter().any(|&v| v != 0))
        {
            return Err(self.error(&name, "output_padding is not supported"));
        }
        Ok(Conv {
            weight,
            bias,
            stride: one("strides", 1)?,
            padding,
            dilation: one("dilations", 1)?,
            groups: one("group", 1)?,
            transposed,
        })
    }

    /// VITS' LayerNorm `module` (`gamma` and `beta` of `channels` each).
    pub fn norm(&self, module: &str, channels: usize) -> Result<ChannelNorm, ModelError> {
        Ok(ChannelNorm {
            gamma: self.tensor(&format!("{module}.gamma"), [Some(channels)])?,
            beta: self.tensor(&format!("{module}.beta"), [Some(channels)])?,
        })
    }

    /// How many consecutive `prefix.{i}` modules (or tensors `prefix.{i}.{leaf}`) exist from 0.
    pub fn count(&self, prefix: &str, probe: impl Fn(&Self, &str) -> bool) -> usize {
        (0..)
            .take_while(|i| probe(self, &format!("{prefix}.{i}")))
            .count()
    }

    /// An initializer's shape, if the file has it.
    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.file.shape(name)
    }

    /// A named initializer, if present.
    pub fn has(&self, name: &str) -> bool {
        self.file.has(name)
    }
}

fn group(node: &OnnxNode) -> usize {
    node.ints("group")
        .and_then(|g| g.first())
        .and_then(|&g| usize::try_from(g).ok())
        .unwrap_or(1)
}
