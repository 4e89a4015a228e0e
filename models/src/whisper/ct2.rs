//! A reader for CTranslate2's `model.bin` (binary version 6, what `ct2-transformers-converter`
//! writes and faster-whisper loads): the model spec's name and revision, then named variables
//! (rank, dimensions, data type, raw little-endian bytes), then aliases (`decoder/projection/
//! weight` → `decoder/embeddings/weight` for Whisper's tied output). The layout is CTranslate2's
//! `ModelSpec._serialize`; strings are a u16 length that counts a trailing NUL.
//!
//! The whole file is read once; tensors are converted to f32 on request. Every failure names
//! the file and the variable or field.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ModelError;
use crate::float_bytes::{StoredFloat, widen_to_f32};
use crate::json::read_file;

/// The binary versions this reader understands (CTranslate2 ≥ 3 writes 6).
const SUPPORTED_VERSIONS: std::ops::RangeInclusive<u32> = 5..=6;

/// A variable's element type, in CTranslate2's `DataType` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    /// IEEE f32.
    F32,
    /// Signed bytes (quantised weights with a separate `*_scale`, or small scalars).
    I8,
    /// i16 scalars and tables.
    I16,
    /// i32 scalars and tables.
    I32,
    /// IEEE f16.
    F16,
    /// bfloat16.
    Bf16,
}

impl Ct2Dtype {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One variable's metadata and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ct2Variable {
    /// Dimensions, outermost first (`[]` for a scalar).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Ct2Dtype,
    offset: usize,
    len: usize,
}

/// A parsed `model.bin`.
#[derive(Debug)]
pub struct Ct2File {
    path: PathBuf,
    spec: String,
    revision: u32,
    bytes: Vec<u8>,
    variables: HashMap<String, Ct2Variable>,
    aliases: HashMap<String, String>,
}

impl Ct2File {
    /// Reads and parses `path`.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = read_file(path)?;
        Self::parse(path, bytes)
    }

    /// Parses the bytes of a `model.bin` (`path` only names it in errors).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, ModelError> {
        let fail = |reason: String| ModelError::Weights {
            path: path.to_path_buf(),
            reason,
        };
        let mut cursor = Cursor {
            bytes: &bytes,
            at: 0,
        };
        let version = cursor.u32().map_err(|e| fail(format!("header: {e}")))?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(fail(format!(
                "CTranslate2 binary version {version} is not supported (expected {}–{}); is this a CTranslate2 model.bin?",
                SUPPORTED_VERSIONS.start(),
                SUPPORTED_VERSIONS.end()
            )));
        }
        let spec = cursor
            .string()
            .map_err(|e| fail(format!("spec name: {e}")))?;
        let revision = cursor.u32().map_err(|e| fail(format!("revision: {e}")))?;
        let count = cursor
            .u32()
            .map_err(|e| fail(format!("variable count: {e}")))?;
        let mut variables = HashMap::new();
        for index in 0..count {
            let name = cursor
                .string()
                .map_err(|e| fail(format!("variable {index}: name: {e}")))?;
            let variable = cursor
                .variable()
                .map_err(|e| fail(format!("variable `{name}`: {e}")))?;
            variables.insert(name, variable);
        }
        let mut aliases = HashMap::new();
        // Version 5 files may end without the alias table.
        if cursor.at < bytes.len() {
            let count = cursor
                .u32()
                .map_err(|e| fail(format!("alias count: {e}")))?;
            for index in 0..count {
                let alias = cursor
                    .string()
                    .map_err(|e| fail(format!("alias {index}: {e}")))?;
                let target = cursor
                    .string()
                    .map_err(|e| fail(format!("alias `{alias}`: {e}")))?;
                aliases.insert(alias, target);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            spec,
            revision,
            bytes,
            variables,
            aliases,
        })
    }

    /// The model spec's name (`WhisperSpec`).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The spec's revision (3 for current Whisper conversions).
    pub fn revision(&self) -> u32 {
        self.revision
    }

    /// Number of stored variables (aliases not counted).
    pub fn len(&self) -> usize {
        self.variables.len()
    }

    /// Whether the file has no variables.
    pub fn is_empty(&self) -> bool {
        self.variables.is_empty()
    }

    /// The variable `name`, following an alias.
    pub fn variable(&self, name: &str) -> Option<&Ct2Variable> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.variables.get(name)
    }

    /// The variable `name` as f32 values (from f32, f16 or bf16), checking its shape.
    pub fn f32_tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let variable = self.require(name)?;
        if variable.shape != shape {
            return Err(self.tensor_error(
                name,
                format!("shape {:?}, expected {shape:?}", variable.shape),
            ));
        }
        let bytes = &self.bytes[variable.offset..variable.offset + variable.len];
        let kind = match variable.dtype {
            Ct2Dtype::F32 => StoredFloat::F32,
            Ct2Dtype::F16 => StoredFloat::F16,
            Ct2Dtype::Bf16 => StoredFloat::Bf16,
            other => {
                return Err(self.tensor_error(
                    name,
                    format!(
                        "type {other:?} is not a float type (int8-quantised CTranslate2 models are not supported; convert with --quantization float16)"
                    ),
                ));
            }
        };
        Ok(widen_to_f32(kind, bytes))
    }

    /// The integer scalar `name` (i8, i16 or i32, rank 0).
    pub fn int_scalar(&self, name: &str) -> Result<i64, ModelError> {
        let variable = self.require(name)?;
        if !variable.shape.is_empty() {
            return Err(self.tensor_error(
                name,
                format!("shape {:?}, expected a scalar", variable.shape),
            ));
        }
        let b = &self.bytes[variable.offset..variable.offset + variable.len];
        Ok(match variable.dtype {
            Ct2Dtype::I8 => i64::from(b[0] as i8),
            Ct2Dtype::I16 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            Ct2Dtype::I32 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            other => {
                return Err(self.tensor_error(name, format!("type {other:?}, expected an integer")));
            }
        })
    }

    fn require(&self, name: &str) -> Result<&Ct2Variable, ModelError> {
        self.variable(name)
            .ok_or_else(|| self.tensor_error(name, "missing".to_owned()))
    }

    fn tensor_error(&self, name: &str, reason: String) -> ModelError {
        ModelError::Tensor {
            path: self.path.clone(),
            tensor: name.to_owned(),
            reason,
        }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "the file ends at byte {} but {n} more bytes are needed at byte {} (truncated?)",
                    self.bytes.len(),
                    self.at
                )
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, String> {
        let len = usize::from(self.u16()?);
        let raw = self.take(len)?;
        let text = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(text.to_vec()).map_err(|_| "a name is not UTF-8".to_owned())
    }

    fn variable(&mut self) -> Result<Ct2Variable, String> {
        let rank = usize::from(self.u8()?);
        let shape = (0..rank)
            .map(|_| self.u32().map(|d| d as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let type_id = self.u8()?;
        let dtype =
            Ct2Dtype::from_id(type_id).ok_or_else(|| format!("unknown data type id {type_id}"))?;
        let len = self.u32()? as usize;
        let elements: usize = shape.iter().product();
        if elements.checked_mul(dtype.size()) != Some(len) {
            return Err(format!(
                "{len} bytes of data for shape {shape:?} of {dtype:?} ({} expected)",
                elements.saturating_mul(dtype.size())
            ));
        }
        let offset = self.at;
        self.take(len)?;
        Ok(Ct2Variable {
            shape,
            dtype,
            offset,
            len,
        })
    }
}
