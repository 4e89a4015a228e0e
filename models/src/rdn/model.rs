//! Loading an upscaler from its `model.json` and shards, and upscaling 8-bit RGB images
//! window by window ([`super::tiles`]), several windows per forward pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;

use super::graph::Graph;
use super::tiles::{Span, spans};
use super::topology::{self, ModelJson};
use crate::ModelError;
use crate::read_back::read_back;

/// Input pixels along each side of a window. Windows are equal, so an image a little larger
/// than a window needs a second, mostly overlapping one: large windows waste least (measured
/// on a 512×512 image: 192-pixel windows took 1.8× as long as one 512-pixel window), and a
/// 512-pixel window's activations stay near a gigabyte.
const DEFAULT_WINDOW: usize = 512;
/// Windows run together in one forward pass (batching windows was no faster on the CPU).
const DEFAULT_BATCH: usize = 1;

/// A loaded super-resolution model on one device.
#[derive(Debug, Clone)]
pub struct Upscaler {
    graph: Graph,
    window: usize,
    batch: usize,
    device: Device,
}

fn weights_error(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Weights {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A manifest tensor's values and shape.
type StoredTensor = (Vec<f32>, Vec<usize>);

/// Every tensor of the manifest: name → (values, shape), read from the shards in order.
fn read_weights(
    model: &Path,
    json: &ModelJson,
) -> Result<HashMap<String, StoredTensor>, ModelError> {
    let folder = model.parent().unwrap_or(Path::new("."));
    let mut tensors = HashMap::new();
    for group in &json.weights_manifest {
        let mut bytes = Vec::new();
        let mut shard_names = Vec::new();
        for shard in &group.paths {
            let shard_path: PathBuf = folder.join(shard);
            bytes.extend(crate::json::read_file(&shard_path)?);
            shard_names.push(shard_path);
        }
        let shard_label = shard_names
            .first()
            .cloned()
            .unwrap_or_else(|| model.to_path_buf());
        let mut at = 0;
        for entry in &group.weights {
            if entry.dtype != "float32" || entry.quantization.is_some() {
                return Err(ModelError::Tensor {
                    path: shard_label,
                    tensor: entry.name.clone(),
                    reason: format!(
                        "dtype {}{}: only unquantized float32 weights are read",
                        entry.dtype,
                        if entry.quantization.is_some() {
                            " (quantized)"
                        } else {
                            ""
                        }
                    ),
                });
            }
            let count: usize = entry.shape.iter().product();
            let end = at + count * 4;
            let Some(raw) = bytes.get(at..end) else {
                return Err(ModelError::Tensor {
                    path: shard_label,
                    tensor: entry.name.clone(),
                    reason: format!(
                        "needs bytes {at}..{end} but the shards hold {}",
                        bytes.len()
                    ),
                });
            };
            let values = raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(entry.name.clone(), (values, entry.shape.clone()));
            at = end;
        }
        if at != bytes.len() {
            return Err(weights_error(
                &shard_label,
                format!(
                    "the manifest describes {at} bytes but the shards hold {}",
                    bytes.len()
                ),
            ));
        }
    }
    Ok(tensors)
}

impl Upscaler {
    /// Loads the TF.js layers model at `source`: its `model.json`, or a folder holding it.
    pub fn load(source: &Path, device: &Device) -> Result<Self, ModelError> {
        let started = std::time::Instant::now();
        let path = topology::model_file(source);
        let json = topology::read(&path)?;
        let layers = topology::layers(&path, &json.model_topology)?;
        let outputs = topology::outputs(&path, &json.model_topology)?;
        let mut tensors = read_weights(&path, &json)?;
        let graph = Graph::build(&path, &layers, &outputs, device, |name, want| {
            let (values, shape) = tensors.remove(name).ok_or_else(|| ModelError::Tensor {
                path: path.clone(),
                tensor: name.to_owned(),
                reason: "missing from the weights manifest".into(),
            })?;
            if shape != want {
                return Err(ModelError::Tensor {
                    path: path.clone(),
                    tensor: name.to_owned(),
                    reason: format!("shape {shape:?}, expected {want:?}"),
                });
            }
            Ok(values)
        })?;
        if graph.input_channels != 3 {
            return Err(ModelError::Config {
                path,
                field: "modelTopology.model_config.config.layers[0].config.batch_input_shape"
                    .into(),
                reason: format!(
                    "{} input channels; an RGB model takes 3",
                    graph.input_channels
                ),
            });
        }
        tracing::info!(
            path = %path.display(),
            scale = graph.scale,
            receptive_radius = graph.radius,
            seconds = started.elapsed().as_secs_f32(),
            "upscaler loaded"
        );
        Ok(Self {
            graph,
            window: DEFAULT_WINDOW,
            batch: DEFAULT_BATCH,
            device: device.clone(),
        })
    }

    /// Runs windows of `window` input pixels a side, `batch` at a time (memory against speed).
    pub fn with_windows(mut self, window: usize, batch: usize) -> Self {
        self.window = window.max(2 * self.overlap() + 1);
        self.batch = batch.max(1);
        self
    }

    /// How many times wider and taller the output is.
    pub fn scale(&self) -> usize {
        self.graph.scale
    }

    /// Input pixels each window shares with its neighbours: the receptive field's half-width.
    pub fn overlap(&self) -> usize {
        self.graph.radius
    }

    /// `width × height` interleaved RGB bytes, upscaled: `scale()` times the size, interleaved
    /// RGB. `keep_going` is asked between forward passes; `false` stops with
    /// [`ModelError::Cancelled`].
    pub fn upscale(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
        keep_going: &mut dyn FnMut() -> bool,
    ) -> Result<Vec<u8>, ModelError> {
        if width == 0 || height == 0 || rgb.len() != width * height * 3 {
            return Err(ModelError::InvalidInput(format!(
                "{} bytes is not a {width}×{height} RGB image",
                rgb.len()
            )));
        }
        let scale = self.scale();
        let (out_w, out_h) = (width * scale, height * scale);
        let mut out = vec![0u8; out_w * out_h * 3];
        let columns = spans(width, self.window, self.overlap());
        let rows = spans(height, self.window, self.overlap());
        let windows: Vec<(Span, Span)> = rows
            .iter()
            .flat_map(|&r| columns.iter().map(move |&c| (r, c)))
            .collect();
        for group in windows.chunks(self.batch) {
            if !keep_going() {
                return Err(ModelError::Cancelled);
            }
            let (win_h, win_w) = (group[0].0.len, group[0].1.len);
            let mut input = Vec::with_capacity(group.len() * 3 * win_h * win_w);
            for (row, column) in group {
                for channel in 0..3 {
                    for y in row.start..row.start + win_h {
                        let line = &rgb[(y * width + column.start) * 3..];
                        input.extend((0..win_w).map(|x| f32::from(line[x * 3 + channel])));
                    }
                }
            }
            let x: Tensor<4> = Tensor::from_data(
                TensorData::new(input, [group.len(), 3, win_h, win_w]),
                &self.device,
            );
            let y = self.graph.forward(x);
            let values = read_back(y, "the upscaled image")?;
            let (ys, xs) = (win_h * scale, win_w * scale);
            for (index, (row, column)) in group.iter().enumerate() {
                let window = &values[index * 3 * ys * xs..(index + 1) * 3 * ys * xs];
                for oy in row.keep_from * scale..row.keep_to * scale {
                    let wy = oy - row.start * scale;
                    for ox in column.keep_from * scale..column.keep_to * scale {
                        let wx = ox - column.start * scale;
                        for channel in 0..3 {
                            let v = window[(channel * ys + wy) * xs + wx];
                            out[(oy * out_w + ox) * 3 + channel] =
                                v.round().clamp(0.0, 255.0) as u8;
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
