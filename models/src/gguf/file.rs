//! The GGUF container (version 2 and 3): header, metadata, tensor table, aligned data section.
//!
//! Layout, all little-endian: magic `GGUF`, `u32` version, `u64` tensor count, `u64` metadata
//! count; each metadata entry is a string key, a `u32` value type and the value; each tensor
//! entry is a string name, a `u32` dimension count, the `u64` dimensions (innermost first, as
//! ggml's `ne`), a `u32` ggml type and a `u64` offset into the data section. The data section
//! starts at the next multiple of `general.alignment` (default 32) after the tensor table.
//! Strings are a `u64` byte length and UTF-8 bytes.
//!
//! The whole file is read into memory (the crate forbids `unsafe`, so no memory map): for a
//! model dequantised at load that is a transient cost, dropped with the [`GgufFile`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cursor::Cursor;
use super::dequant::{GgmlType, dequantize, ggml_type_name};
use super::value::GgufValue;
use crate::ModelError;
use crate::json::read_file;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// One entry of the tensor table.
#[derive(Debug, Clone)]
pub struct GgufTensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions innermost first (ggml's `ne`): a `[rows, cols]` matrix is `[cols, rows]`.
    pub dims: Vec<u64>,
    /// ggml type id (see [`GgmlType::from_id`]).
    pub type_id: u32,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: metadata, tensor table and the raw tensor data.
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    alignment: u64,
    data_offset: usize,
    /// The whole file, shared with the matrices that keep their blocks (no copy of them).
    bytes: Arc<Vec<u8>>,
}

