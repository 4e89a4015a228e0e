//! Loading BERT weights from a Hugging Face `model.safetensors` into [`BertModel`], through the
//! checkpoint-layout module tree of [`BertCheckpoint`].
//!
//! Checkpoint names are rewritten to module paths by an ordered list of regex rules, each
//! applied to the result of the one before:
//!
//! | # | pattern                  | replacement              | why                                                  |
//! |---|--------------------------|--------------------------|------------------------------------------------------|
//! | 1 | `^bert\.`                | (nothing)                | `BertFor*` checkpoints (BERT, BGE, E5) nest the encoder under `bert.`; sentence-transformers ones do not |
//! | 2 | `\.LayerNorm\.`          | `.layer_norm.`           | Rust field names are snake case                      |
//! | 3 | `\.attention\.self\.`    | `.attention.self_attn.`  | `self` is a Rust keyword                             |
//!
//! Then burn's [`PyTorchToBurnAdapter`] transposes every `Linear` weight (torch stores
//! `[out, in]`, burn `[in, out]`) and lets a LayerNorm's `gamma`/`beta` be found under torch's
//! `weight`/`bias`. Tensors the model has no place for (`embeddings.position_ids`, which is
//! I64, the `pooler.*` head, MLM heads) are skipped and logged at debug level. A tensor the
//! model needs but the file lacks, or one with the wrong shape, is an error naming it.

use std::path::Path;

use burn::prelude::*;
use burn::store::{KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

use super::checkpoint::BertCheckpoint;
use super::config::BertConfig;
use super::model::BertModel;
use crate::ModelError;

/// The remapping rules of the table above, in order.
const KEY_REMAPS: [(&str, &str); 3] = [
    (r"^bert\.", ""),
    (r"\.LayerNorm\.", ".layer_norm."),
    (r"\.attention\.self\.", ".attention.self_attn."),
];

/// Builds a [`BertModel`] for `config` on `device` with the weights in `path`.
pub fn load_bert(
    path: &Path,
    config: &BertConfig,
    device: &Device,
) -> Result<BertModel, ModelError> {
    if !path.is_file() {
        return Err(ModelError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    let weights_error = |reason: String| ModelError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let remapper = KeyRemapper::from_patterns(KEY_REMAPS.to_vec())
        .map_err(|e| weights_error(e.to_string()))?;
    let mut store = SafetensorsStore::from_file(path)
        .remap(remapper)
        .with_from_adapter(PyTorchToBurnAdapter)
        // Report problems ourselves, with the tensor's name, instead of the store's summary.
        .allow_partial(true)
        .validate(false);

    let mut checkpoint = BertCheckpoint::init(config, device);
    let result = checkpoint
        .load_from(&mut store)
        .map_err(|e| weights_error(e.to_string()))?;

    if let Some(error) = result.errors.first() {
        return Err(ModelError::Tensor {
            path: path.to_path_buf(),
            tensor: error_path(error).to_owned(),
            reason: error.to_string(),
        });
    }
    if let Some((tensor, _)) = result.missing.first() {
        return Err(ModelError::Tensor {
            path: path.to_path_buf(),
            tensor: tensor.clone(),
            reason: format!(
                "missing ({} of {} tensors the model needs are absent)",
                result.missing.len(),
                result.missing.len() + result.applied.len()
            ),
        });
    }
    tracing::debug!(
        path = %path.display(),
        applied = result.applied.len(),
        unused = ?result.unused,
        "loaded BERT weights"
    );
    Ok(BertModel::from_checkpoint(checkpoint, config))
}

fn error_path(error: &burn::store::ApplyError) -> &str {
    use burn::store::ApplyError;
    match error {
        ApplyError::ShapeMismatch { path, .. }
        | ApplyError::DTypeMismatch { path, .. }
        | ApplyError::AdapterError { path, .. }
        | ApplyError::LoadError { path, .. } => path,
    }
}
