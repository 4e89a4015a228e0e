//! The weights of a Hugging Face checkpoint folder: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`, read natively and converted to f32 tensor by tensor
//! (F32, F16 and BF16; mixed dtypes in one file are fine), or handed out as the file's own
//! bytes for kernels that read 16-bit floats directly.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::ModelError;
use crate::float_bytes::{StoredFloat, widen_to_f32};
use crate::json::{read_file, read_json};

/// `model.safetensors.index.json`.
#[derive(Debug, Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// The files a shard index names, each once, in order.
fn shard_names(index: &Path) -> Result<Vec<String>, ModelError> {
    let index: ShardIndex = read_json(index)?;
    let mut files: Vec<String> = index.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// A tensor as it is stored: its float type and where its bytes lie in its file's bytes.
pub(crate) struct StoredTensor {
    pub kind: StoredFloat,
    pub file: Arc<Vec<u8>>,
    pub range: Range<usize>,
}

/// Every tensor of a checkpoint folder, by name.
pub(crate) struct SafetensorsFolder {
    /// Shared, so that matrices kept in the file's types hold the file's bytes, not a copy.
    files: Vec<(PathBuf, Arc<Vec<u8>>)>,
    /// Tensor name → index into `files`.
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for SafetensorsFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFolder")
            .field(
                "files",
                &self.files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("tensors", &self.index.len())
            .finish()
    }
}

impl SafetensorsFolder {
    /// Opens `dir`: the shards named by `model.safetensors.index.json` when it exists, else
    /// `model.safetensors`.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let index = dir.join("model.safetensors.index.json");
        if index.is_file() {
            return Self::open_files(dir, shard_names(&index)?);
        }
        Self::open_files(dir, vec!["model.safetensors".to_owned()])
    }

    /// Opens the weights of a diffusers component folder, whose files are called `stem`
    /// (`diffusion_pytorch_model` or `model`): `stem.safetensors` or its shard index, else the
    /// half-precision variant `stem.fp16.safetensors` (or its index), as `from_pretrained`
    /// falls back to when a folder holds only that variant.
    pub fn open_stem(dir: &Path, stem: &str) -> Result<Self, ModelError> {
        for variant in ["", ".fp16"] {
            let index = dir.join(format!("{stem}{variant}.safetensors.index.json"));
            if index.is_file() {
                return Self::open_files(dir, shard_names(&index)?);
            }
            let single = format!("{stem}{variant}.safetensors");
            if dir.join(&single).is_file() {
                return Self::open_files(dir, vec![single]);
            }
        }
        Err(ModelError::MissingFile {
            path: dir.join(format!("{stem}.safetensors")),
        })
    }

    fn open_files(dir: &Path, names: Vec<String>) -> Result<Self, ModelError> {
        let mut files = Vec::with_capacity(names.len());
        let mut index = HashMap::new();
        for name in names {
            let path = dir.join(&name);
            let bytes = read_file(&path)?;
            let parsed = SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Weights {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            for tensor in parsed.names() {
                index.insert(tensor.to_owned(), files.len());
            }
            files.push((path, Arc::new(bytes)));
        }
        Ok(Self { files, index })
    }

    /// The first weight file, for errors that concern the checkpoint as a whole.
    pub fn first_path(&self) -> PathBuf {
        self.files
            .first()
            .map(|(p, _)| p.clone())
            .unwrap_or_default()
    }

    /// Total size of the weight files in bytes.
    pub fn size_bytes(&self) -> usize {
        self.files.iter().map(|(_, bytes)| bytes.len()).sum()
    }

    /// Whether the checkpoint has a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// How many dimensions tensor `name` has (`None`: no such tensor).
    pub fn rank(&self, name: &str) -> Option<usize> {
        let bytes = &self.files[*self.index.get(name)?].1;
        let parsed = SafeTensors::deserialize(bytes).ok()?;
        parsed.tensor(name).ok().map(|view| view.shape().len())
    }

    /// The values of tensor `name` as f32, checked against `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let stored = self.stored(name, shape)?;
        Ok(widen_to_f32(stored.kind, &stored.file[stored.range]))
    }

    /// Tensor `name` as stored, checked against `shape`.
    pub fn stored(&self, name: &str, shape: &[usize]) -> Result<StoredTensor, ModelError> {
        let Some(&file) = self.index.get(name) else {
            return Err(ModelError::Tensor {
                path: self.first_path(),
                tensor: name.to_owned(),
                reason: "not in the checkpoint".into(),
            });
        };
        let (path, bytes) = &self.files[file];
        let error = |reason: String| ModelError::Tensor {
            path: path.clone(),
            tensor: name.to_owned(),
            reason,
        };
        let parsed = SafeTensors::deserialize(bytes).map_err(|e| error(e.to_string()))?;
        let view = parsed.tensor(name).map_err(|e| error(e.to_string()))?;
        if view.shape() != shape {
            return Err(error(format!(
                "shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        let data = view.data();
        // The view borrows `bytes`: its offset there is the distance between the pointers.
        let start = data.as_ptr() as usize - bytes.as_ptr() as usize;
        let kind = match view.dtype() {
            Dtype::F32 => StoredFloat::F32,
            Dtype::F16 => StoredFloat::F16,
            Dtype::BF16 => StoredFloat::Bf16,
            other => {
                return Err(error(format!(
                    "dtype {other:?} is not supported (F32, F16, BF16)"
                )));
            }
        };
        Ok(StoredTensor {
            kind,
            file: bytes.clone(),
            range: start..start + data.len(),
        })
    }
}
