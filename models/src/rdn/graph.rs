//! The layer graph of a Keras functional model, built from its topology and weights and run
//! on `[n, channels, height, width]` tensors (Keras' NHWC kernels are transposed at load).
//! Each layer's output is dropped as soon as the last layer reading it has run.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use serde_json::Value;

use super::topology::LayerSpec;
use crate::ModelError;

#[derive(Debug, Clone)]
enum Op {
    Input,
    Conv(Box<Conv>),
    Relu,
    Identity,
    Concat,
    Add,
    /// Nearest-neighbour upsampling by `(rows, columns)`.
    Upsample(usize, usize),
}

#[derive(Debug, Clone)]
struct Conv {
    /// `[out, in, kernel_h, kernel_w]`.
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    /// Zeros `(top, bottom), (left, right)`, as Keras' `same` places them.
    padding: [(usize, usize); 2],
    relu: bool,
}

#[derive(Debug, Clone)]
struct Node {
    op: Op,
    inputs: Vec<usize>,
}

/// A runnable layer graph with one input and one output.
#[derive(Debug, Clone)]
pub(super) struct Graph {
    nodes: Vec<Node>,
    output: usize,
    /// How many later nodes (and the output) read each node.
    readers: Vec<usize>,
    /// How far, in input pixels, an output pixel sees (the receptive field's half-width).
    pub radius: usize,
    /// Output size over input size.
    pub scale: usize,
    /// Channels the input layer takes.
    pub input_channels: usize,
}

fn unsupported(path: &Path, layer: &LayerSpec, what: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        field: format!("layer `{}` ({})", layer.name, layer.class),
        reason: what.into(),
    }
}

fn pair(value: Option<&Value>) -> Option<(usize, usize)> {
    let items = value?.as_array()?;
    let a = usize::try_from(items.first()?.as_u64()?).ok()?;
    let b = usize::try_from(items.get(1)?.as_u64()?).ok()?;
    Some((a, b))
}

/// Keras' `same` padding for stride 1: the extra zero of an even kernel goes after.
fn same_padding(kernel: usize) -> (usize, usize) {
    let total = kernel - 1;
    (total / 2, total - total / 2)
}