/// A tensor as stored, in the file's shared bytes: [`GgufFile::raw_shared`].
#[derive(Debug, Clone)]
pub struct SharedTensor {
    pub ty: GgmlType,
    /// The whole file; the tensor is `bytes[range]`.
    pub bytes: Arc<Vec<u8>>,
    pub range: std::ops::Range<usize>,
    /// Dimensions, innermost first.
    pub dims: Vec<usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Reads and parses `path`.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = read_file(path)?;
        Self::parse(path, bytes)
    }

    /// Parses GGUF `bytes` (read from `path`, which error messages name).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, ModelError> {
        let weights_error = |reason: String| ModelError::Weights {
            path: path.to_path_buf(),
            reason,
        };
        let mut cursor = Cursor {
            bytes: &bytes,
            at: 0,
        };
        let magic: [u8; 4] = cursor.array("the magic number").map_err(weights_error)?;
        if &magic != MAGIC {
            return Err(weights_error(format!(
                "not a GGUF file (magic {magic:02x?}, expected \"GGUF\")"
            )));
        }
        let version = cursor.u32("the version").map_err(weights_error)?;
        if !(2..=3).contains(&version) {
            return Err(weights_error(format!(
                "GGUF version {version} is not supported (2 and 3 are)"
            )));
        }
        let tensor_count = cursor.len("the tensor count").map_err(weights_error)?;
        let kv_count = cursor.len("the metadata count").map_err(weights_error)?;

        let mut metadata = BTreeMap::new();
        for index in 0..kv_count {
            let key = cursor
                .string(&format!("metadata key #{index}"))
                .map_err(weights_error)?;
            let entry = format!("metadata `{key}`");
            let value = cursor
                .u32(&entry)
                .and_then(|type_id| cursor.value(type_id, &entry, 0))
                .map_err(weights_error)?;
            metadata.insert(key, value);
        }

        let mut tensors = Vec::with_capacity(tensor_count);
        for index in 0..tensor_count {
            let name = cursor
                .string(&format!("the name of tensor #{index}"))
                .map_err(weights_error)?;
            let what = format!("the table entry of tensor `{name}`");
            let n_dims = cursor.u32(&what).map_err(weights_error)?;
            if n_dims > 4 {
                return Err(weights_error(format!(
                    "{what}: {n_dims} dimensions (at most 4)"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| cursor.u64(&what))
                .collect::<Result<Vec<_>, _>>()
                .map_err(weights_error)?;
            let type_id = cursor.u32(&what).map_err(weights_error)?;
            let offset = cursor.u64(&what).map_err(weights_error)?;
            tensors.push(GgufTensorInfo {
                name,
                dims,
                type_id,
                offset,
            });
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(value) => value
                .as_u64()
                .filter(|a| a.is_power_of_two())
                .ok_or_else(|| ModelError::Metadata {
                    path: path.to_path_buf(),
                    key: "general.alignment".into(),
                    reason: format!("{value} is not a power of two"),
                })?,
        };
        let alignment_usize = usize::try_from(alignment).unwrap_or(usize::MAX);
        let data_offset = cursor.at.next_multiple_of(alignment_usize);
        let file = Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            bytes: Arc::new(bytes),
        };
        for info in &file.tensors {
            file.tensor_bytes(info)?;
        }
        Ok(file)
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Data alignment in bytes (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the data section in the file.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// All metadata, by key.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The table entry of tensor `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn tensor_error(&self, name: &str, reason: String) -> ModelError {
        ModelError::Tensor {
            path: self.path.clone(),
            tensor: name.to_string(),
            reason,
        }
    }

    /// The raw bytes of a tensor, after checking its type, alignment and extent.
    fn tensor_bytes(&self, info: &GgufTensorInfo) -> Result<(GgmlType, &[u8]), ModelError> {
        let (ty, range) = self.tensor_range(info)?;
        Ok((ty, &self.bytes[range]))
    }

    fn tensor_range(
        &self,
        info: &GgufTensorInfo,
    ) -> Result<(GgmlType, std::ops::Range<usize>), ModelError> {
        let error = |reason: String| self.tensor_error(&info.name, reason);
        let ty = GgmlType::from_id(info.type_id).ok_or_else(|| {
            error(format!(
                "type {} is not supported",
                ggml_type_name(info.type_id)
            ))
        })?;
        let elements = usize::try_from(info.elements()).map_err(|_| error("too large".into()))?;
        let len = ty.bytes_for(elements).ok_or_else(|| {
            error(format!(
                "{elements} elements is not a whole number of {ty} blocks"
            ))
        })?;
        if !info.offset.is_multiple_of(self.alignment) {
            return Err(error(format!(
                "offset {} is not aligned to {}",
                info.offset, self.alignment
            )));
        }
        let start = usize::try_from(info.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_offset));
        let range = start.and_then(|s| Some(s..s.checked_add(len)?));
        match range {
            Some(range) if range.end <= self.bytes.len() => Ok((ty, range)),
            _ => Err(error(format!(
                "data ({len} bytes at offset {}) runs past the end of the file ({} bytes)",
                info.offset,
                self.bytes.len()
            ))),
        }
    }

    /// [`Self::raw`], with the file's bytes shared instead of borrowed: the tensor is
    /// `bytes[range]`, and holding `bytes` keeps the file in memory without a copy.
    pub fn raw_shared(&self, name: &str) -> Result<SharedTensor, ModelError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| self.tensor_error(name, "not in the file".into()))?;
        let (ty, range) = self.tensor_range(info)?;
        Ok(SharedTensor {
            ty,
            bytes: self.bytes.clone(),
            range,
            dims: info.dims.iter().map(|&d| d as usize).collect(),
        })
    }

    /// Tensor `name` as stored: its type, its bytes and its dimensions (innermost first).
    pub fn raw(&self, name: &str) -> Result<(GgmlType, &[u8], Vec<usize>), ModelError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| self.tensor_error(name, "not in the file".into()))?;
        let (ty, data) = self.tensor_bytes(info)?;
        Ok((ty, data, info.dims.iter().map(|&d| d as usize).collect()))
    }

    /// Tensor `name` dequantised to f32, with its dimensions (innermost first).
    pub fn dequantize(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| self.tensor_error(name, "not in the file".into()))?;
        let (ty, data) = self.tensor_bytes(info)?;
        let dims: Vec<usize> = info.dims.iter().map(|&d| d as usize).collect();
        let elements = dims.iter().product();
        Ok((dequantize(ty, data, elements), dims))
    }

    /// Metadata `key`, or an error naming it.
    pub fn get(&self, key: &str) -> Result<&GgufValue, ModelError> {
        self.metadata
            .get(key)
            .ok_or_else(|| self.metadata_error(key, "missing".into()))
    }

    /// An error about metadata `key`.
    pub fn metadata_error(&self, key: &str, reason: String) -> ModelError {
        ModelError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            reason,
        }
    }

    /// Metadata `key` as an unsigned integer.
    pub fn get_usize(&self, key: &str) -> Result<usize, ModelError> {
        let value = self.get(key)?;
        value
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| {
                self.metadata_error(
                    key,
                    format!(
                        "expected an unsigned integer, found {} {value}",
                        value.type_name()
                    ),
                )
            })
    }

    /// Metadata `key` as a float.
    pub fn get_f64(&self, key: &str) -> Result<f64, ModelError> {
        let value = self.get(key)?;
        value.as_f64().ok_or_else(|| {
            self.metadata_error(
                key,
                format!("expected a number, found {}", value.type_name()),
            )
        })
    }

    /// Metadata `key` as a string.
    pub fn get_str(&self, key: &str) -> Result<&str, ModelError> {
        let value = self.get(key)?;
        value.as_str().ok_or_else(|| {
            self.metadata_error(
                key,
                format!("expected a string, found {}", value.type_name()),
            )
        })
    }

    /// Metadata `key` as an array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, ModelError> {
        let value = self.get(key)?;
        let items = value.as_array().ok_or_else(|| {
            self.metadata_error(
                key,
                format!("expected an array, found {}", value.type_name()),
            )
        })?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| {
                    self.metadata_error(
                        key,
                        format!("element {i} is a {}, not a string", item.type_name()),
                    )
                })
            })
            .collect()
    }
}
