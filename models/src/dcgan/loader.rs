//! Reads a DCGAN generator's weights from a PyTorch checkpoint (zip or legacy pickle, read by
//! `pytorch-reader`, no PyTorch needed): the generator's state dict under `netG_state_dict`
//! (the tutorial's training checkpoint), `state_dict`, or at the top level. The layer stack
//! follows from the `main.{i}` entries: a 4-d weight is a transposed convolution, a
//! `running_mean` a batch norm after it.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use pytorch_reader::{DType, PytorchReader, Tensor as StoredTensor};

use crate::ModelError;

/// Where the generator's weights may sit in the checkpoint, in the order they are tried.
const STATE_DICT_KEYS: [&str; 2] = ["netG_state_dict", "state_dict"];
/// Batch norm's epsilon in PyTorch's `BatchNorm2d` (not stored in the state dict).
const BATCH_NORM_EPS: f32 = 1e-5;

/// One transposed convolution and what follows it, as read from the checkpoint.
pub(super) struct LoadedStage {
    /// `[in, out, kernel, kernel]`.
    pub weight: Tensor<4>,
    /// Batch norm folded into a per-channel scale and shift: `None` on the last stage.
    pub norm: Option<(Tensor<1>, Tensor<1>)>,
}

pub(super) fn load_stages(path: &Path, device: &Device) -> Result<Vec<LoadedStage>, ModelError> {
    if !path.exists() {
        return Err(ModelError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    let weights_error = |reason: String| ModelError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let reader = STATE_DICT_KEYS
        .iter()
        .find_map(|key| PytorchReader::with_top_level_key(path, key).ok())
        .map_or_else(|| PytorchReader::new(path), Ok)
        .map_err(|e| weights_error(e.to_string()))?;
    let tensors = reader.into_tensors();
    let file = Weights { path, tensors };

    let mut indices: Vec<usize> = file
        .tensors
        .keys()
        .filter_map(|k| {
            k.strip_prefix("main.")?
                .strip_suffix(".weight")?
                .parse()
                .ok()
        })
        .collect();
    indices.sort_unstable();
    if indices.is_empty() {
        return Err(weights_error(format!(
            "no `main.<i>.weight` tensors: not a DCGAN generator state dict (looked under {STATE_DICT_KEYS:?} and the top level)"
        )));
    }
    let mut stages: Vec<LoadedStage> = Vec::new();
    for index in indices {
        let name = format!("main.{index}.weight");
        let shape = file.shape(&name)?;
        match shape.len() {
            4 => {
                let weight = file.tensor::<4>(&name, device)?;
                stages.push(LoadedStage { weight, norm: None });
            }
            1 => {
                let Some(stage) = stages.last_mut().filter(|s| s.norm.is_none()) else {
                    return Err(file.error(&name, "a batch norm that follows no convolution"));
                };
                let channels = stage.weight.dims()[1];
                let read = |field: &str| {
                    let name = format!("main.{index}.{field}");
                    let values = file.values(&name)?;
                    if values.len() != channels {
                        return Err(file.error(
                            &name,
                            &format!("{} values for {channels} channels", values.len()),
                        ));
                    }
                    Ok(values)
                };
                let (gamma, beta) = (read("weight")?, read("bias")?);
                let (mean, var) = (read("running_mean")?, read("running_var")?);
                let scale: Vec<f32> = gamma
                    .iter()
                    .zip(&var)
                    .map(|(g, v)| g / (v + BATCH_NORM_EPS).sqrt())
                    .collect();
                let shift: Vec<f32> = beta
                    .iter()
                    .zip(&mean)
                    .zip(&scale)
                    .map(|((b, m), s)| b - m * s)
                    .collect();
                stage.norm = Some((
                    Tensor::from_data(TensorData::new(scale, [channels]), device),
                    Tensor::from_data(TensorData::new(shift, [channels]), device),
                ));
            }
            _ => {
                return Err(file.error(
                    &name,
                    &format!("shape {shape:?}: neither a convolution nor a batch norm"),
                ));
            }
        }
    }
    for pair in stages.windows(2) {
        let (out, next_in) = (pair[0].weight.dims()[1], pair[1].weight.dims()[0]);
        if out != next_in {
            return Err(weights_error(format!(
                "a layer makes {out} channels but the next one takes {next_in}"
            )));
        }
    }
    Ok(stages)
}

struct Weights<'a> {
    path: &'a Path,
    tensors: HashMap<String, StoredTensor>,
}

impl Weights<'_> {
    fn error(&self, tensor: &str, reason: &str) -> ModelError {
        ModelError::Tensor {
            path: self.path.to_path_buf(),
            tensor: tensor.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn stored(&self, name: &str) -> Result<&StoredTensor, ModelError> {
        self.tensors
            .get(name)
            .ok_or_else(|| self.error(name, "missing"))
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>, ModelError> {
        Ok(self.stored(name)?.shape().to_vec())
    }

    fn values(&self, name: &str) -> Result<Vec<f32>, ModelError> {
        let stored = self.stored(name)?;
        let bytes = stored
            .read()
            .map_err(|e| self.error(name, &e.to_string()))?;
        match stored.dtype() {
            DType::F32 => Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .collect()),
            DType::F16 => Ok(bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_ne_bytes([b[0], b[1]]).to_f32())
                .collect()),
            DType::BF16 => Ok(bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_ne_bytes([b[0], b[1]]).to_f32())
                .collect()),
            other => Err(self.error(name, &format!("dtype {other:?}; expected a float tensor"))),
        }
    }

    fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Result<Tensor<D>, ModelError> {
        let shape: [usize; D] = self
            .shape(name)?
            .try_into()
            .map_err(|_| self.error(name, &format!("expected {D} dimensions")))?;
        Ok(Tensor::from_data(
            TensorData::new(self.values(name)?, shape),
            device,
        ))
    }
}