impl Graph {
    /// Builds the graph on `device`; `values(name, shape)` supplies the tensors
    /// `<layer>/kernel` and `<layer>/bias`, checked to have that shape.
    pub fn build(
        path: &Path,
        layers: &[LayerSpec],
        outputs: &[String],
        device: &Device,
        mut values: impl FnMut(&str, &[usize]) -> Result<Vec<f32>, ModelError>,
    ) -> Result<Self, ModelError> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut nodes: Vec<Node> = Vec::new();
        // Per node: receptive half-width in input pixels, and its scale over the input.
        let mut reach: Vec<(f64, usize)> = Vec::new();
        let mut channels: Vec<usize> = Vec::new();
        let mut input_channels = None;
        for layer in layers {
            let inputs: Vec<usize> = layer
                .inputs
                .iter()
                .map(|name| {
                    index.get(name.as_str()).copied().ok_or_else(|| {
                        unsupported(
                            path,
                            layer,
                            format!("reads `{name}`, which no earlier layer makes"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            let config = &layer.config;
            let text = |key: &str| config.get(key).and_then(Value::as_str);
            let one_input = |what: &str| {
                if inputs.len() == 1 {
                    Ok(inputs[0])
                } else {
                    Err(unsupported(
                        path,
                        layer,
                        format!("{what} reads one layer, not {}", inputs.len()),
                    ))
                }
            };
            let (op, node_reach, node_channels) = match layer.class.as_str() {
                "InputLayer" => {
                    let shape = config
                        .get("batch_input_shape")
                        .or_else(|| config.get("batch_shape"))
                        .and_then(Value::as_array);
                    let c = shape
                        .and_then(|s| s.last())
                        .and_then(Value::as_u64)
                        .and_then(|c| usize::try_from(c).ok())
                        .ok_or_else(|| {
                            unsupported(path, layer, "no channel count in batch_input_shape")
                        })?;
                    if input_channels.replace(c).is_some() {
                        return Err(unsupported(
                            path,
                            layer,
                            "a second input: one input image is supported",
                        ));
                    }
                    (Op::Input, (0.0, 1), c)
                }
                "Conv2D" => {
                    let from = one_input("Conv2D")?;
                    if pair(config.get("strides")) != Some((1, 1))
                        || pair(config.get("dilation_rate")).is_some_and(|d| d != (1, 1))
                    {
                        return Err(unsupported(
                            path,
                            layer,
                            "only stride 1 without dilation is supported",
                        ));
                    }
                    if config
                        .get("groups")
                        .and_then(Value::as_u64)
                        .is_some_and(|g| g != 1)
                    {
                        return Err(unsupported(
                            path,
                            layer,
                            "grouped convolutions are not supported",
                        ));
                    }
                    if text("data_format").is_some_and(|f| f != "channels_last") {
                        return Err(unsupported(path, layer, "only channels_last is supported"));
                    }
                    let relu = match text("activation").unwrap_or("linear") {
                        "linear" => false,
                        "relu" => true,
                        other => {
                            return Err(unsupported(path, layer, format!("activation `{other}`")));
                        }
                    };
                    let (kh, kw) = pair(config.get("kernel_size"))
                        .ok_or_else(|| unsupported(path, layer, "kernel_size"))?;
                    let filters = config
                        .get("filters")
                        .and_then(Value::as_u64)
                        .and_then(|f| usize::try_from(f).ok())
                        .ok_or_else(|| unsupported(path, layer, "filters"))?;
                    let padding = match text("padding").unwrap_or("valid") {
                        "same" => [same_padding(kh), same_padding(kw)],
                        "valid" if kh == 1 && kw == 1 => [(0, 0), (0, 0)],
                        other => {
                            return Err(unsupported(
                                path,
                                layer,
                                format!(
                                    "padding `{other}` with a {kh}×{kw} kernel (the output would shrink)"
                                ),
                            ));
                        }
                    };
                    let shape = [kh, kw, channels[from], filters];
                    let kernel: Tensor<4> = Tensor::from_data(
                        TensorData::new(values(&format!("{}/kernel", layer.name), &shape)?, shape),
                        device,
                    );
                    let use_bias = config
                        .get("use_bias")
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    let bias = if use_bias {
                        let name = format!("{}/bias", layer.name);
                        Some(Tensor::from_data(
                            TensorData::new(values(&name, &[filters])?, [filters]),
                            device,
                        ))
                    } else {
                        None
                    };
                    let (r, scale) = reach[from];
                    let half = (kh.max(kw) / 2) as f64;
                    (
                        Op::Conv(Box::new(Conv {
                            weight: kernel.permute([3, 2, 0, 1]),
                            bias,
                            padding,
                            relu,
                        })),
                        (r + half / scale as f64, scale),
                        filters,
                    )
                }
                "Activation" | "ReLU" => {
                    let from = one_input("an activation")?;
                    let op = match (layer.class.as_str(), text("activation")) {
                        ("ReLU", _) | (_, Some("relu")) => Op::Relu,
                        (_, Some("linear")) => Op::Identity,
                        (_, other) => {
                            return Err(unsupported(
                                path,
                                layer,
                                format!("activation `{}`", other.unwrap_or("?")),
                            ));
                        }
                    };
                    (op, reach[from], channels[from])
                }
                "Concatenate" | "Add" => {
                    if inputs.len() < 2 {
                        return Err(unsupported(path, layer, "needs at least two inputs"));
                    }
                    let scale = reach[inputs[0]].1;
                    if inputs.iter().any(|&i| reach[i].1 != scale) {
                        return Err(unsupported(path, layer, "inputs of different sizes"));
                    }
                    let r = inputs.iter().map(|&i| reach[i].0).fold(0.0, f64::max);
                    if layer.class == "Concatenate" {
                        let axis = config.get("axis").and_then(Value::as_i64).unwrap_or(-1);
                        if axis != -1 && axis != 3 {
                            return Err(unsupported(
                                path,
                                layer,
                                format!("axis {axis}: only the channel axis"),
                            ));
                        }
                        (
                            Op::Concat,
                            (r, scale),
                            inputs.iter().map(|&i| channels[i]).sum(),
                        )
                    } else {
                        let c = channels[inputs[0]];
                        if inputs.iter().any(|&i| channels[i] != c) {
                            return Err(unsupported(
                                path,
                                layer,
                                "inputs with different channel counts",
                            ));
                        }
                        (Op::Add, (r, scale), c)
                    }
                }
                "UpSampling2D" => {
                    let from = one_input("UpSampling2D")?;
                    if text("interpolation").is_some_and(|i| i != "nearest") {
                        return Err(unsupported(
                            path,
                            layer,
                            "only nearest interpolation is supported",
                        ));
                    }
                    let (rows, cols) = pair(config.get("size")).unwrap_or((2, 2));
                    if rows != cols || rows == 0 {
                        return Err(unsupported(
                            path,
                            layer,
                            "only equal, non-zero factors on both axes",
                        ));
                    }
                    let (r, scale) = reach[from];
                    // A nearest copy rounds each position down: up to one more input pixel.
                    (
                        Op::Upsample(rows, cols),
                        (r + 1.0, scale * rows),
                        channels[from],
                    )
                }
                other => {
                    return Err(unsupported(
                        path,
                        layer,
                        format!("layer class `{other}` is not supported"),
                    ));
                }
            };
            index.insert(layer.name.as_str(), nodes.len());
            nodes.push(Node { op, inputs });
            reach.push(node_reach);
            channels.push(node_channels);
        }
        let input_channels = input_channels.ok_or_else(|| ModelError::Config {
            path: path.to_path_buf(),
            field: "modelTopology.model_config.config.layers".into(),
            reason: "no InputLayer".into(),
        })?;
        let [output_name] = outputs else {
            return Err(ModelError::Config {
                path: path.to_path_buf(),
                field: "modelTopology.model_config.config.output_layers".into(),
                reason: format!("{} outputs; one image output is supported", outputs.len()),
            });
        };
        let output = *index
            .get(output_name.as_str())
            .ok_or_else(|| ModelError::Config {
                path: path.to_path_buf(),
                field: "modelTopology.model_config.config.output_layers".into(),
                reason: format!("`{output_name}` is no layer"),
            })?;
        let mut readers = vec![0; nodes.len()];
        for node in &nodes {
            for &i in &node.inputs {
                readers[i] += 1;
            }
        }
        readers[output] += 1;
        let (radius, scale) = reach[output];
        Ok(Self {
            nodes,
            output,
            readers,
            radius: radius.ceil() as usize,
            scale,
            input_channels,
        })
    }

    /// Runs the graph on `input` (`[n, channels, h, w]`), giving `[n, out, h × scale, w × scale]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut values: Vec<Option<Tensor<4>>> = vec![None; self.nodes.len()];
        let mut left = self.readers.clone();
        let mut input = Some(input);
        for (at, node) in self.nodes.iter().enumerate() {
            let mut take = |i: usize| {
                left[i] -= 1;
                if left[i] == 0 {
                    values[i].take().expect("a layer's input was computed")
                } else {
                    values[i].clone().expect("a layer's input was computed")
                }
            };
            let args: Vec<Tensor<4>> = node.inputs.iter().map(|&i| take(i)).collect();
            let mut args = args.into_iter();
            let value = match &node.op {
                Op::Input => input.take().expect("one input layer"),
                Op::Conv(conv) => {
                    let y = conv2d(
                        args.next().expect("checked at build"),
                        conv.weight.clone(),
                        conv.bias.clone(),
                        ConvOptions::new_with_padding([1, 1], conv.padding, [1, 1], 1),
                    );
                    if conv.relu { relu(y) } else { y }
                }
                Op::Relu => relu(args.next().expect("checked at build")),
                Op::Identity => args.next().expect("checked at build"),
                Op::Concat => Tensor::cat(args.collect(), 1),
                Op::Add => args.reduce(|a, b| a + b).expect("checked at build"),
                Op::Upsample(rows, cols) => {
                    let x = args.next().expect("checked at build");
                    let [n, c, h, w] = x.dims();
                    x.reshape([n * c, h, 1, w, 1])
                        .expand([n * c, h, *rows, w, *cols])
                        .reshape([n, c, h * rows, w * cols])
                }
            };
            if self.readers[at] > 0 {
                values[at] = Some(value);
            }
        }
        values[self.output].take().expect("the output was computed")
    }
}
